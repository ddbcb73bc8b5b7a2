"""Frozen-backbone feature cache: compute the panel embeddings once, train the rest on them.

With ``model.freeze_backbone: true`` the EfficientNet never changes, so its output for a given panel is
a constant. :func:`load_or_compute_features` runs ``model.backbone_features`` once over a split (eval mode,
no grad, float32) and stores the result on disk; training steps then call ``model.encode_features`` on the
cached tensors and skip the backbone entirely. Windows of a series share context panels, so each distinct
context panel goes through the backbone once (about 2 forwards per sample instead of 3). On a 2-core CPU
this turns a demo that learns nothing in minutes (end-to-end backbone) into one that learns to use panel
context (docs/design.md 6).

The cache file is keyed by everything that determines its content, so a stale cache is never used:

* backbone name, ``spatial_features`` and a SHA-256 of the feature extractor's weights (this identifies
  pretrained vs random initialisation and any weights file exactly, whatever its path; the trained
  embedding head after it is left out, so runs and their evaluations share one cache); with
  ``model.train_top_stages`` the cache holds the frozen layers' output map, and only their weights count;
* panel size, face size, mask value and panel order;
* the samples of the split (their panels and boxes), the split name, and the size and modification time
  (``st_mtime_ns``) of every panel they read, so a panel edited or replaced in place is read again;
* the code version (this module's cache version, the library version and the source of the backbone,
  dataset and panel-decoding modules).

Files live in ``<folder of data.sequence_path>/feature_cache/<key>.pt`` (or ``<train.out_dir>/feature_cache``
when the data folder is read-only), written atomically and loadable with ``weights_only=True``.

The original code had no caching: it fine-tuned the backbone end to end (which remains the default on GPUs).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .. import __version__
from ..config import ExperimentConfig, resolve_path
from ..models import backbone as backbone_module
from ..progress import progress_bar
from . import datasets as datasets_module
from . import decode as decode_module

__all__ = [
    "FEATURE_CACHE_VERSION",
    "CachedFeatures",
    "FeatureDataset",
    "feature_cache_key",
    "load_or_compute_features",
    "compute_features",
    "weights_fingerprint",
]

FEATURE_CACHE_VERSION = 1


@dataclass
class CachedFeatures:
    """Backbone features of one split: ``feats`` (N, S, F) or (N, S, C, h, w), ``faces`` (N, 3, 64, 64)."""

    feats: torch.Tensor
    faces: torch.Tensor
    key: str
    path: Path | None
    computed: bool  # False when read from the cache
    seconds: float  # time spent computing or loading


class FeatureDataset(Dataset):
    """Samples of a split with cached backbone features.

    Without ``base``: items are ``{"feats", "face", "index"}`` straight from memory (no image decoding;
    enough for SSuperVAE/SSuperGAN). With ``base`` (the PanelSequenceDataset the features came from):
    ``base[i]`` plus ``"feats"``, for the objectives that paste faces back into panels.
    """

    def __init__(self, cached: CachedFeatures, base: Dataset | None = None):
        self.cached = cached
        self.base = base

    def __len__(self) -> int:
        return int(self.cached.feats.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.base is None:
            return {"feats": self.cached.feats[i], "face": self.cached.faces[i], "index": i}
        item = dict(self.base[i])
        item["feats"] = self.cached.feats[i]
        return item


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a module's parameters and buffers."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _source_hash(*modules: Any) -> str:
    h = hashlib.sha256()
    for mod in modules:
        try:
            h.update(inspect.getsource(mod).encode())
        except (OSError, TypeError):
            h.update(repr(mod).encode())
    return h.hexdigest()[:16]


def _panel_stamps(root: Path, samples: list) -> bytes:
    """(size, mtime_ns) of every distinct panel the samples read, in first-use order (one ``stat`` each)."""
    seen: dict[str, tuple[int, int]] = {}
    root_str = str(root)
    for s in samples:
        for p in getattr(s, "panels", ()):
            if p not in seen:
                try:
                    st = os.stat(os.path.join(root_str, p))
                    seen[p] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    seen[p] = (-1, -1)  # missing: reading it fails later, naming the file
    return repr(list(seen.items())).encode()


def _samples_hash(dataset: Dataset, cfg: ExperimentConfig) -> str:
    """Hash of the split's samples: the dataset's sample list when it exposes one, the stamps of the panels they
    read, plus the files."""
    h = hashlib.sha256()
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        h.update(repr(list(samples)).encode())
        h.update(_panel_stamps(resolve_path(cfg.data.panel_path), list(samples)))
    for path in (resolve_path(cfg.data.sequence_path), resolve_path(cfg.data.sequence_path).parent / "split.json"):
        if path.is_file():
            h.update(path.read_bytes())
    h.update(str(resolve_path(cfg.data.panel_path)).encode())
    h.update(str(len(dataset)).encode())  # type: ignore[arg-type]
    return h.hexdigest()


def feature_cache_key(model: torch.nn.Module, dataset: Dataset, cfg: ExperimentConfig, split: str) -> tuple[str, dict]:
    """``(key, description)``: the cache key and the human-readable facts it was computed from."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError("feature caching needs a model with a backbone (model.backbone is None)")
    desc = {
        "cache_version": FEATURE_CACHE_VERSION,
        "library_version": __version__,
        "code": _source_hash(backbone_module, datasets_module, decode_module, compute_features),
        "backbone": cfg.model.backbone,
        "spatial_features": cfg.model.spatial_features,
        # the frozen feature extractor only (``net``, or its frozen layers under model.train_top_stages): the
        # layers after it are trained, and must not make every run (and every evaluation of a trained run)
        # recompute the same frozen features
        "weights_sha256": weights_fingerprint(backbone.frozen_part() if hasattr(backbone, "frozen_part") else backbone),
        "panel_size": list(cfg.data.panel_size),
        "face_size": cfg.data.face_size,
        "mask_val": cfg.data.mask_val,
        "panel_order": cfg.data.panel_order,
        "augment": [cfg.data.augment, cfg.data.seed] if cfg.data.augment else False,  # jittered panels differ
        "split": split,
        "samples_sha256": _samples_hash(dataset, cfg),
    }
    if cfg.model.train_top_stages:  # the cache holds the frozen layers' maps, the top trains
        desc["train_top_stages"] = cfg.model.train_top_stages
    if cfg.train.feature_dtype != "float32":  # float32 adds nothing: its features are those of the code before the option
        desc["feature_dtype"] = cfg.train.feature_dtype
    key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]
    return key, desc


