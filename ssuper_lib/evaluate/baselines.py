"""Trivial baselines every model is judged against (docs/design.md 7b).

Each baseline is a face source like a trained model: given the evaluated samples' context exemplars
(:mod:`ssuper_lib.preprocess.exemplars`) it returns one 64x64 face per sample, and the evaluation scores it
with the same code, on the same samples, with the same intervals.

* ``mean_face``: the mean training target face (no context at all). A model below it on PSNR has learned
  less than an average.
* ``random_context_face``: a context face (any detected face of p1 or p2 passing the filters), chosen at
  random (seeded).
* ``nearest_context_face``: the context face whose *surroundings* (the region around and below the face:
  hair, neck, clothes; the face itself greyed out) are nearest, in mean squared pixel distance on 12x12
  thumbnails, to the surroundings of the masked face. A fixed, untrained similarity.
* ``oracle_context_face`` (synthetic data only): a context face of the right character by ground truth.
  Labelled "oracle" and never ranked as a model: it shows what copying the right exemplar is worth.

Samples without any context face get the mean face from every context baseline (and the oracle also
when no context face shows the target character).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics as M
from .generate import default_max_samples, eval_context, save_faces
from .scoring import FaceScores, score_faces
from ..config import ExperimentConfig, resolve_path
from ..data.datasets import PanelSequenceDataset
from ..data.pixels import to_uint8, to_unit
from ..preprocess.exemplars import ExemplarSet, candidate_characters, load_or_build_exemplars
from ..runs import eval_cache_dir
from ..storage import atomic_torch_save

__all__ = ["BASELINES", "mean_training_face", "baseline_faces", "nearest_context_index", "random_context_index",
           "oracle_context_index", "THUMB", "evaluate_baselines", "training_faces"]

THUMB = 12  # thumbnail side of the nearest-surroundings similarity

BASELINES = {
    "mean_face": "Baseline: mean training face",
    "random_context_face": "Baseline: random context face",
    "nearest_context_face": "Baseline: nearest context face",
    "oracle_context_face": "Oracle: context face of the right character",
}


def mean_training_face(faces: torch.Tensor) -> torch.Tensor:
    """Mean of the training target faces (N, 3, F, F) in [-1, 1] (or uint8) -> (3, F, F) float in [-1, 1]."""
    x = to_unit(faces) if faces.dtype == torch.uint8 else faces.float()
    return x.mean(0)


def random_context_index(ex: ExemplarSet, seed: int = 0) -> np.ndarray:
    """(N,) index of a random valid candidate per sample (-1: none)."""
    rng = np.random.default_rng([seed, 2718])
    valid = ex.cand_valid.numpy()
    out = np.full(len(valid), -1, dtype=np.int64)
    for i, v in enumerate(valid):
        idx = np.flatnonzero(v)
        if len(idx):
            out[i] = int(idx[rng.integers(len(idx))])
    return out


def _thumb(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, s, s) -> float thumbnails (..., 3 * THUMB * THUMB) in [0, 1]."""
    lead = x.shape[:-3]
    t = F.adaptive_avg_pool2d(x.reshape(-1, *x.shape[-3:]).float() / 255.0, THUMB)
    return t.reshape(*lead, -1)


def nearest_context_index(ex: ExemplarSet) -> np.ndarray:
    """(N,) index of the candidate whose surroundings thumbnail is nearest to the query's (-1: none)."""
    q = _thumb(ex.query_ctx)  # (N, D)
    c = _thumb(ex.cand_ctx)  # (N, C, D)
    d = ((c - q[:, None]) ** 2).mean(-1)  # (N, C)
    d[~ex.cand_valid] = float("inf")
    idx = d.argmin(1).numpy()
    idx[~ex.cand_valid.any(1).numpy()] = -1
    return idx


def oracle_context_index(cand_chars: np.ndarray, target_chars: Sequence[str | None]) -> np.ndarray:
    """(N,) index of the first candidate showing the target character by ground truth (-1: none)."""
    out = np.full(len(target_chars), -1, dtype=np.int64)
    for i, t in enumerate(target_chars):
        if t is None:
            continue
        hits = [c for c, ch in enumerate(cand_chars[i]) if ch == t]
        if hits:
            out[i] = hits[0]
    return out


def faces_from_index(ex: ExemplarSet, idx: np.ndarray, fallback: torch.Tensor) -> torch.Tensor:
    """(N, 3, F, F) float faces: candidate ``idx[i]`` of sample i, or ``fallback`` (3, F, F) where idx is -1."""
    N = len(idx)
    out = fallback[None].expand(N, *fallback.shape).clone()
    have = np.flatnonzero(idx >= 0)
    if len(have):
        sel = ex.cand_face[torch.as_tensor(have), torch.as_tensor(idx[have])]  # (n, 3, F, F) uint8
        out[torch.as_tensor(have)] = to_unit(sel)
    return out


