"""Faults a user meets, each with one line naming the file (or a counted, reported skip) and nothing lost:
damaged checkpoints and their fallback, untrusted files, stale temporary files, failed runs, damaged JSON,
missing and undecodable panels, folders that are not runs, panels edited in place, strict done.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssuper_lib.config import DataConfig, load_config
from ssuper_lib.data.comics import Box, read_sequences, write_annotation_file
from ssuper_lib.train import data_overrides, train

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_root(tiny_synthetic, tmp_path_factory) -> Path:
    """A private, preprocessed copy of the tiny synthetic data set (its panels may be edited by a test)."""
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("fault_data") / "synthetic"
    shutil.copytree(tiny_synthetic, root, ignore=shutil.ignore_patterns("sequences.json", "split.json", "faces*", "feature_cache"))
    cfg = load_config("configs/models/ci_plain_ssupervae.yaml", data_overrides(root))
    run_preprocessing(cfg.data, progress=False, write_faces=False)
    return root


def _cfg(root: Path, out_dir: Path, *extra: str):
    return load_config("configs/models/ci_plain_ssupervae.yaml", data_overrides(root) + [
        f"train.out_dir={out_dir}", "data.num_workers=0", "train.num_workers=0", "train.sample_every=0",
        "train.val_every=0", "train.log_every=1", *extra])


class _Evil:
    """Pickles as a call that would create ``target``: loading it must never run it."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


# ---------------------------------------------------------------------------------------------- checkpoints
def test_atomic_save_flushes_to_disk_before_replacing(tmp_path, monkeypatch):
    """The temporary file is fsynced before it replaces the checkpoint, so a power loss leaves no empty file."""
    from ssuper_lib.storage import atomic_torch_save

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.stat(a).st_ino)), real_replace(a, b))[1])
    target = tmp_path / "latest.pt"
    atomic_torch_save({"x": torch.ones(3)}, target)
    assert ("fsync", target.stat().st_ino) in events, events  # the file that became latest.pt was flushed ...
    assert events.index(("fsync", target.stat().st_ino)) < events.index(("replace", target.stat().st_ino))  # ... first
    assert torch.load(target, weights_only=True)["x"].sum() == 3