def _cache_dirs(cfg: ExperimentConfig) -> list[Path]:
    return [
        resolve_path(cfg.data.sequence_path).parent / "feature_cache",
        resolve_path(cfg.train.out_dir) / "feature_cache",
    ]


class _PanelJobs(Dataset):
    """Single panels of a :class:`PanelSequenceDataset`: ``("ctx", index, j)`` a context panel,
    ``("masked", index)`` a masked panel with its face."""

    def __init__(self, base: Dataset, jobs: list[tuple]):
        self.base, self.jobs = base, jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k: int) -> dict[str, Any]:
        job = self.jobs[k]
        if job[0] == "ctx":
            return {"panel": self.base.context_panel(job[1], job[2])}
        panel, face = self.base.masked_panel(job[1])
        return {"panel": panel, "face": face}


def _shares_panels(dataset: Dataset) -> bool:
    """Whether features can be computed per distinct panel: a panel-sequence dataset without augmentation
    (jittered panels differ per sample)."""
    return (hasattr(dataset, "context_panel") and hasattr(dataset, "masked_panel")
            and hasattr(dataset, "samples") and not getattr(dataset, "augment", True))


def _autocast(device, dtype: str):
    """The autocast context of the cache computation: none for float32, bf16 autocast otherwise."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype != "bfloat16":
        raise ValueError(f"feature dtype: expected float32 or bfloat16, got {dtype!r}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


@torch.no_grad()
def _compute_shared(model, dataset, device, batch_size: int, num_workers: int, progress: bool, dtype: str):
    """``compute_features`` computing each distinct context panel once.

    Consecutive windows of a series share their context panels (the window ending at panel 5 reads 3 and 4,
    the one ending at 6 reads 4 and 5), so there are about as many distinct context panels as samples, not
    twice as many: this runs the backbone on about 2 panels per sample instead of 3. Masked panels are
    per sample (each has its own face box). The backbone sees panels one by one, so each panel's features
    are those of the per-sample pass up to float rounding (batch composition)."""
    samples = dataset.samples
    n = len(samples)
    S = len(samples[0].panels)  # the caller checked n > 0
    slot: dict[tuple, int] = {}  # (panel, crop) -> distinct context panel
    where = torch.empty(n, S - 1, dtype=torch.long)
    jobs: list[tuple] = []
    for i, smp in enumerate(samples):
        for j in range(S - 1):
            key = (smp.panels[j], tuple(float(v) for v in smp.crops[j]))
            if key not in slot:
                slot[key] = len(jobs)
                jobs.append(("ctx", i, j))
            where[i, j] = slot[key]
    jobs += [("masked", i) for i in range(n)]

    loader = DataLoader(_PanelJobs(dataset, jobs), batch_size=batch_size * S, shuffle=False,
                        num_workers=num_workers, generator=torch.Generator(), collate_fn=_collate_jobs)
    out, faces = [], []
    for batch in progress_bar(loader, desc="caching backbone features", disable=not progress, leave=False, unit="batch"):
        with _autocast(device, dtype):
            out.append(model.backbone_features(batch["panel"].to(device)[:, None])[:, 0].float().cpu())
        if batch["face"]:
            faces.append(torch.stack(batch["face"]).float())
    per_panel = torch.cat(out)  # (distinct context panels + n, F) or (..., C, h, w)
    n_ctx = len(jobs) - n
    ctx = per_panel[:n_ctx][where]  # (n, S - 1, ...)
    masked = per_panel[n_ctx:, None]  # (n, 1, ...)
    first = getattr(dataset, "panel_order", "chronological") == "masked_first"
    feats = torch.cat([masked, ctx] if first else [ctx, masked], 1)
    return feats, torch.cat(faces) if faces else torch.empty(0)


def _collate_jobs(items: list[dict]) -> dict[str, Any]:
    return {"panel": torch.stack([it["panel"] for it in items]), "face": [it["face"] for it in items if "face" in it]}


@torch.no_grad()
def compute_features(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    dtype: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model.backbone_features`` over ``dataset`` in eval mode; returns ``(feats, faces)`` on CPU, float32.
    ``dtype`` ``bfloat16`` runs the backbone under bf16 autocast (``train.feature_dtype``)."""
    was_training = model.training
    model.eval()
    if _shares_panels(dataset) and len(dataset):
        try:
            return _compute_shared(model, dataset, device, batch_size, num_workers, progress, dtype)
        finally:
            model.train(was_training)
    # own generator: creating the iterator must not draw from the global RNG (a cache hit and a cache
    # miss then leave the training run in the same RNG state)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, generator=torch.Generator())
    feats, faces = [], []
    try:
        for batch in progress_bar(loader, desc="caching backbone features", disable=not progress, leave=False,
                                  unit="batch"):
            panels = batch["panels"].to(device)  # (B, S, 3, H, W)
            with _autocast(device, dtype):
                feats.append(model.backbone_features(panels).float().cpu())  # (B, S, F) or (B, S, C, h, w)
            faces.append(batch["face"].float())  # (B, 3, 64, 64)
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(faces)


