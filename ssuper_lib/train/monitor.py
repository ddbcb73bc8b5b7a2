"""What a run reports while it trains (rank 0): ``metrics.jsonl``, sample sheets, validation, best.pt.

``metrics.jsonl`` holds one JSON line per ``log_every`` steps with step, epoch, wall time, samples/s,
learning rate and the mean of each loss over the window; ``"kind": "eval"`` lines with the
reconstruction error on fixed samples; ``"kind": "val"`` lines with the validation error (and the
label-free context gain) that selects ``checkpoints/best.pt`` and stops early. ``samples/`` holds a fixed
latent grid and fixed validation sequences (panels | truth | reconstruction). With ``train.tensorboard``, the
same records and sheets also go to TensorBoard (:mod:`.tensorboard_log`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from ..config import ConfigError, ExperimentConfig
from ..data.features import FeatureDataset
from ..data.shuffle import derangement_across_groups, swap_context
from .engine import _broadcast_object, _Dist, _to_device
from .state import TrainState
from .tensorboard_log import TensorBoardLog

__all__ = ["validation_error", "ShuffledContext", "FixedSamples", "MetricsLog", "LossWindow", "Monitor",
           "N_FIXED", "N_GRID"]

N_FIXED = 8  # fixed sequences in the sample sheet and in the fixed-sample reconstruction error
N_GRID = 32  # prior samples in the fixed latent grid


# --------------------------------------------------------------------------------------------------
# Fixed samples: sample sheets and reconstruction error on fixed data
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def reconstruct_batch(model, batch: dict[str, Any], masked_index: int) -> dict[str, torch.Tensor]:
    """G(mu) for a batch (cached features or panels), and the refined face for the contextual-attention variant."""
    mu, _ = model.encode_features(batch["feats"]) if "feats" in batch else model.encode(batch["panels"])
    face = model.generate_for(mu, batch)
    out = {"recon": face.float()}
    if getattr(model, "refiner", None) is not None:
        out["fine"] = model.refine(batch["panels"][:, masked_index], face, batch["mask"], batch["mask_coords"])["fine_face"].float()
    return out


@torch.no_grad()
def validation_error(model, val_ds: Dataset, cfg: ExperimentConfig, device: torch.device, batch_size: int = 64,
                     generator: torch.Generator | None = None) -> float:
    """Mean squared error per pixel of the evaluated face (G(mu); the refined face for CA) over the validation split.

    The loader's iterator draws its base seed from ``generator``, or from the global RNG when None (as every
    validation always has: the training stream after it depends on that draw)."""
    loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, num_workers=0, generator=generator)
    total, n = 0.0, 0
    mi = cfg.data.masked_index
    for batch in loader:
        batch = _to_device(batch, device)
        rec = reconstruct_batch(model, batch, mi)
        img = rec.get("fine", rec["recon"])
        total += float(((img - batch["face"].float()) ** 2).flatten(1).mean(1).sum())
        n += img.shape[0]
    return total / max(n, 1)


class ShuffledContext(Dataset):
    """``ds`` with the context of each sample taken from a sample of another series (its panels, or their
    cached features), the masked panel kept: what the model draws without the right context. The partners
    come from :func:`ssuper_lib.data.shuffle.derangement_across_groups` (seeded) and the swap is
    :func:`ssuper_lib.data.shuffle.swap_context`, as in the evaluation."""

    def __init__(self, ds: Dataset, series: Sequence[str], masked_index: int, seed: int = 0):
        self.ds, self.mi = ds, masked_index
        self.partners = derangement_across_groups(series, seed)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item, other = dict(self.ds[i]), self.ds[int(self.partners[i])]
        key = "feats" if "feats" in item else "panels"
        item[key] = swap_context(item[key], other[key], self.mi)
        return item


def _sample_series(ds: Dataset) -> list[str] | None:
    """The series of each sample of a panel dataset (or of the one a feature dataset wraps); None if unknown."""
    base = getattr(ds, "base", None)
    base = ds if base is None else base
    samples = getattr(base, "samples", None)
    return [s.series for s in samples] if samples is not None and len(samples) == len(ds) else None


def validation_sets(cfg: ExperimentConfig, val_ds: Dataset | None) -> tuple[Dataset | None, Dataset | None]:
    """(what validation reads, the same with shuffled context or None): cached features and faces alone where
    the variant needs no panels; the shuffled twin where the validation split has several series."""
    tc = cfg.train
    val_eval, val_shuffled = val_ds, None  # what validation reads; the same with shuffled context
    if isinstance(val_ds, FeatureDataset) and cfg.model.variant in ("ssupervae", "ssupergan"):
        val_eval = FeatureDataset(val_ds.cached)  # cached features and faces: no panel decoding
    if val_ds is not None and len(val_ds) and tc.val_every > 0 and cfg.model.variant != "ssuper_exemplar":
        series = _sample_series(val_ds)
        if series is not None and len(set(series)) > 1:
            val_shuffled = ShuffledContext(val_eval, series, cfg.data.masked_index, cfg.seed)
    if tc.val_select == "context" and val_shuffled is None:
        raise ConfigError("train.val_select=context needs validation (train.val_every > 0) on at least two "
                          "series (data.val_series >= 2); the exemplar variant has its own selection (use mse)")
    return val_eval, val_shuffled


def _sheet_image(grid: torch.Tensor):
    """A (3, H, W) grid in [-1, 1] as a PIL image (scaled and rounded in the grid's float32)."""
    from PIL import Image

    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


class FixedSamples:
    """Fixed latent grid + fixed train/test sequences, used for sample sheets and the fixed-sample error."""

    def __init__(self, model, cfg: ExperimentConfig, train_ds: Dataset, val_ds: Dataset | None,
                 device: torch.device, use_features: bool):
        gen = torch.Generator().manual_seed(cfg.seed)
        self.z = torch.randn(N_GRID, model.latent_dim, generator=gen).to(device)  # fixed latent grid
        self.device = device
        self.use_features = use_features
        self.mi = cfg.data.masked_index
        self.batches: dict[str, dict[str, Any]] = {}
        for split, ds in (("train", train_ds), ("val", val_ds)):
            if ds is None or len(ds) == 0:
                continue
            n = min(N_FIXED, len(ds))
            batch = _to_device(default_collate([ds[i] for i in range(n)]), device)
            if use_features and "feats" not in batch:
                with torch.no_grad():
                    was = model.training
                    model.eval()
                    batch["feats"] = model.backbone_features(batch["panels"]).float()
                    model.train(was)
            self.batches[split] = batch

    def reconstruct(self, model, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return reconstruct_batch(model, batch, self.mi)

    @torch.no_grad()
    def errors(self, model) -> dict[str, float]:
        """Mean squared error per pixel of G(mu) (and of the refined face) on the fixed sequences."""
        out = {}
        for split, batch in self.batches.items():
            rec = self.reconstruct(model, batch)
            for key, img in rec.items():
                out[f"fixed_{split}_{key}_mse"] = float(((img - batch["face"].float()) ** 2).mean())
        return out

    @torch.no_grad()
    def save_sheets(self, model, folder: Path, step: int) -> list[Path]:
        """``prior_<step>.png`` (fixed latent grid) and ``recon_<step>.png`` (panels | truth | reconstruction)."""
        from torchvision.utils import make_grid

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        prior = model.generate(self.z).float()
        path = folder / f"prior_{step:07d}.png"
        _sheet_image(make_grid(prior, nrow=8, padding=2, pad_value=1.0)).save(path)
        paths.append(path)
        batch = self.batches.get("val") or self.batches.get("train")
        if batch is not None and "panels" in batch:
            rec = self.reconstruct(model, batch)
            cell = min(128, batch["panels"].shape[-2])
            cols = [batch["panels"][:, j] for j in range(batch["panels"].shape[1])]  # each (n, 3, H, W)
            cols += [batch["face"]] + [rec[k] for k in ("recon", "fine") if k in rec]
            cols = [F.interpolate(c.float(), size=(cell, cell), mode="bilinear", align_corners=False) for c in cols]
            tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (n * ncols, 3, cell, cell), row-major
            path = folder / f"recon_{step:07d}.png"
            _sheet_image(make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)).save(path)
            paths.append(path)
        return paths


# --------------------------------------------------------------------------------------------------
# metrics.jsonl, loss windows
# --------------------------------------------------------------------------------------------------


class MetricsLog:
    """Rank 0's ``metrics.jsonl`` (appended; None on other ranks), its TensorBoard event files
    (:class:`.tensorboard_log.TensorBoardLog` or None) and the user's callback; its clock starts when it is made."""

    def __init__(self, path: Path | None, callback: Callable[[dict[str, Any]], None] | None, main: bool,
                 tensorboard: TensorBoardLog | None = None):
        self.file = open(path, "a") if path is not None else None
        self.callback = callback if main else None
        self.tensorboard = tensorboard if main else None
        self.t_start = time.time()

    def elapsed(self) -> float:
        return round(time.time() - self.t_start, 3)

    def emit(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.tensorboard is not None:
            self.tensorboard.record(record)
        if self.callback is not None:
            self.callback(record)

    def samples(self, step: int, paths: list[Path]) -> None:
        """The sample sheets of ``step``: TensorBoard images and a ``samples`` callback."""
        if self.tensorboard is not None:
            self.tensorboard.images(step, paths)
        if self.callback is not None:
            self.callback({"kind": "samples", "step": step, "paths": [str(p) for p in paths]})

    def flush(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.flush()
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


class LossWindow:
    """The loss values of the steps since the last ``train`` line (their means make the next one) and of the
    last 50 steps (the progress bar's)."""

    def __init__(self):
        self.window: dict[str, list[float]] = defaultdict(list)
        self.running: dict[str, deque] = defaultdict(lambda: deque(maxlen=50))
        self.t_window, self.n_window = time.time(), 0
        self.last: dict[str, float] = {}  # the means of the last train line

    def add(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.window[k].append(v)
            self.running[k].append(v)
        self.n_window += 1

    def postfix(self) -> dict[str, str]:
        return {k: f"{sum(v) / len(v):.3g}" for k, v in self.running.items() if k != "kl_weight"}

    def emit(self, log: MetricsLog, step: int, epoch: int, samples_per_step: int, lr: float) -> None:
        """Write the ``train`` line of the window and start the next one."""
        dt = max(time.time() - self.t_window, 1e-9)
        self.last = {k: sum(v) / len(v) for k, v in self.window.items()}
        log.emit({"kind": "train", "step": step, "epoch": epoch, "time": log.elapsed(),
                  "samples_per_s": round(self.n_window * samples_per_step / dt, 2), "lr": lr, **self.last})
        self.window.clear()
        self.t_window, self.n_window = time.time(), 0


# --------------------------------------------------------------------------------------------------
# The monitor: fixed-sample evaluation, validation, early stopping, best.pt
# --------------------------------------------------------------------------------------------------


class Monitor:
    """What a run reports between steps: the fixed-sample errors and sheets (rank 0), the validation with
    its best value, early stopping and ``best.pt``; ``last_eval`` holds the latest of these values."""

    def __init__(self, cfg: ExperimentConfig, model: torch.nn.Module, d: _Dist, device: torch.device,
                 log: MetricsLog, fixed: FixedSamples | None, val_ds: Dataset | None, val_eval: Dataset | None,
                 val_shuffled: Dataset | None, run_dir: Path, steps_per_epoch: int):
        self.cfg, self.model, self.dist, self.device, self.log, self.fixed = cfg, model, d, device, log, fixed
        self.val_ds, self.val_eval, self.val_shuffled = val_ds, val_eval, val_shuffled
        self.run_dir, self.steps_per_epoch = run_dir, steps_per_epoch
        self.last_eval: dict[str, float] = {}

    def start(self, state: TrainState, ckpt_path: Path | None, total_steps: int, amp_dtype: torch.dtype | None,
              data_info: dict[str, Any]) -> None:
        """The ``resume`` record of a resumed run, or the ``start`` record and the step-0 evaluation."""
        d, step = self.dist, state.step
        if d.main and step > 0:
            self.log.emit({"kind": "resume", "step": step, "checkpoint": str(ckpt_path), "world_size": d.world_size,
                           "total_steps": total_steps})
        if d.main and step == 0:
            self.log.emit({"kind": "start", "step": 0, "world_size": d.world_size, "device": str(self.device),
                           "amp": str(amp_dtype), "steps_per_epoch": self.steps_per_epoch, "total_steps": total_steps,
                           **data_info})
            self.evaluate_and_sample(step)

    def evaluate_and_sample(self, step: int) -> None:
        """Fixed-sample errors (an ``eval`` record) and sample sheets (a ``samples`` callback) on rank 0."""
        fixed, model = self.fixed, self.model
        if fixed is None:
            return
        model.eval()
        errs = fixed.errors(model)
        paths = fixed.save_sheets(model, self.run_dir / "samples", step)
        model.train()
        self.log.emit({"kind": "eval", "step": step, "epoch": step // self.steps_per_epoch, "time": self.log.elapsed(),
                       **errs})
        self.last_eval.update(errs)
        self.log.samples(step, paths)

    def validate(self, state: TrainState) -> bool:
        """Validation error on the whole validation split (rank 0); keeps best.pt; True = stop early."""
        cfg, tc, model, d, device = self.cfg, self.cfg.train, self.model, self.dist, self.device
        val_ds, val_eval, val_shuffled = self.val_ds, self.val_eval, self.val_shuffled
        val_state, step = state.val, state.step
        stop = False
        if d.main and val_ds is not None and len(val_ds):
            model.eval()
            err = validation_error(model, val_eval, cfg, device)
            record: dict[str, Any] = {"val_mse": err}
            if val_shuffled is not None:  # label-free context gain: how much worse a wrong context makes it
                # own generator: this diagnostic pass must not move the training RNG stream
                record["val_mse_shuffled"] = validation_error(model, val_shuffled, cfg, device,
                                                              generator=torch.Generator())
                record["val_context_gain"] = record["val_mse_shuffled"] - err
            model.train()
            crit = err if tc.val_select == "mse" else -record["val_context_gain"]
            improved = crit < val_state["best"]
            if improved:
                val_state.update(best=crit, best_step=step, bad=0)
            else:
                val_state["bad"] += 1
            self.log.emit({"kind": "val", "step": step, **record, "val_select": tc.val_select,
                           "best_val": val_state["best"], "best_step": val_state["best_step"]})
            self.last_eval.update(record)
            stop = tc.early_stop_patience > 0 and val_state["bad"] >= tc.early_stop_patience
        if d.active:
            stop = bool(_broadcast_object(stop, d))
        if tc.keep_best and val_state.get("best_step") == step:
            state.save("best")
        return stop
