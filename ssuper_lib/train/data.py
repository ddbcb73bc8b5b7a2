"""The data of a training run: the train/validation datasets (on cached backbone features with a frozen
backbone), the resumable sampler and the loader, and the ``data.*`` overrides of a dataset root.

**Frozen backbone.** With ``model.freeze_backbone`` and ``train.cache_features`` the backbone features of
each split are computed once (:mod:`ssuper_lib.data.features`) and steps call ``model.encode_features``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import ExperimentConfig, resolve_path
from ..data.datasets import PanelSequenceDataset
from ..data.features import FeatureDataset, load_or_compute_features
from ..preprocess.exemplars import ExemplarDataset, load_or_build_exemplars
from .engine import _Dist

__all__ = ["ResumableSampler", "data_overrides"]


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (permutation = f(seed, epoch), sharded by rank) that can skip the first
    ``skip`` samples of this rank's shard: a resumed run continues mid-epoch exactly where it stopped."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def _build_datasets(cfg, model, device, d: _Dist, progress: bool):
    """Train/test datasets; with a frozen backbone and caching, wrapped around cached features."""
    variant = cfg.model.variant
    needs_panels = variant in ("ssuperglobalgan", "ssupervae_ca")
    gt_panel = variant == "ssupervae_ca"
    train_ds = PanelSequenceDataset.from_config(cfg.data, split="train", return_gt_panel=gt_panel)
    # the test split is never read while training: sample sheets, validation errors and early stopping use "val"
    val_ds = PanelSequenceDataset.from_config(cfg.data, split="val", return_gt_panel=gt_panel)
    if len(train_ds) == 0:
        raise ValueError(
            f"the training split is empty ({resolve_path(cfg.data.sequence_path)}); run the preprocessing "
            "(python -m ssuper_lib.preprocess) or check data.sequence_path and the split"
        )
    train_seq = train_ds
    use_features = bool(cfg.model.freeze_backbone and cfg.train.cache_features)
    info: dict[str, Any] = {"use_features": use_features}
    if use_features:
        # rank 0 computes and writes the cache; the others read it after the barrier
        cached = None
        if d.main:
            cached = load_or_compute_features(model, train_ds, cfg, "train", device, progress=progress, write=True)
        if d.active:
            dist.barrier()
        if not d.main:
            cached = load_or_compute_features(model, train_ds, cfg, "train", device, progress=False, write=False)
        info.update(feature_cache=str(cached.path), feature_seconds=round(cached.seconds, 2), feature_computed=cached.computed)
        train_ds = FeatureDataset(cached, base=train_ds if needs_panels else None)
        if len(val_ds) and cfg.train.val_every > 0:
            vc = load_or_compute_features(model, val_ds, cfg, "val", device, progress=progress and d.main, write=d.main)
            val_ds = FeatureDataset(vc, base=val_ds)
    if variant == "ssuper_exemplar":  # context exemplars: candidates and queries, cached beside the sequences
        mc = cfg.model
        val_seq = val_ds.base if isinstance(val_ds, FeatureDataset) else val_ds
        train_ds, val_ds = (
            ExemplarDataset(ds, load_or_build_exemplars(cfg.data, seq.samples, mc.exemplar_k, mc.exemplar_ctx_size,
                                                        progress=progress, write=d.main))
            for ds, seq in ((train_ds, train_seq), (val_ds, val_seq))
        )
    return train_ds, val_ds, info


def _train_loader(cfg: ExperimentConfig, train_ds: Dataset, use_features: bool, d: _Dist, device: torch.device):
    """(sampler, loader, steps_per_epoch, total_steps) of the training split: this rank's shard, whole
    batches where the shard holds one."""
    tc = cfg.train
    sampler = ResumableSampler(train_ds, d.world_size, d.rank, seed=cfg.seed, shuffle=True)
    drop_last = sampler.num_samples >= tc.batch_size
    steps_per_epoch = sampler.num_samples // tc.batch_size if drop_last else math.ceil(sampler.num_samples / tc.batch_size)
    total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * steps_per_epoch
    workers = 0 if (use_features and cfg.model.variant in ("ssupervae", "ssupergan", "ssuper_exemplar")) else tc.num_workers
    loader = DataLoader(
        train_ds, batch_size=tc.batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
        persistent_workers=workers > 0 and not cfg.data.augment,  # workers must see set_epoch
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed + d.rank),  # worker seeds; never the global RNG
    )
    return sampler, loader, steps_per_epoch, total_steps


def data_overrides(root: str | Path) -> list[str]:
    """Dotted overrides that point every ``data.*`` path at a dataset root in the synthetic/COMICS layout."""
    root = resolve_path(root)
    gt = root / "ground_truth.csv"
    return [
        f"data.panel_path={root / 'panels'}",
        f"data.annot_path={root / 'annotations'}",
        f"data.sequence_path={root / 'sequences.json'}",
        f"data.faces_path={root / 'faces'}",
        f"data.ground_truth_path={gt if gt.is_file() else 'null'}",
    ]
