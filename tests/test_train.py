"""Training engine: the four objectives learn, exact resume after SIGKILL, DDP with gloo,
non-finite loss guard, checkpoints loadable with weights_only=True, run directories, feature cache."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssuper_lib.config import load_config, save_config
from ssuper_lib.train import NonFiniteLossError, data_overrides, load_run, make_run_dir, read_metrics, train

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CI_CONFIGS = {
    "ssupervae": "configs/models/ci_plain_ssupervae.yaml",
    "ssupergan": "configs/models/ci_plain_ssupergan.yaml",
    "ssuperglobalgan": "configs/models/ci_plain_ssuperglobalgan.yaml",
    "ssupervae_ca": "configs/models/ci_plain_ssupervae_ca.yaml",
}


@pytest.fixture(scope="module")
def data_root(tiny_synthetic, tmp_path_factory) -> Path:
    """A private, preprocessed copy of the tiny synthetic dataset (4 series, 64 px panels in the ci configs)."""
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("train_data") / "synthetic"
    shutil.copytree(tiny_synthetic, root, ignore=shutil.ignore_patterns("sequences.json", "split.json", "faces*", "feature_cache"))
    cfg = load_config(CI_CONFIGS["ssupergan"], data_overrides(root))
    run_preprocessing(cfg.data, progress=False, write_faces=False)
    return root


def ci_config(variant: str, root: Path, out_dir: Path, *extra: str):
    overrides = data_overrides(root) + [
        f"train.out_dir={out_dir}", "data.num_workers=0", "train.num_workers=0", "train.sample_every=0",
        *extra,
    ]
    return load_config(CI_CONFIGS[variant], overrides)


def _run_cli(args: list[str], env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "ssuper_lib.train", *args, "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant,steps,extra", [
    ("ssupervae", 60, ["train.lr=0.001"]),
    ("ssupergan", 100, ["train.lr=0.001", "train.gan_loss=bce"]),
    ("ssuperglobalgan", 60, ["train.lr=0.002", "train.gan_loss=hinge"]),
    ("ssupervae_ca", 100, ["train.lr=0.001"]),
])
def test_objective_learns_on_fixed_data(variant, steps, extra, data_root, tmp_path):
    """Each objective's reconstruction error on fixed training sequences falls clearly, and every part of
    the model that the objective trains (discriminators and critics included) actually changes.

    Step counts and learning rates were chosen so that the error falls by >= 13% for each of the seeds
    0, 1, 2 (measured; on 30 samples GAN dynamics are noisy: 50 steps fell by 1-25% depending on the seed)."""
    torch.manual_seed(0)
    cfg = ci_config(variant, data_root, tmp_path, f"train.max_steps={steps}", "train.ckpt_every=0", *extra)
    init = {k: v.clone() for k, v in _initial_state(cfg).items()}
    result = train(cfg, progress=False)
    evals = read_metrics(result.run_dir, kind="eval")
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == steps
    # G(mu) (the coarse face for CA) on 8 fixed training sequences, mean squared error per pixel
    start, end = first["fixed_train_recon_mse"], last["fixed_train_recon_mse"]
    assert end < 0.9 * start, f"{variant}: fixed-sample reconstruction MSE {start:.4f} -> {end:.4f} did not fall by 10%"
    if variant == "ssupervae_ca":  # the refined face is scored too (it learns more slowly than the coarse one)
        assert math.isfinite(last["fixed_train_fine_mse"])
    train_rows = read_metrics(result.run_dir)
    assert all(k in train_rows[-1] for k in ("step", "epoch", "time", "samples_per_s", "lr", "recon", "kl"))
    _, model = load_run(result.run_dir)
    final = model.state_dict()
    params = {k for k, _ in model.named_parameters()}  # trainable weights, not buffers (BN statistics move on any forward)
    for part in ("generator", "seq_encoder", "local_disc", "global_disc", "refiner", "local_critic", "global_critic"):
        keys = [k for k in final if k.startswith(part + ".") and k in params]
        if getattr(model, part, None) is None:
            continue
        assert keys and any(not torch.equal(init[k], final[k]) for k in keys), f"{variant}: {part} never stepped"
    frozen = [k for k in final if k.startswith("backbone.net.")]
    assert all(torch.equal(init[k], final[k]) for k in frozen), "the frozen backbone changed"


def _initial_state(cfg):
    """The weights a run of ``cfg`` starts from (seeded exactly as train() seeds rank 0)."""
    import random

    import numpy as np

    from ssuper_lib.models import build_model

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).state_dict()


@pytest.mark.slow
def test_exact_resume_after_sigkill(data_root, tmp_path):
    """kill -9 mid-run, resume from the last checkpoint: the final weights equal an uninterrupted run's."""
    steps = 12
    cfg = ci_config("ssupergan", data_root, tmp_path / "runs", f"train.max_steps={steps}", "train.ckpt_every=3",
                    "train.log_every=1")
    cfg_file = tmp_path / "cfg.yaml"
    save_config(cfg, cfg_file)

    full = _run_cli([str(cfg_file), "name=full"])
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out

    victim = _run_cli([str(cfg_file), "name=victim"], {"SSUPER_TRAIN_STEP_SLEEP": "0.4"})
    run_dir = None
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for a checkpoint and at least one step beyond it
        runs = list((tmp_path / "runs").glob("*-victim"))
        if runs and (runs[0] / "checkpoints" / "latest.pt").is_file():
            run_dir = runs[0]
            done = [r["step"] for r in read_metrics(run_dir)]
            if done and done[-1] % 3 != 0:
                break
        assert victim.poll() is None, "the run finished before it could be killed; raise the step sleep"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed_at = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["step"]
    assert 0 < killed_at < steps

    resumed = _run_cli([str(cfg_file), "name=victim", f"train.resume={run_dir}"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    (full_dir,) = (tmp_path / "runs").glob("*-full")
    a = torch.load(full_dir / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == steps
    sa, sb = a["models"]["model"], b["models"]["model"]
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"resumed run differs from the uninterrupted one in {len(differ)} tensors, e.g. {differ[:3]}"
    for name, opt in a["optimizers"].items():
        for pid, st in opt["state"].items():
            assert torch.equal(st["exp_avg"], b["optimizers"][name]["state"][pid]["exp_avg"]), name
    # the resumed run's log has each step once (lines the killed process wrote after its checkpoint are dropped)
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, steps + 1))


@pytest.mark.slow
def test_ddp_two_processes_gloo(data_root, tmp_path):
    """torchrun with 2 CPU processes: both ranks end with identical weights; only rank 0 writes a run dir."""
    cfg = ci_config("ssupergan", data_root, tmp_path / "runs", "train.max_steps=4", "train.ckpt_every=2",
                    "train.log_every=1", "train.batch_size=2")
    cfg_file = tmp_path / "cfg.yaml"
    save_config(cfg, cfg_file)
    hashes = tmp_path / "hashes"
    env = dict(os.environ, OMP_NUM_THREADS="1", SSUPER_TRAIN_HASH_DIR=str(hashes))
    proc = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "ssuper_lib.train", str(cfg_file), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 4
    assert r0["sha256"] == r1["sha256"], "DDP ranks ended with different weights"
    runs = list((tmp_path / "runs").iterdir())
    runs = [p for p in runs if p.name != "feature_cache"]
    assert len(runs) == 1, f"expected one run directory written by rank 0, got {runs}"
    start = read_metrics(runs[0], kind="start")[0]
    assert start["world_size"] == 2
    steps = [r["step"] for r in read_metrics(runs[0])]
    assert steps == [1, 2, 3, 4], "only rank 0 logs, once per step"
    ckpt = torch.load(runs[0] / "checkpoints" / "latest.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2, "checkpoint keeps the RNG state of both ranks"
    if importlib.util.find_spec("tensorboard") is not None:  # train.tensorboard=auto: on; one writer, rank 0's
        events = list(tmp_path.rglob("events.out.tfevents.*"))
        assert [e.parent for e in events] == [runs[0] / "tensorboard"], f"only rank 0 writes event files: {events}"


@pytest.mark.slow
def test_injected_nan_stops_with_message_and_keeps_last_good_checkpoint(data_root, tmp_path):
    cfg = ci_config("ssupervae", data_root, tmp_path, "train.max_steps=10", "train.ckpt_every=2", "train.inject_nan_at=5")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss 'recon' = nan at step 5.*last good checkpoint .*step 4"):
        train(cfg, progress=False)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.endswith(cfg.name)]
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["version"] >= 1
    assert {"models", "optimizers", "schedulers", "scaler", "rng", "config", "epoch", "step"} <= set(ckpt)
    assert all(torch.isfinite(v).all() for v in ckpt["models"]["model"].values() if v.is_floating_point())
    cfg_loaded, model = load_run(run_dir)
    assert cfg_loaded.model == cfg.model and not model.training


@pytest.mark.slow
def test_training_loop_sets_the_augmentation_epoch(data_root, tmp_path, monkeypatch):
    """With data.augment the loop tells the dataset each epoch (new jitter per epoch, exact on resume)."""
    from ssuper_lib.data.datasets import PanelSequenceDataset

    seen = []
    inner = PanelSequenceDataset.set_epoch
    monkeypatch.setattr(PanelSequenceDataset, "set_epoch", lambda self, e: (seen.append(e), inner(self, e)))
    cfg = ci_config("ssupervae", data_root, tmp_path, "train.max_steps=0", "train.epochs=3", "train.batch_size=256",
                    "train.ckpt_every=0", "data.augment=true", "train.cache_features=false")
    train(cfg, progress=False)
    assert seen == [0, 1, 2]


def test_run_dirs_are_numbered(tmp_path):
    a = make_run_dir(tmp_path, "exp")
    b = make_run_dir(tmp_path, "other")
    assert (a.name, b.name) == ("00000-exp", "00001-other")


@pytest.mark.slow
def test_feature_cache_is_reused_and_keyed_by_weights(data_root, tmp_path):
    """The cache is computed once, read back identically, and a different backbone gets a different key."""
    from ssuper_lib.data.datasets import PanelSequenceDataset
    from ssuper_lib.data.features import load_or_compute_features
    from ssuper_lib.models import build_model

    cfg = ci_config("ssupergan", data_root, tmp_path)
    ds = PanelSequenceDataset.from_config(cfg.data, split="test")
    torch.manual_seed(0)
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size))
    first = load_or_compute_features(model, ds, cfg, "test", progress=False)
    again = load_or_compute_features(model, ds, cfg, "test", progress=False)
    assert again.path == first.path and not again.computed and torch.equal(first.feats, again.feats)
    assert first.feats.shape[:2] == (len(ds), 3)
    with torch.no_grad():
        model.eval()
        item = ds[0]
        direct = model.backbone_features(item["panels"][None])[0]
    # batch-of-1 vs batched float32 convolutions: accumulation order differs (measured up to 2e-5 on values up
    # to 6 after other tests changed the thread settings); wrong features would differ by O(1)
    assert torch.allclose(direct, first.feats[0], atol=1e-4)
    with torch.no_grad():
        next(model.backbone.net.parameters()).add_(0.01)  # other weights -> other key, recomputed
    other = load_or_compute_features(model, ds, cfg, "test", progress=False)
    assert other.key != first.key and other.computed


