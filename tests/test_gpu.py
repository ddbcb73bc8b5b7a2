"""The engine on a CUDA GPU: training with bf16 and fp16 autocast, resume, CPU/GPU parity of the model and
of the cached features. Skipped where no GPU is present (CI has none); run on a GPU node with

    python -m pytest tests/test_gpu.py -m gpu
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from ssuper_lib.config import load_config
from ssuper_lib.train import NonFiniteLossError, data_overrides, load_run, read_metrics, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CI_GAN = "configs/models/ci_plain_ssupergan.yaml"


@pytest.fixture(scope="module")
def data_root(tiny_synthetic, tmp_path_factory) -> Path:
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("gpu_data") / "synthetic"
    shutil.copytree(tiny_synthetic, root, ignore=shutil.ignore_patterns("sequences.json", "split.json", "faces*", "feature_cache"))
    run_preprocessing(load_config(CI_GAN, data_overrides(root)).data, progress=False, write_faces=False)
    return root


def gpu_config(root: Path, out: Path, *extra: str, config: str = CI_GAN):
    return load_config(config, data_overrides(root) + [
        f"train.out_dir={out}", "train.device=cuda", "data.num_workers=0", "train.num_workers=0",
        "train.sample_every=0", "train.log_every=1", *extra])


def _finite_losses(run_dir: Path) -> list[dict]:
    rows = read_metrics(run_dir)
    assert rows, "no training metrics were written"
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert math.isfinite(v), f"step {r['step']}: {k} = {v}"
    return rows


@pytest.mark.parametrize("variant_config", ["ci_plain_ssupergan", "ci_plain_ssupervae", "ci_plain_ssuperglobalgan",
                                            "ci_plain_ssupervae_ca"])
def test_each_objective_trains_on_the_gpu_with_bf16_autocast(data_root, tmp_path, variant_config):
    """``train.amp=auto`` picks bf16 on a GPU that has it; every objective steps with finite losses, and the
    run's checkpoint loads on the CPU and generates faces there."""
    cfg = gpu_config(data_root, tmp_path, "train.max_steps=6", "train.ckpt_every=6", "train.amp=auto",
                     config=f"configs/models/{variant_config}.yaml")
    result = train(cfg, progress=False)
    assert result.step == 6
    start = read_metrics(result.run_dir, kind="start")[0]
    assert start["device"].startswith("cuda")
    if torch.cuda.is_bf16_supported():
        assert "bfloat16" in str(start["amp"]), start["amp"]
    _finite_losses(result.run_dir)
    cfg_cpu, model = load_run(result.run_dir, device="cpu", checkpoint="latest")
    assert all(p.device.type == "cpu" for p in model.parameters())
    if variant_config != "ci_plain_ssupervae_ca":  # the CA variant's faces need the masked box too
        torch.manual_seed(0)
        panels = torch.rand(2, 3, 3, *cfg_cpu.data.panel_size) * 2 - 1
        with torch.no_grad():
            faces = model.reconstruct(panels)
        assert faces.shape == (2, 3, cfg_cpu.model.img_size, cfg_cpu.model.img_size) and torch.isfinite(faces).all()


def test_fp16_autocast_uses_a_grad_scaler_and_saves_it(data_root, tmp_path):
    cfg = gpu_config(data_root, tmp_path, "train.max_steps=6", "train.ckpt_every=6", "train.amp=fp16")
    result = train(cfg, progress=False)
    _finite_losses(result.run_dir)
    ckpt = torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["scaler"], "fp16 runs keep the GradScaler's state in the checkpoint"


def _max_weight_diff(run_a: Path, run_b: Path) -> tuple[float, str]:
    a = torch.load(run_a / "checkpoints" / "latest.pt", weights_only=True)["models"]["model"]
    b = torch.load(run_b / "checkpoints" / "latest.pt", weights_only=True)["models"]["model"]
    return max(((a[k].float() - b[k].float()).abs().max().item(), k) for k in a if a[k].is_floating_point())


def test_resume_on_the_gpu_continues_the_same_run(data_root, tmp_path):
    """With ``train.deterministic=true``, a run stopped at step 5 (injected NaN; last checkpoint at 4) and
    resumed ends at step 8 with the uninterrupted run's weights, bit for bit, as on the CPU. (Without it
    cuDNN autotunes kernels per run, some with atomics: two GPU runs of one seed differ by ~1e-3 after 8 GAN
    steps.)"""
    base = ("train.max_steps=8", "train.ckpt_every=4", "train.amp=none", "train.deterministic=true")
    full = train(gpu_config(data_root, tmp_path / "full", *base), progress=False)
    again = train(gpu_config(data_root, tmp_path / "again", *base), progress=False)
    with pytest.raises(NonFiniteLossError):
        train(gpu_config(data_root, tmp_path / "cut", *base, "train.inject_nan_at=5"), progress=False)
    (cut_dir,) = [p for p in (tmp_path / "cut").iterdir() if p.name.endswith("ci_plain_ssupergan")]
    assert torch.load(cut_dir / "checkpoints" / "latest.pt", weights_only=True)["step"] == 4
    resumed = train(gpu_config(data_root, tmp_path / "cut", *base, f"train.resume={cut_dir}"), progress=False)
    assert resumed.step == 8 and resumed.run_dir == cut_dir
    assert [r["step"] for r in read_metrics(cut_dir)] == list(range(1, 9))
    noise, _ = _max_weight_diff(full.run_dir, again.run_dir)
    diff, where = _max_weight_diff(full.run_dir, cut_dir)
    print(f"run-to-run {noise:.2e}, resumed {diff:.2e} ({where})")
    assert noise == 0, f"two deterministic runs of one seed differ by {noise:.2e}"
    assert diff == 0, f"resumed weights differ by {diff:.2e} in {where}"


def test_model_and_backbone_features_agree_between_cpu_and_gpu():
    """The demo model (pretrained Lite0) gives the same features and faces on both devices in fp32, so a
    feature cache written on a GPU node serves a CPU evaluation."""
    from ssuper_lib.models import build_model

    cfg = load_config("configs/models/demo_plain_ssupergan.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).eval()
    panels = torch.rand(4, 3, 3, *cfg.data.panel_size) * 2 - 1
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            f_cpu = model.backbone_features(panels)
            face_cpu = model.reconstruct(panels)
            model.to("cuda")
            f_gpu = model.backbone_features(panels.to("cuda")).cpu()
            face_gpu = model.reconstruct(panels.to("cuda")).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    scale = f_cpu.abs().max().item()
    assert (f_cpu - f_gpu).abs().max().item() < 1e-3 * max(scale, 1.0)
    assert (face_cpu - face_gpu).abs().max().item() < 1e-3