def test_damaged_latest_checkpoint_resumes_from_the_previous_one(data_root, tmp_path):
    """latest.pt cut short: resume warns, names the file, and goes on from previous.pt (the checkpoint before)."""
    first = train(_cfg(data_root, tmp_path, "train.max_steps=2", "train.ckpt_every=1"), progress=False)
    ckpts = first.run_dir / "checkpoints"
    assert torch.load(ckpts / "previous.pt", weights_only=True)["step"] == 1
    data = (ckpts / "latest.pt").read_bytes()
    (ckpts / "latest.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=r"latest\.pt.*previous checkpoint .*previous\.pt \(step 1\)"):
        again = train(_cfg(data_root, tmp_path, "train.max_steps=3", "train.ckpt_every=1", f"train.resume={first.run_dir}"),
                      progress=False)
    assert again.run_dir == first.run_dir and again.step == 3
    assert [r["step"] for r in _train_lines(first.run_dir)] == [1, 2, 3]  # step 2 was done again, logged once
    assert torch.load(ckpts / "latest.pt", weights_only=True)["step"] == 3
    assert torch.load(ckpts / "previous.pt", weights_only=True)["step"] == 2  # the good ones rotate on


def _train_lines(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r.get("kind") == "train"]


def test_empty_checkpoint_is_one_line_naming_the_file(data_root, tmp_path):
    """A 0-byte checkpoint (nothing to fall back to): the training CLI prints one error line, no traceback."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cfg_file = tmp_path / "cfg.yaml"
    from ssuper_lib.config import save_config

    save_config(_cfg(data_root, tmp_path / "runs", "train.max_steps=1"), cfg_file)
    res = subprocess.run([sys.executable, "-m", "ssuper_lib.train", str(cfg_file), f"train.resume={empty}", "--no-progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 1, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("error: ") and str(empty) in lines[0] and "empty" in lines[0]


def test_damaged_or_untrusted_detector_checkpoint_is_one_line(tmp_path):
    """BBTNet weights cut short, or a pickle that would run code: one CheckpointError line naming the file; the
    refusal never suggests turning ``weights_only`` off, and nothing in the file runs."""
    from ssuper_lib.detect.bbtnet import load_bbtnet
    from ssuper_lib.runs import load_checkpoint
    from ssuper_lib.storage import CheckpointError

    good = tmp_path / "weights.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(4, 3, 3, 3)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError) as err:
        load_bbtnet(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value) and "truncated" in str(err.value)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"models": _Evil(marker)}, evil)
    for load in (load_checkpoint, load_bbtnet):
        with pytest.raises(CheckpointError) as err:
            load(evil)
        msg = str(err.value)
        assert str(evil) in msg and "refused" in msg and "\n" not in msg
        assert "weights_only" not in msg and "False" not in msg, msg
    assert not marker.exists()


def test_stale_temporary_checkpoint_files_are_removed(data_root, tmp_path):
    """A ``.latest.pt.tmp<pid>`` of a writer that died is removed when the run next saves; a live one is kept."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "00000-stale"
    (run_dir / "checkpoints").mkdir(parents=True)
    stale = run_dir / "checkpoints" / f".latest.pt.tmp{dead.pid}"
    stale.write_bytes(b"partial")
    live = run_dir / "checkpoints" / f".latest.pt.tmp{os.getppid()}"
    live.write_bytes(b"someone else's")
    train(_cfg(data_root, tmp_path, "train.max_steps=1"), run_dir=run_dir, progress=False)
    assert not stale.exists() and live.exists()
    assert (run_dir / "checkpoints" / "latest.pt").is_file()


def test_fid_feature_cache_is_not_unpickled(tmp_path):
    """A torch-fidelity feature cache that holds anything but tensors is not loaded (nothing in it runs): it is
    recomputed; a plain tensor file is read back."""
    from ssuper_lib.evaluate.fid import cached_features

    marker = tmp_path / "pwned"
    torch.save(_Evil(marker), tmp_path / "evil-inception-v3-compat-features-2048.pt")
    assert cached_features(tmp_path, "evil") is None and not marker.exists()
    torch.save(torch.ones(5, 2048), tmp_path / "good-inception-v3-compat-features-2048.pt")
    assert cached_features(tmp_path, "good").shape == (5, 2048)


# ---------------------------------------------------------------------------------------------- runs
def test_a_run_that_fails_before_its_first_step_leaves_no_run_directory(data_root, tmp_path):
    cfg = _cfg(data_root, tmp_path / "runs", "train.max_steps=1", f"data.sequence_path={tmp_path / 'nowhere.json'}")
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        train(cfg, progress=False)
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name != "feature_cache"]
    explicit = tmp_path / "explicit" / "00000-x"
    with pytest.raises(FileNotFoundError):
        train(cfg, run_dir=explicit, progress=False)
    assert not explicit.exists()


def test_done_json_is_strict_json(data_root, tmp_path):
    """A run without validations has no best value: done.json says null, never Infinity."""
    res = train(_cfg(data_root, tmp_path, "train.max_steps=1"), progress=False)
    text = (res.run_dir / "done.json").read_text()
    done = json.loads(text, parse_constant=lambda c: pytest.fail(f"done.json holds {c}: {text}"))
    assert done["step"] == 1 and done["best_val"] is None


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    from ssuper_lib.evaluate.__main__ import main

    folder = tmp_path / "not_a_run"
    folder.mkdir()
    try:
        rc = main([str(folder), "--no-baselines"])
    except SystemExit as exc:  # argparse's error path
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and f"error: not a run directory: {folder}" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- data files
def test_truncated_sequences_json_names_the_file(tmp_path):
    from ssuper_lib.data.comics import DataFileError

    path = tmp_path / "sequences.json"
    path.write_text('{"0": [["0/0_0.jpg", "0/0_1.jpg", "0/0_2.jpg"], [[[0, 0, 4, 4], [0, 0, 2, 2]]')
    with pytest.raises(DataFileError, match=rf"{path}: not valid JSON.*preprocessing"):
        read_sequences(path)