def test_bfloat16_feature_cache_runs_under_autocast_and_has_its_own_key():
    """train.feature_dtype=bfloat16 caches the backbone's features under bf16 autocast: close to the float32
    ones (not equal: the autocast really ran), returned as float32, and keyed apart from them."""
    from ssuper_lib.config import ConfigError, load_config
    from ssuper_lib.data.features import compute_features, feature_cache_key
    from ssuper_lib.models import build_model

    f32 = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false"])
    bf16 = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false", "train.feature_dtype=bfloat16"])
    with pytest.raises(ConfigError, match="feature_dtype"):
        load_config("configs/models/ci_plain_ssupergan.yaml", ["train.feature_dtype=float16"])
    torch.manual_seed(0)
    model = build_model(f32.model, panel_size=tuple(f32.data.panel_size)).eval()
    k32, d32 = feature_cache_key(model, list(range(4)), f32, "train")
    kbf, dbf = feature_cache_key(model, list(range(4)), bf16, "train")
    assert k32 != kbf and "feature_dtype" not in d32 and dbf["feature_dtype"] == "bfloat16"
    g = torch.Generator().manual_seed(0)
    items = [{"panels": torch.rand(3, 3, *f32.data.panel_size, generator=g) * 2 - 1, "face": torch.zeros(3, 64, 64)}
             for _ in range(4)]
    a, _ = compute_features(model, items, progress=False)
    b, _ = compute_features(model, items, progress=False, dtype="bfloat16")
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    rel = ((a - b).norm() / a.norm()).item()
    assert 0 < rel < 0.1, f"bf16 features differ from float32 by {rel:.4f} (relative)"


