"""Trivial baselines every model is judged against (DESIGN.md 7b).

Each baseline is a face source like a trained model: given the evaluated samples' context exemplars
(:mod:`ssuper_lib.exemplars`) it returns one 64x64 face per sample, and the evaluation scores it with the
same code, on the same samples, with the same intervals.

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

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess.exemplars import ExemplarSet

__all__ = ["BASELINES", "mean_training_face", "baseline_faces", "nearest_context_index", "random_context_index",
           "oracle_context_index", "THUMB"]

THUMB = 12  # thumbnail side of the nearest-surroundings similarity

BASELINES = {
    "mean_face": "Baseline: mean training face",
    "random_context_face": "Baseline: random context face",
    "nearest_context_face": "Baseline: nearest context face",
    "oracle_context_face": "Oracle: context face of the right character",
}


def mean_training_face(faces: torch.Tensor) -> torch.Tensor:
    """Mean of the training target faces (N, 3, F, F) in [-1, 1] (or uint8) -> (3, F, F) float in [-1, 1]."""
    x = faces.float()
    if faces.dtype == torch.uint8:
        x = x / 127.5 - 1.0
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
        out[torch.as_tensor(have)] = sel.float() / 127.5 - 1.0
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