def test_feature_cache_key_follows_panels_edited_in_place(data_root):
    """Rewriting a panel in place (same path, same samples) gives another cache key."""
    from ssuper_lib.data.datasets import PanelSequenceDataset
    from ssuper_lib.data.features import feature_cache_key
    from ssuper_lib.models import build_model

    cfg = load_config("configs/models/ci_plain_ssupervae.yaml", data_overrides(data_root) + ["model.pretrained=false"])
    ds = PanelSequenceDataset.from_config(cfg.data, split="test")
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size))
    before, _ = feature_cache_key(model, ds, cfg, "test")
    panel = data_root / "panels" / ds.samples[0].panels[0]
    st = panel.stat()
    with Image.open(panel) as im:
        im.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(panel, quality=90)
    os.utime(panel, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after, _ = feature_cache_key(model, ds, cfg, "test")
    assert after != before


# ---------------------------------------------------------------------------------------------- preprocessing
def _series(root: Path, names: list[str], faces: list[str] | None = None) -> DataConfig:
    """One series "0" with the given panels on disk, each annotated with one clear face (or only ``faces``)."""
    rng = np.random.default_rng(0)
    d = root / "panels" / "0"
    d.mkdir(parents=True)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(d / f"{n}.jpg")
    write_annotation_file(root / "annotations" / "0.txt",
                          [(f"0/{n}.jpg", Box(10, 10, 70, 70, 0.99)) for n in (faces or names)])
    return DataConfig(panel_path=str(root / "panels"), annot_path=str(root / "annotations"),
                      sequence_path=str(root / "out" / "sequences.json"), faces_path=str(root / "out" / "faces"),
                      ground_truth_path=None, split="series_fraction", train_test_ratio=1.0)


def test_windows_never_bridge_a_missing_panel(tmp_path):
    """0_2 deleted (still annotated), 1_0 deleted (not annotated): no window spans either gap; both are counted."""
    from ssuper_lib.preprocess import run_preprocessing

    names = ["0_0", "0_1", "0_2", "0_3", "0_4", "0_5", "1_0", "1_1", "1_2", "1_3"]
    cfg = _series(tmp_path, names, faces=[n for n in names if n != "1_0"])
    for gone in ("0_2", "1_0"):
        (tmp_path / "panels" / "0" / f"{gone}.jpg").unlink()
    rep = run_preprocessing(cfg, progress=False, write_faces=False)
    windows = {tuple(p.split("/")[1][:-4] for p in s.panels) for s in read_sequences(cfg.sequence_path)}
    assert windows == {("0_3", "0_4", "0_5"), ("1_1", "1_2", "1_3")}
    assert rep.missing_panels == 1 and rep.missing == ["0/0_2.jpg"] and rep.panel_gaps == 2
    assert rep.windows_broken == 4  # (0_0 0_1 0_3) (0_1 0_3 0_4) (0_4 0_5 1_1) (0_5 1_1 1_2)
    assert "0/0_2.jpg" in rep.skipped() and "4 windows left out" in rep.skipped()


def test_undecodable_panels_are_skipped_and_listed(tmp_path):
    """A panel that is not an image and one cut short: left out, listed with the reason; the rest goes on."""
    from ssuper_lib.preprocess import run_preprocessing

    cfg = _series(tmp_path, ["0_0", "0_1", "0_2", "0_3", "0_4", "0_5"])
    d = tmp_path / "panels" / "0"
    (d / "0_1.jpg").write_bytes(b"this is not a JPEG at all")
    data = (d / "0_5.jpg").read_bytes()
    (d / "0_5.jpg").write_bytes(data[: len(data) // 2])
    rep = run_preprocessing(cfg, progress=False, write_faces=True, workers=1)
    assert rep.undecodable_panels == 2 and [u.split(":")[0] for u in rep.undecodable] == ["0/0_1.jpg", "0/0_5.jpg"]
    assert "truncated JPEG" in rep.undecodable[1]
    windows = [tuple(p.split("/")[1][:-4] for p in s.panels) for s in read_sequences(cfg.sequence_path)]
    assert windows == [("0_2", "0_3", "0_4")]
    assert not (tmp_path / "out" / "faces" / "0" / "0_5_0.jpg").exists()


def test_split_is_checked_before_the_sequence_file_is_written(tmp_path):
    from ssuper_lib.preprocess import run_preprocessing

    cfg = _series(tmp_path, ["0_0", "0_1", "0_2"])
    cfg.val_series = 5  # more validation series than there are
    with pytest.raises(ValueError, match="val_series"):
        run_preprocessing(cfg, progress=False, write_faces=False)
    assert not Path(cfg.sequence_path).exists() and not (Path(cfg.sequence_path).parent / "split.json").exists()


def test_a_good_latest_checkpoint_resumes_without_a_warning(data_root, tmp_path):
    """Resuming from a good latest.pt does not warn (the fallback is only for damaged files)."""
    first = train(_cfg(data_root, tmp_path, "train.max_steps=1", "train.ckpt_every=1"), progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=RuntimeWarning, message=".*previous checkpoint.*")
        again = train(_cfg(data_root, tmp_path, "train.max_steps=2", f"train.resume={first.run_dir}"), progress=False)
    assert again.step == 2
