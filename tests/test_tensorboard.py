"""TensorBoard event files of a run, read back with tensorboard's own reader: the same values as
metrics.jsonl at the same steps, sample sheets as images, the config as text, and a resume (after a run
that stopped past its last checkpoint) continues the curves without a duplicated step. (The DDP test in
test_train.py checks that only rank 0 writes event files.)"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from ssuper_lib.config import load_config
from ssuper_lib.train import NonFiniteLossError, data_overrides, read_metrics, train
from ssuper_lib.train.tensorboard_log import TB_DIR, tensorboard_enabled

pytest.importorskip("tensorboard")

CI_CONFIG = "configs/models/ci_plain_ssupergan.yaml"


@pytest.fixture(scope="module")
def data_root(tiny_synthetic, tmp_path_factory) -> Path:
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("tb_data") / "synthetic"
    shutil.copytree(tiny_synthetic, root, ignore=shutil.ignore_patterns("sequences.json", "split.json", "faces*", "feature_cache"))
    run_preprocessing(load_config(CI_CONFIG, data_overrides(root)).data, progress=False, write_faces=False)
    return root


def _config(root: Path, out: Path, *extra: str):
    return load_config(CI_CONFIG, data_overrides(root) + [
        f"train.out_dir={out}", "data.num_workers=0", "train.num_workers=0", "train.log_every=1",
        "train.sample_every=2", "train.val_every=2", "train.ckpt_every=2", "train.val_select=mse", *extra])


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / TB_DIR), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _assert_same_as_metrics(run_dir: Path) -> dict[str, list[int]]:
    """Every number of every train/eval/val record of metrics.jsonl is the scalar <kind>/<key> at its step, and
    every scalar tag holds each step once; returns the steps per tag."""
    acc = _events(run_dir)
    tags = set(acc.Tags()["scalars"])
    steps = {}
    for tag in tags:
        events = acc.Scalars(tag)
        steps[tag] = [e.step for e in events]
        assert steps[tag] == sorted(set(steps[tag])), f"{tag}: duplicated or unordered steps {steps[tag]}"
    expected = set()
    for rec in read_metrics(run_dir, kind=None):
        if rec["kind"] not in ("train", "eval", "val"):
            continue
        for key, value in rec.items():
            if key in ("kind", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            tag = f"{rec['kind']}/{key}"
            expected.add(tag)
            got = {e.step: e.value for e in acc.Scalars(tag)}
            assert rec["step"] in got, f"{tag} has no event at step {rec['step']}"
            assert math.isclose(got[rec["step"]], value, rel_tol=1e-6, abs_tol=1e-7), (tag, rec["step"], value)
    assert expected == tags, f"tags beyond metrics.jsonl: {tags - expected}; missing: {expected - tags}"
    return steps


@pytest.mark.slow
def test_event_files_match_metrics_and_a_resume_continues_the_curves(data_root, tmp_path):
    # a run stopped by a non-finite loss at step 5: checkpoints at 2 and 4, steps 1-4 logged
    cfg = _config(data_root, tmp_path, "train.max_steps=8", "train.inject_nan_at=5")
    with pytest.raises(NonFiniteLossError):
        train(cfg, progress=False)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.endswith(cfg.name)]
    assert _assert_same_as_metrics(run_dir)["train/recon"] == [1, 2, 3, 4]
    resumed = train(_config(data_root, tmp_path, "train.max_steps=6", f"train.resume={run_dir}"), progress=False)
    assert resumed.run_dir == run_dir and resumed.step == 6
    steps = _assert_same_as_metrics(run_dir)
    assert steps["train/recon"] == [1, 2, 3, 4, 5, 6]
    assert steps["val/val_mse"] == [2, 4, 6] and steps["eval/fixed_train_recon_mse"][0] == 0
    acc = _events(run_dir)
    images = {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}
    assert images["samples/prior"] == images["samples/recon"] == [0, 2, 4, 6]
    first = acc.Images("samples/recon")[0]
    assert first.width > 0 and first.height > 0
    text = set(acc.Tags()["tensors"])
    assert {"config/text_summary", "run/start/text_summary", "run/resume/text_summary"} <= text
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "tensorboard: auto" in config_text and "max_steps: 8" in config_text


@pytest.mark.slow
def test_resume_from_an_earlier_checkpoint_hides_what_came_after(data_root, tmp_path):
    """Resuming from step 2 of a run that logged up to step 4 (as a run killed after its step-2 checkpoint):
    TensorBoard shows each step once (the resumed run's event file purges the older steps 3 and 4)."""
    cfg = _config(data_root, tmp_path, "train.max_steps=4", "train.ckpt_every=2", "train.keep_best=false")
    first = train(cfg, progress=False)
    run_dir = first.run_dir
    # a checkpoint of step 2: re-run to step 2 in another folder and put its checkpoint in place
    early = train(_config(data_root, tmp_path / "early", "train.max_steps=2"), progress=False)
    shutil.copy(early.run_dir / "checkpoints" / "latest.pt", run_dir / "checkpoints" / "latest.pt")
    train(_config(data_root, tmp_path, "train.max_steps=4", f"train.resume={run_dir}"), progress=False)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    assert len(list((run_dir / TB_DIR).glob("events.out.tfevents.*"))) == 2, "one event file per process"
    steps = _assert_same_as_metrics(run_dir)  # steps 3 and 4 once each, not once per event file
    assert steps["train/recon"] == [1, 2, 3, 4] and steps["val/val_mse"] == [2, 4]


@pytest.mark.slow
def test_off_writes_nothing_and_true_needs_the_package(data_root, tmp_path, monkeypatch):
    res = train(_config(data_root, tmp_path, "train.max_steps=2", "train.tensorboard=false"), progress=False)
    assert not (res.run_dir / TB_DIR).exists()
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert tensorboard_enabled("auto") is False
    with pytest.raises(ValueError, match="train.tensorboard=true but the tensorboard package is not installed"):
        tensorboard_enabled(True)