def test_train_top_stages_cache_key_follows_the_frozen_layers_only():
    """With model.train_top_stages the cache holds the frozen layers' maps: training the top must not change the
    key (the run's own evaluation reuses the cache), a change in the frozen layers must, and so must the option."""
    from ssuper_lib.config import load_config
    from ssuper_lib.data.features import feature_cache_key
    from ssuper_lib.models import build_model

    base = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false", "model.freeze_backbone=true"])
    top = load_config("configs/models/ci_plain_ssupergan.yaml",
                      ["model.pretrained=false", "model.freeze_backbone=true", "model.train_top_stages=2"])
    torch.manual_seed(0)
    model = build_model(top.model, panel_size=tuple(top.data.panel_size))
    k0, desc = feature_cache_key(model, list(range(4)), top, "train")
    assert desc["train_top_stages"] == 2
    kb, _ = feature_cache_key(build_model(base.model, panel_size=tuple(base.data.panel_size)), list(range(4)), base, "train")
    assert kb != k0
    net = model.backbone.net
    with torch.no_grad():
        net._conv_head.weight.add_(0.01)  # a trained top: same frozen maps, same key
        net._blocks[-1]._project_conv.weight.add_(0.01)
    assert feature_cache_key(model, list(range(4)), top, "train")[0] == k0
    with torch.no_grad():
        net._blocks[model.backbone.split - 1]._project_conv.weight.add_(0.01)  # a frozen layer: other maps
    assert feature_cache_key(model, list(range(4)), top, "train")[0] != k0