def baseline_faces(name: str, ex: ExemplarSet, mean_face: torch.Tensor, seed: int = 0,
                   cand_chars: np.ndarray | None = None, target_chars: Sequence[str | None] | None = None) -> torch.Tensor:
    """Faces (N, 3, F, F) in [-1, 1] of baseline ``name`` for the samples of ``ex``."""
    N = len(ex)
    if name == "mean_face":
        return mean_face[None].expand(N, *mean_face.shape).clone()
    if name == "random_context_face":
        return faces_from_index(ex, random_context_index(ex, seed), mean_face)
    if name == "nearest_context_face":
        return faces_from_index(ex, nearest_context_index(ex), mean_face)
    if name == "oracle_context_face":
        if cand_chars is None or target_chars is None:
            raise ValueError("the oracle baseline needs ground-truth characters (synthetic data only)")
        return faces_from_index(ex, oracle_context_index(cand_chars, target_chars), mean_face)
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")


# --------------------------------------------------------------------------------------------------
# Rows of the baselines
# --------------------------------------------------------------------------------------------------


def evaluate_baselines(cfg: ExperimentConfig, split: str = "test", seed: int = 0, *, max_samples: int | None = None,
                       names: Sequence[str] | None = None, k_per_panel: int = 3, n_boot: int | None = None,
                       identity: bool = True, identity_epochs: int = 30, cache_dir: str | Path | None = None,
                       context_gain: bool = True) -> list[dict[str, Any]]:
    """Rows of the trivial baselines of this module on the same samples and with the same
    scoring as :func:`evaluate_run` (same seed -> same subset, same context partners, same identity
    classifiers). The oracle needs synthetic ground truth and is skipped without it."""
    t0 = time.perf_counter()
    ecfg = cfg.eval
    n_boot = ecfg.n_bootstrap if n_boot is None else n_boot
    max_samples = default_max_samples(ecfg, max_samples)
    cache_dir = eval_cache_dir(cfg, cache_dir)
    ctx = eval_context(cfg, split, max_samples, seed, context_gain, return_gt_panel=False)
    ds, indices, series, partners = ctx["ds"], ctx["indices"], ctx["series"], ctx["partners"]
    ex_all = load_or_build_exemplars(cfg.data, ds.samples, k_per_panel, cfg.model.exemplar_ctx_size)
    ex = ex_all.subset(indices)
    true = torch.stack([ds[int(i)]["face"] for i in indices])  # (n, 3, F, F) in [-1, 1]
    true_u8 = to_uint8(true)
    train_faces = training_faces(PanelSequenceDataset.from_config(cfg.data, split="train", augment=False), cache_dir)
    mean_face = mean_training_face(train_faces)
    cand_chars = None
    if ctx["have_gt"]:
        cand_chars = candidate_characters(ex, [ds.samples[i] for i in indices], resolve_path(cfg.data.ground_truth_path))
    names = list(names) if names is not None else [k for k in BASELINES if ctx["have_gt"] or k != "oracle_context_face"]
    rows = []
    for name in names:
        kw = dict(seed=seed, cand_chars=cand_chars, target_chars=ctx["characters"])
        gen = baseline_faces(name, ex, mean_face, **kw)
        shuf = None
        if partners is not None and name != "mean_face":
            # the same rule applied to the context faces of a sample of another series (query stays)
            ex_sh = ex.subset(partners)
            ex_sh.query_ctx, ex_sh.query_geo = ex.query_ctx, ex.query_geo
            shuf = baseline_faces(name, ex_sh, mean_face, **{**kw, "cand_chars": None if cand_chars is None else cand_chars[partners]})
        fields, _ = score_faces(_baseline_scores(gen, shuf, true, true_u8), ctx, n_boot=n_boot, ci=ecfg.ci, seed=seed,
                                identity=identity, identity_epochs=identity_epochs, cache_dir=cache_dir)
        fpath = save_faces(cache_dir / f"baseline_{name}_{ex.key}_{split}_seed{seed}.pt", to_uint8(gen), true_u8, series)
        rows.append({"run": name, "run_dir": "", "model": BASELINES[name], "faces_path": str(fpath),
                     "kind": "oracle" if name.startswith("oracle") else "baseline", "variant": name,
                     "eval_seed": seed, "split": split, "n": len(indices), **fields,
                     "ci": ecfg.ci, "n_boot": n_boot, "eval_seconds": round(time.perf_counter() - t0, 1)})
    return rows


def _baseline_scores(gen: torch.Tensor, shuf: torch.Tensor | None, true: torch.Tensor,
                     true_u8: torch.Tensor) -> FaceScores:
    """A baseline's faces from true context and (``shuf``, or None) from shuffled context, scored against ``true``."""
    if shuf is None:
        return FaceScores(true_u8, to_uint8(gen), M.psnr_per_image(gen, true), M.ssim_per_image(gen, true))
    return FaceScores(true_u8, to_uint8(gen), M.psnr_per_image(gen, true), M.ssim_per_image(gen, true),
                      to_uint8(shuf), M.psnr_per_image(shuf, true), M.ssim_per_image(shuf, true))


def training_faces(train_ds, cache_dir: Path) -> torch.Tensor:
    """uint8 target faces of the training split (cached by the split's sample list), for the mean face."""
    h = hashlib.sha256(json.dumps([s.to_original() for s in train_ds.samples]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"train_faces_{h}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    # only the face: the last panel is decoded, not the context panels (``train_ds[i]["face"]`` without augmentation)
    faces = to_uint8(torch.stack([train_ds.masked_panel(i)[1] for i in range(len(train_ds))]))
    atomic_torch_save(faces, path)
    return faces
