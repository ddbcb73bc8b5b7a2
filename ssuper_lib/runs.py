"""Run directories: how they are named, made and found, and how a finished run is loaded back.

A run lives in ``<train.out_dir>/<NNNNN>-<name>/`` (``runs/00012-demo_plain_ssupergan/``): ``config.yaml``
(the resolved config), ``metrics.jsonl``, ``samples/`` and ``checkpoints/{latest,previous,best}.pt``. Training
makes them (:func:`make_run_dir`), resumes from them (:func:`find_checkpoint`, :func:`load_resume_checkpoint`),
and evaluation, the figures and the identity tools read them back (:func:`latest_run`, :func:`load_run`).
Everything here is shared by those stages, so it sits below all of them.

``previous.pt`` is the checkpoint ``latest.pt`` replaced (:meth:`TrainState.save`); resuming falls back to it,
with a warning, when ``latest.pt`` is empty, truncated or damaged. A checkpoint that does not load raises
:class:`CheckpointError`: one line naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import ExperimentConfig, config_from_dict, load_config, resolve_path
from .models import build_model
from .storage import CheckpointError, safe_torch_load

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "parse_run_name",
    "make_run_dir",
    "find_checkpoint",
    "run_checkpoint",
    "checkpoint_step",
    "load_checkpoint",
    "previous_checkpoint",
    "load_resume_checkpoint",
    "is_run_dir",
    "read_metrics",
    "seed_run_name",
    "latest_run",
    "latest_runs",
    "eval_cache_dir",
    "load_run",
]

CHECKPOINT_VERSION = 1

_RUN_RE = re.compile(r"^(\d{5})-(.+)$")


def parse_run_name(folder: str | Path) -> tuple[int, str] | None:
    """``(number, name)`` of a run folder named ``<NNNNN>-<name>``, or None for any other folder."""
    m = _RUN_RE.match(Path(folder).name)
    return (int(m.group(1)), m.group(2)) if m else None


def _runs_of(out_dir: str | Path, name: str | None = None) -> list[Path]:
    """The run folders under ``out_dir`` (of run ``name``, or all), newest (highest number) first."""
    out = resolve_path(out_dir)
    if not out.is_dir():
        return []
    found = [(parsed[0], p) for p in out.iterdir()
             if p.is_dir() and (parsed := parse_run_name(p)) and (name is None or parsed[1] == name)]
    return [p for _, p in sorted(found, reverse=True)]


def make_run_dir(out_dir: str | Path, name: str) -> Path:
    """Create ``<out_dir>/<NNNNN>-<name>/`` with the next free number (atomic ``mkdir``, race-safe)."""
    out = resolve_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [parsed[0] for p in out.iterdir() if (parsed := parse_run_name(p))]
        path = out / f"{max(numbers, default=-1) + 1:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def previous_checkpoint(path: str | Path) -> Path:
    """``checkpoints/previous.pt`` beside ``checkpoints/latest.pt`` (the checkpoint the latest one replaced)."""
    return Path(path).with_name("previous.pt")


def _resumable(run: Path) -> Path | None:
    """``checkpoints/latest.pt`` of a run, or its ``previous.pt`` when only that one is there; else None."""
    latest = run / "checkpoints" / "latest.pt"
    return latest if latest.is_file() else (previous_checkpoint(latest) if previous_checkpoint(latest).is_file() else None)


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory with a checkpoint (``checkpoints/latest.pt``, ``best.pt`` or ``previous.pt``)."""
    ckpts = Path(path) / "checkpoints"
    return any((ckpts / f"{n}.pt").is_file() for n in ("latest", "best", "previous"))


def find_checkpoint(resume: str | Path, out_dir: str | Path = "runs", name: str | None = None) -> Path | None:
    """The checkpoint that ``train.resume`` names: a ``.pt`` file, a run directory, or ``auto`` (the newest
    run of ``name`` under ``out_dir`` that has ``checkpoints/latest.pt``; None when there is none). A run's
    ``previous.pt`` stands in for a ``latest.pt`` that is not there."""
    if str(resume) == "auto":
        for run in _runs_of(out_dir, name):
            if (found := _resumable(run)) is not None:
                return found
        return None
    path = resolve_path(resume)
    if path.is_dir():
        path = _resumable(path) or path / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise FileNotFoundError(f"train.resume={resume!r}: no checkpoint at {path}")
    return path


