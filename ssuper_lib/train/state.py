"""Where a run stands, and its checkpoints: RNG states, seeding, writing and restoring a checkpoint.

``checkpoints/latest.pt`` is written to a temporary file, flushed to disk, then ``os.replace``d; the
checkpoint it replaces is kept as ``checkpoints/previous.pt``, and resuming falls back to that one (with a
warning) when ``latest.pt`` does not load. Temporary files left by a killed writer are removed at the next
save. A checkpoint loads with ``weights_only=True`` and holds model, optimisers, schedulers, scaler, step,
epoch, data position, config, the RNG states of every rank, the validation record and a version.

**Exact resume.** The data order is a pure function of ``(seed, epoch)`` (the sampler's permutation), the
DataLoader draws its worker seeds from its own generator (not the global RNG), and a resumed run skips
the batches of the current epoch that were already consumed and restores every RNG; on CPU a run killed
at any point and resumed from its last checkpoint ends with bit-identical weights to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .. import __version__
from ..config import ConfigError, ExperimentConfig, config_to_dict
from ..data.features import weights_fingerprint
from ..runs import CHECKPOINT_VERSION, load_resume_checkpoint, previous_checkpoint
from ..storage import atomic_torch_save, remove_stale_temporaries
from .engine import _Dist
from .objectives import Objective

__all__ = ["TrainState", "ENV_HASH_DIR"]

# Test aid (read only here): write each rank's final weight hash into this folder, so a test can compare DDP ranks.
ENV_HASH_DIR = "SSUPER_TRAIN_HASH_DIR"


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG this process uses, as tensors and primitives (``weights_only`` loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore the RNG streams of a checkpoint (its tensors may have been mapped to a GPU with the checkpoint)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].cpu().numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
         npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


class TrainState:
    """The step a run has reached, its validation record (best value and step, validations without
    improvement) and its checkpoints: :meth:`save` writes one (every rank's RNG state in it), :meth:`restore`
    resumes from one."""

    def __init__(self, cfg: ExperimentConfig, model: torch.nn.Module, objective: Objective, device: torch.device,
                 d: _Dist, run_dir: Path, steps_per_epoch: int):
        self.cfg, self.model, self.objective, self.device, self.dist = cfg, model, objective, device, d
        self.run_dir, self.steps_per_epoch = run_dir, steps_per_epoch
        self.step = 0
        self.last_ckpt: Path | None = None  # the last latest.pt written (or resumed from)
        self.last_ckpt_step = -1
        self.val: dict[str, Any] = {"best": float("inf"), "best_step": None, "bad": 0}

    def restore(self, ckpt_path: Path | None) -> Path | None:
        """Resume from ``ckpt_path`` (None: a fresh start; a ``latest.pt`` that does not load: its ``previous.pt``):
        weights, optimisers, step, this rank's RNG states and the validation record (when it was kept with the
        same ``train.val_select``). Rank 0 drops the metric lines written after the checkpoint. Returns the
        checkpoint file resumed from."""
        if ckpt_path is None:
            return None
        cfg, model, objective, device, d, run_dir = self.cfg, self.model, self.objective, self.device, self.dist, self.run_dir
        ckpt, ckpt_path = load_resume_checkpoint(ckpt_path, map_location=device)
        _check_compatible(cfg, ckpt, ckpt_path)
        model.load_state_dict(ckpt["models"]["model"])
        objective.load_state_dict(ckpt)
        step = int(ckpt["step"])
        rng = ckpt["rng"]
        _set_rng_state(rng[min(d.rank, len(rng) - 1)], device)
        if d.main:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
        self.step, self.last_ckpt, self.last_ckpt_step = step, ckpt_path, step
        if isinstance(ckpt.get("val"), dict):
            if ckpt.get("config", {}).get("train", {}).get("val_select", "mse") == cfg.train.val_select:
                self.val.update(ckpt["val"])  # another criterion's best would not compare: start its record afresh
        return ckpt_path

    def save(self, name: str = "latest") -> None:
        """Write ``checkpoints/<name>.pt`` (rank 0; every rank takes part in gathering the RNG states)."""
        d, device, step, steps_per_epoch = self.dist, self.device, self.step, self.steps_per_epoch
        rngs = [_rng_state(device)]
        if d.active:
            rngs = [None] * d.world_size
            dist.all_gather_object(rngs, _rng_state(device))
            rngs = [{k: (v.cpu() if torch.is_tensor(v) else v) for k, v in r.items()} for r in rngs]
        if d.main:
            payload = {
                "version": CHECKPOINT_VERSION,
                "library_version": __version__,
                "models": {"model": self.model.state_dict()},
                **self.objective.state_dict(),
                "step": step,
                "epoch": step // steps_per_epoch,
                "batch_in_epoch": step % steps_per_epoch,
                "world_size": d.world_size,
                "config": config_to_dict(self.cfg),
                "rng": rngs,
                "val": dict(self.val),
            }
            path = self.run_dir / "checkpoints" / f"{name}.pt"
            remove_stale_temporaries(path)
            # the latest.pt this run wrote or resumed from becomes previous.pt (one that did not load is not kept)
            keep = previous_checkpoint(path) if name == "latest" and _same_file(self.last_ckpt, path) else None
            atomic_torch_save(payload, path, previous=keep)  # temporary file, fsync, then os.replace
            if name == "latest":
                self.last_ckpt, self.last_ckpt_step = path, step
        elif name == "latest":
            self.last_ckpt_step = step

    def last_good(self) -> str:
        """Where a stopped run can resume from, in words."""
        if self.last_ckpt:
            return f"the last good checkpoint is {self.last_ckpt} (step {self.last_ckpt_step})"
        return "no checkpoint was written yet"


def _same_file(a: Path | None, b: Path) -> bool:
    return a is not None and a.is_file() and b.is_file() and os.path.samefile(a, b)


def _check_compatible(cfg: ExperimentConfig, ckpt: dict[str, Any], path: Path) -> None:
    """A checkpoint resumes only into the same model on the same panel size."""
    old = ckpt.get("config", {})
    new = config_to_dict(cfg)
    diffs = [f"model.{k}" for k, v in new["model"].items() if old.get("model", {}).get(k) != v]
    if old.get("data", {}).get("panel_size") != new["data"]["panel_size"]:
        diffs.append("data.panel_size")
    if diffs:
        raise ConfigError(f"train.resume: {path} was trained with different settings for {', '.join(diffs)}; "
                          "resume with the run's own config.yaml or start a new run")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a run resumes from (a killed run may have gone on)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _maybe_write_hash(model: torch.nn.Module, d: _Dist, step: int, run_dir: Path) -> None:
    """Test aid: with $SSUPER_TRAIN_HASH_DIR set, each rank writes ``rank<r>.json`` with its weight hash."""
    folder = os.environ.get(ENV_HASH_DIR)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    info = {"rank": d.rank, "world_size": d.world_size, "step": step, "sha256": weights_fingerprint(model), "run_dir": str(run_dir)}
    (Path(folder) / f"rank{d.rank}.json").write_text(json.dumps(info))
