"""Comparing a checkpoint's state dict with a model's: the shared check behind every strict loader that
names the file and the first keys that do not fit (detector, Siamese model)."""

from __future__ import annotations

from typing import Mapping

import torch

__all__ = ["state_dict_mismatch"]


def state_dict_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, "key (file shape) vs (model shape)" for keys whose shapes differ)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return missing, unexpected, shapes