def run_checkpoint(run_dir: str | Path, which: str | None = None) -> Path:
    """The checkpoint file of a run: ``which`` = "best" (``checkpoints/best.pt``, the lowest validation error;
    ``latest.pt`` when the run kept none) or "latest"; None reads ``eval.checkpoint`` of the run's config.
    A checkpoint file is returned as is."""
    path = Path(run_dir)
    if path.is_file():
        return path
    if which is None:
        cfg_file = path / "config.yaml"
        which = load_config(cfg_file).eval.checkpoint if cfg_file.is_file() else "best"
    if which not in ("best", "latest"):
        raise ValueError(f"checkpoint: expected best or latest, got {which!r}")
    best = path / "checkpoints" / "best.pt"
    return best if which == "best" and best.is_file() else path / "checkpoints" / "latest.pt"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only); a file that does not
    load, or is no kit checkpoint, raises :class:`CheckpointError` (one line naming it)."""
    ckpt = safe_torch_load(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "models" not in ckpt:
        raise CheckpointError(f"{path}: not a checkpoint of this kit (expected a dict with 'models'); resume from a "
                              f"run's checkpoints/latest.pt")
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is newer than this code ({CHECKPOINT_VERSION})")
    return ckpt


def load_resume_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
    """``(checkpoint, the file it came from)``: ``path``, or, when that does not load and is a run's ``latest.pt``,
    its ``previous.pt`` (with a warning naming both)."""
    path = Path(path)
    try:
        return load_checkpoint(path, map_location), path
    except CheckpointError as exc:
        prev = previous_checkpoint(path)
        if path.name != "latest.pt" or not prev.is_file():
            raise
        try:
            ckpt = load_checkpoint(prev, map_location)
        except CheckpointError as exc_prev:
            raise CheckpointError(f"{exc}; the previous checkpoint does not load either: {exc_prev}") from None
        warnings.warn(f"{exc.args[0].split('; ')[0]}; resuming from the previous checkpoint {prev} "
                      f"(step {ckpt.get('step')})", RuntimeWarning, stacklevel=2)
        return ckpt, prev


def read_metrics(run_dir: str | Path, kind: str | None = "train") -> list[dict[str, Any]]:
    """The records of ``<run_dir>/metrics.jsonl`` (of one ``kind``: ``train`` or ``eval``; None = all)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def checkpoint_step(run_dir: str | Path, which: str | None = None) -> int | None:
    """Training step of the run's evaluated checkpoint (:func:`run_checkpoint`; read from the checkpoint,
    else the last step in metrics.jsonl), or None."""
    run_dir = Path(run_dir)
    ckpt = run_checkpoint(run_dir, which)
    if ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
            if isinstance(state, dict) and "step" in state:
                return int(state["step"])
        except Exception:  # noqa: BLE001 - fall back to the log
            pass
    steps = [r.get("step") for r in read_metrics(run_dir, kind=None)]
    steps = [s for s in steps if s is not None]
    return int(max(steps)) if steps else None


def seed_run_name(name: str, seed: int) -> str:
    """Run name of training seed ``seed`` of a config: the config's name for seed 0, ``<name>_seed<k>`` else."""
    return name if seed == 0 else f"{name}_seed{seed}"


def latest_run(name: str, out_dir: str | Path = "runs") -> Path | None:
    """The newest run directory ``<out_dir>/<NNNNN>-<name>/`` holding a checkpoint, or None."""
    for run in _runs_of(out_dir, name):
        if (run / "checkpoints" / "latest.pt").is_file():
            return run
    return None


def latest_runs(configs: Sequence[str | Path], out_dir: str | Path = "runs", seeds: int = 1) -> dict[str, Path | None]:
    """{label: newest run (or None)} for each config file and each of its first ``seeds`` training seeds
    (label: the config path, with ``#seed<k>`` for k > 0)."""
    out = {}
    for c in configs:
        name = load_config(c).name
        for k in range(seeds):
            out[str(c) + (f"#seed{k}" if k else "")] = latest_run(seed_run_name(name, k), out_dir)
    return out


def eval_cache_dir(cfg: ExperimentConfig, cache_dir: str | Path | None = None) -> Path:
    """Where evaluation caches what it computes once per data set (identity classifiers, face embeddings):
    ``cache_dir`` when given, else ``eval_cache/`` beside the data set's ``sequences.json``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return resolve_path(cfg.data.sequence_path).parent / "eval_cache"


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             checkpoint: str | None = None) -> tuple[ExperimentConfig, torch.nn.Module]:
    """``(cfg, model)`` of a run: its resolved ``config.yaml`` and the weights of its checkpoint
    (:func:`run_checkpoint`: ``best.pt`` by default, else ``latest.pt``; loaded with ``weights_only=True``),
    model in eval mode on ``device``.

    ``run_dir`` may also be a checkpoint file; the config then comes from the checkpoint itself. The model
    is built with ``pretrained=false`` (every weight comes from the checkpoint: nothing is downloaded).
    """
    path = Path(run_dir)
    ckpt_path = run_checkpoint(path, checkpoint)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no checkpoint; has the run at {path} saved one (train.ckpt_every)?")
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    cfg_file = ckpt_path.parent.parent / "config.yaml"
    cfg = load_config(cfg_file) if cfg_file.is_file() else config_from_dict(ckpt["config"], str(ckpt_path))
    cfg.eval.checkpoint = ckpt_path.stem if ckpt_path.stem in ("best", "latest") else cfg.eval.checkpoint
    build_cfg = dataclasses.replace(cfg.model, pretrained=False)
    model = build_model(build_cfg, panel_size=tuple(cfg.data.panel_size))
    model.load_state_dict(ckpt["models"]["model"])
    if cfg.train.channels_last:
        model.channels_last()
    return cfg, model.to(device).eval()
