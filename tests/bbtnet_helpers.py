"""The recipe for the fixed random BBTNet weights and input image behind ``fixtures/bbtnet_reference.npz``.

The reference numbers were produced by running the original FaceDetector code (outside this repository) on a
model whose ``state_dict`` was filled by :func:`seeded_state_dict` and on :func:`reference_image`. Each tensor
depends only on its key name (a generator seeded with the key's CRC32), so the recipe does not depend on the
order in which a model lists its keys.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

REFERENCE_SIZE = (100, 76)  # (W, H): not multiples of 64, so every level's grid uses ceil
REFERENCE_CONF = 0.5  # confidence threshold of the filtered reference
REFERENCE_NMS = 0.2


def seeded_tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The tensor for ``key``: conv / linear weights ~ N(0, 1/fan_in); BN weight U(0.5, 1); biases and BN mean
    U(-0.1, 0.1); BN var U(0.5, 1.5); ``num_batches_tracked`` 0. Head weights are scaled by 2 so that the
    scores spread over (0, 1) rather than sit at 0.5."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=dtype)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf in ("running_mean", "bias"):
        return (torch.rand(shape, generator=g) - 0.5) * 0.2
    if len(shape) == 1:  # BN weight
        return 0.5 + 0.5 * torch.rand(shape, generator=g)
    fan_in = int(np.prod(shape[1:]))
    w = torch.randn(shape, generator=g) / fan_in**0.5
    return w * 2.0 if key.startswith("heads2.") else w


def seeded_state_dict(template: dict) -> dict:
    """A state dict with the template's keys, shapes and dtypes, filled by :func:`seeded_tensor`."""
    return {k: seeded_tensor(k, tuple(v.shape), v.dtype) for k, v in template.items()}


def reference_image() -> np.ndarray:
    """(H, W, 3) uint8: a smooth colour gradient with a bright disc and uniform noise, seed 0."""
    w, h = REFERENCE_SIZE
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, 128 + 60 * np.sin(xx / 7.0)], axis=-1)
    img[(xx - 60) ** 2 + (yy - 35) ** 2 < 18**2] = (240, 210, 180)
    img = img + rng.uniform(-20, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
