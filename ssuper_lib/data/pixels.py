"""Pixel conventions of the kit, in one place.

Images travel as float tensors in [-1, 1] (the generator's tanh range, the original's convention) and are
stored, compared and scored as uint8 in [0, 255]:

* :func:`to_unit`: uint8 -> float32 in [-1, 1], ``x / 127.5 - 1`` computed in float32;
* :func:`to_unit255`: [-1, 1] -> float64 in [0, 255] after clamping, without rounding (the original's
  ``fit_range``; PSNR and SSIM of the original protocol work on it);
* :func:`to_uint8`: [-1, 1] -> uint8 (clamp, scale, round half to even); uint8 passes through.
"""

from __future__ import annotations

import torch

__all__ = ["to_unit", "to_unit255", "to_uint8"]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 255]) images -> float32 in [-1, 1]; any layout."""
    return x.float().div(127.5).sub(1.0)


def to_unit255(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> float64 in [0, 255] after clamping (the original's ``fit_range``); no rounding."""
    return (images.detach().to(torch.float64).clamp(-1.0, 1.0) + 1.0) * 127.5


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images (..., 3, H, W) -> uint8 with the same layout (clamp, scale, round). uint8 passes."""
    if images.dtype == torch.uint8:
        return images
    return to_unit255(images).round().to(torch.uint8)