@pytest.mark.slow
def test_feature_cache_computes_each_shared_context_panel_once(data_root, tmp_path):
    """Windows of a series share context panels: the cache runs the backbone once per distinct context
    panel plus once per masked panel, and every sample's cached features and face are those of its own
    per-sample forward (both panel orders)."""
    from ssuper_lib.data.datasets import PanelSequenceDataset
    from ssuper_lib.data.features import compute_features
    from ssuper_lib.models import build_model

    for order in ("masked_first", "chronological"):
        cfg = ci_config("ssupergan", data_root, tmp_path, f"data.panel_order={order}")
        ds = PanelSequenceDataset.from_config(cfg.data, split="train")
        torch.manual_seed(0)
        model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).eval()
        seen = []
        real = model.backbone_features
        model.backbone_features = lambda p: (seen.append(p.shape[0] * p.shape[1]), real(p))[1]
        feats, faces = compute_features(model, ds, progress=False)
        distinct = {(s.panels[j], tuple(s.crops[j])) for s in ds.samples for j in range(2)}
        assert sum(seen) == len(distinct) + len(ds) < 3 * len(ds)
        with torch.no_grad():
            for i in range(len(ds)):
                item = ds[i]
                assert torch.equal(faces[i], item["face"])
                assert torch.allclose(real(item["panels"][None])[0], feats[i], atol=1e-4), (order, i)