def load_or_compute_features(
    model: torch.nn.Module,
    dataset: Dataset,
    cfg: ExperimentConfig,
    split: str,
    device: torch.device | str = "cpu",
    progress: bool = True,
    write: bool = True,
    batch_size: int = 32,
) -> CachedFeatures:
    """Features of ``dataset`` from the cache, or computed and stored (only when ``write``).

    Under DDP rank 0 calls this with ``write=True`` first, the other ranks after a barrier (they then
    find the file). A cache file that does not load is recomputed and replaced.
    """
    start = time.perf_counter()
    key, desc = feature_cache_key(model, dataset, cfg, split)
    for folder in _cache_dirs(cfg):
        path = folder / f"{key}.pt"
        if path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                if data["feats"].shape[0] == len(dataset):  # type: ignore[arg-type]
                    return CachedFeatures(data["feats"], data["faces"], key, path, False, time.perf_counter() - start)
            except Exception:  # a truncated or foreign file: recompute below
                pass
    feats, faces = compute_features(
        model, dataset, device=device, batch_size=batch_size, num_workers=cfg.data.num_workers, progress=progress,
        dtype=cfg.train.feature_dtype,
    )
    saved_path = None
    if write:
        payload = {"feats": feats, "faces": faces, "meta": {k: json.dumps(v) for k, v in desc.items()}}
        for folder in _cache_dirs(cfg):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{key}.pt"
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                torch.save(payload, tmp)
                os.replace(tmp, path)
                saved_path = path
                break
            except OSError:
                continue
    return CachedFeatures(feats, faces, key, saved_path, True, time.perf_counter() - start)
