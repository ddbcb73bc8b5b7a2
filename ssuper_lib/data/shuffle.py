"""Context shuffling: the same sample with its context panels taken from a sample of another series.

This is the control behind the kit's context gain: a model scored with its true context panels and with
shuffled ones (the masked panel always stays its own) shows what the context is worth. Evaluation, the
validation pass of training and the feature probe all pair samples with :func:`derangement_across_groups`
and build the shuffled input with :func:`swap_context`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["derangement_across_groups", "swap_context"]


def derangement_across_groups(groups: Sequence[str], seed: int = 0) -> np.ndarray:
    """For each item i a partner j with ``groups[j] != groups[i]`` (seeded, uniform over the other groups'
    items). Raises ValueError when there are fewer than two groups."""
    groups = np.asarray([str(g) for g in groups])
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ValueError(f"context shuffling needs samples of at least two series, got {list(uniq)}")
    rng = np.random.default_rng([seed, 7919])
    partner = np.empty(len(groups), dtype=np.int64)
    for g in uniq:
        mine = np.flatnonzero(groups == g)
        others = np.flatnonzero(groups != g)
        partner[mine] = others[rng.integers(0, len(others), size=len(mine))]
    return partner


def swap_context(own: torch.Tensor, other: torch.Tensor, masked_pos: int, dim: int = 0) -> torch.Tensor:
    """The shuffled-context input: a copy of ``other`` (panels or per-panel features of another sample, the
    panel axis at ``dim``) holding ``own``'s masked panel."""
    out = other.clone()
    out.select(dim, masked_pos).copy_(own.select(dim, masked_pos))
    return out