def test_training_reads_validation_never_test_and_keeps_the_best_checkpoint(data_root, tmp_path, monkeypatch):
    """Sample sheets, validation errors, best.pt and early stopping use the validation series only."""
    from ssuper_lib.data import datasets as D
    from ssuper_lib.data.datasets import read_split

    split = read_split(data_root / "split.json")
    assert split["val"] and not set(split["val"]) & (set(split["train"]) | set(split["test"]))
    asked = []
    original = D.PanelSequenceDataset.from_config.__func__

    def spy(cls, data_cfg, split="train", **kw):
        asked.append(split)
        return original(cls, data_cfg, split, **kw)

    monkeypatch.setattr(D.PanelSequenceDataset, "from_config", classmethod(spy))
    cfg = ci_config("ssupergan", data_root, tmp_path, "train.max_steps=6", "train.val_every=2", "train.ckpt_every=6",
                    "train.early_stop_patience=1000")
    res = train(cfg, progress=False)
    assert "test" not in asked and "val" in asked, f"training asked for splits {asked}"
    vals = [r for r in read_metrics(res.run_dir, kind="val")]
    assert [r["step"] for r in vals] == [2, 4, 6] and all(math.isfinite(r["val_mse"]) for r in vals)
    best = min(vals, key=lambda r: r["val_mse"])
    ck = torch.load(Path(res.run_dir) / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == best["step"], "best.pt holds the checkpoint of the lowest validation error"
    from ssuper_lib.evaluate import checkpoint_step

    assert checkpoint_step(res.run_dir) == best["step"] and checkpoint_step(res.run_dir, "latest") == 6


def test_shuffled_context_takes_the_context_of_another_series():
    """The label-free context gain's counterfactual: each sample keeps its masked panel and gets the context
    panels (here cached features) of a sample of another series."""
    from ssuper_lib.train import ShuffledContext

    feats = torch.arange(6 * 3 * 2, dtype=torch.float32).view(6, 3, 2)  # (N, S, F), masked panel last
    ds = [{"feats": feats[i], "face": torch.full((3, 4, 4), float(i))} for i in range(6)]
    series = ["a", "a", "b", "b", "c", "c"]
    shuffled = ShuffledContext(ds, series, masked_index=2, seed=0)
    for i in range(6):
        j, item = int(shuffled.partners[i]), shuffled[i]
        assert series[j] != series[i]
        assert torch.equal(item["feats"][:2], feats[j, :2]) and torch.equal(item["feats"][2], feats[i, 2])
        assert torch.equal(item["face"], ds[i]["face"]) and torch.equal(ds[i]["feats"], feats[i]), "the original is untouched"


def test_checkpoint_selection_on_the_label_free_context_gain(data_root, tmp_path, monkeypatch):
    """``train.val_select=context``: best.pt (and early stopping) follow the validation context gain (error
    with shuffled context minus error with the true one), not the validation error. Scripted errors: the
    error is lowest at step 2, the gain largest at step 4."""
    import ssuper_lib.train.monitor as T

    scripted = {False: iter([0.8, 0.9, 1.0]), True: iter([0.8, 1.1, 1.05])}  # true context, shuffled context
    monkeypatch.setattr(T, "validation_error",
                        lambda model, ds, cfg, device, batch_size=64, generator=None: next(scripted[isinstance(ds, T.ShuffledContext)]))
    root = _two_val_series_copy(data_root, tmp_path / "data")
    cfg = ci_config("ssupergan", root, tmp_path, "train.max_steps=6", "train.val_every=2", "train.ckpt_every=6",
                    "train.val_select=context")
    res = train(cfg, progress=False)
    vals = read_metrics(res.run_dir, kind="val")
    assert [round(r["val_context_gain"], 6) for r in vals] == [0.0, 0.2, 0.05]
    ck = torch.load(Path(res.run_dir) / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 4, "best.pt is the checkpoint of the largest context gain"
    with pytest.raises(T.ConfigError, match="val_select=context"):
        train(ci_config("ssupergan", data_root, tmp_path, "train.max_steps=2", "train.val_select=context",
                        "train.val_every=0"), progress=False)


def _two_val_series_copy(data_root: Path, dest: Path) -> Path:
    """A copy of the data whose split holds out two validation series (the context gain needs a second one)."""
    shutil.copytree(data_root, dest, ignore=shutil.ignore_patterns("feature_cache"))
    split = json.loads((dest / "split.json").read_text())
    split["val"], split["train"] = split["val"] + split["train"][-1:], split["train"][:-1]
    (dest / "split.json").write_text(json.dumps(split))
    return dest


def test_context_gain_diagnostic_leaves_the_training_stream_alone(data_root, tmp_path, monkeypatch):
    """The shuffled-context validation pass runs on its own RNG: a run with it ends with the same weights as a
    run without it (a DataLoader iterator draws its seed from the global RNG unless given a generator)."""
    import ssuper_lib.train.monitor as T

    root = _two_val_series_copy(data_root, tmp_path / "data")
    extra = ("train.max_steps=6", "train.val_every=2", "train.ckpt_every=6", "train.early_stop_patience=0")
    with_gain = train(ci_config("ssupergan", root, tmp_path / "a", *extra), progress=False)
    assert all("val_context_gain" in r for r in read_metrics(with_gain.run_dir, kind="val"))
    monkeypatch.setattr(T, "_sample_series", lambda ds: None)  # no series known: no shuffled pass
    without = train(ci_config("ssupergan", root, tmp_path / "b", *extra), progress=False)
    assert not any("val_context_gain" in r for r in read_metrics(without.run_dir, kind="val"))
    a, b = (torch.load(r.run_dir / "checkpoints" / "latest.pt", weights_only=True)["models"]["model"] for r in (with_gain, without))
    assert all(torch.equal(a[k], b[k]) for k in a), "the context-gain pass changed the training run"


def test_early_stopping_on_validation(data_root, tmp_path):
    cfg = ci_config("ssupergan", data_root, tmp_path, "train.max_steps=60", "train.val_every=1",
                    "train.early_stop_patience=1", "train.lr=0.003")
    res = train(cfg, progress=False)
    stops = read_metrics(res.run_dir, kind="early_stop")
    assert res.step < 60 and stops and stops[0]["step"] == res.step, "a non-improving validation error stops the run"
    assert (Path(res.run_dir) / "done.json").is_file()
