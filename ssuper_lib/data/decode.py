"""JPEG decoding of panels into uint8 tensors: libjpeg-turbo through the kit's C helpers, simplejpeg or torchvision.

The panel loader (:class:`~ssuper_lib.data.datasets.PanelSequenceDataset`) decodes a JPEG with
:func:`decode_jpeg_panel`: only the rectangle its crop needs where the kit's C helpers are built
(``_native.c``: ``decode_roi``), else the whole panel (simplejpeg, else torchvision); the same pixels every
way. The C helpers also hold the uint8 -> float conversion (``hwc_to_unit_chw``, see :func:`_unit_converter`).
"""

from __future__ import annotations

import functools
import math
import threading
from pathlib import Path
from typing import Sequence

import torch

try:  # built at install where a C compiler and libjpeg-turbo's headers are there
    from . import _native as _native_module
except ImportError:
    _native_module = None

__all__ = ["decode_jpeg_panel"]


@functools.lru_cache(maxsize=1)
def _torchvision_jpeg():
    """torchvision's JPEG decoder (libjpeg-turbo into a tensor), or None where this torchvision has none.

    torchvision 0.29 deprecates its image I/O in favour of TorchCodec and warns on every call; the warning is
    silenced here (message-specific), and a torchvision without the decoder makes the dataset use PIL.
    """
    import warnings

    try:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
    except ImportError:
        return None
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
    return decode_jpeg, read_file, ImageReadMode.RGB


@functools.lru_cache(maxsize=1)
def _simplejpeg():
    """simplejpeg's ``decode_jpeg`` (libjpeg-turbo, the same ISLOW DCT and fancy upsampling as torchvision's,
    so the same pixels), or None where it is not installed. It skips torchvision's per-call overhead: ~9% less
    decoding time per panel here."""
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg.decode_jpeg


def _native():
    """The loader's C helpers (``_native.c``: ``decode_roi``, ``hwc_to_unit_chw``; built at install where a C
    compiler and libjpeg-turbo's headers are there), or None: then the pure-Python paths (same results)."""
    return _native_module


def _roi_decoder():
    """``decode_roi`` of :func:`_native`, or None: then whole panels are decoded (the same pixels)."""
    native = _native()
    return None if native is None else native.decode_roi


def _unit_converter():
    """``hwc_to_unit_chw`` of :func:`_native`, or None: then torch converts (the same values)."""
    native = _native()
    return None if native is None else native.hwc_to_unit_chw


_scratch = threading.local()  # per thread: the decode buffer decode_roi reuses


def _decode_jpeg_rect(data: bytes, box: Sequence[float]) -> tuple[torch.Tensor, int, int, int, int] | None:
    """The part of a JPEG that ``box`` = (x1, y1, x2, y2) (image pixels, may reach outside) needs, decoded by
    ``decode_roi``: (uint8 (3, h, w) RGB tensor, HWC in memory, x0, y0, W, H) with (x0, y0) its top-left
    pixel in the image and (W, H) the image size; every pixel of the box inside the image is there, exactly as
    a whole-image decode gives it, and the part's edges lie on the image's edges wherever the box crosses
    them. None without the decoder or when libjpeg-turbo refuses the data (CMYK, damaged, truncated).

    The tensor is a view of this thread's decode buffer, which the next call overwrites: copy out of it
    before decoding again (``_load_panel`` does). A fresh buffer per panel cost ~200 page faults per sample
    and ate most of the gain. (Decoding to RGBX, the layout torch's uint8 resize runs fastest in, made whole
    samples ~4% slower.)"""
    decode = _roi_decoder()
    if decode is None:
        return None
    # one pixel beyond the rounded box on each side: the decoder's first column (fancy upsampling without a
    # left neighbour) is never read
    x1, y1 = math.floor(box[0]) - 1, math.floor(box[1]) - 1
    x2, y2 = math.ceil(box[2]) + 1, math.ceil(box[3]) + 1
    x1, y1, x2, y2 = (min(max(v, -1), 1 << 30) for v in (x1, y1, x2, y2))  # C ints; the decoder clamps to the image
    try:
        buf, x0, y0, w, h, W, H = decode(data, x1, y1, x2, y2, getattr(_scratch, "buf", None))
    except ValueError:
        return None
    _scratch.buf = buf
    img = torch.frombuffer(buf, dtype=torch.uint8, count=h * w * 3).view(h, w, 3).permute(2, 0, 1)
    return img, x0, y0, W, H


def _decode_jpeg_file(path: Path) -> torch.Tensor:
    """A JPEG file -> uint8 (3, H, W) RGB tensor (HWC in memory): simplejpeg, else torchvision. (Decoding to
    RGBX, the layout torch's uint8 resize works in, made resizes ~15% faster but whole samples ~9% slower.)"""
    decode = _simplejpeg()
    if decode is not None:
        with open(path, "rb") as f:
            data = f.read()
        try:
            return torch.from_numpy(decode(data, colorspace="RGB")).permute(2, 0, 1)
        except ValueError:  # what simplejpeg refuses (CMYK, lossless, damaged data) goes to torchvision
            if _torchvision_jpeg() is None:
                raise
    decode_jpeg, read_file, rgb = _torchvision_jpeg()
    return decode_jpeg(read_file(str(path)), mode=rgb)



def decode_jpeg_panel(path: Path, need: float, box: Sequence[float]
                      ) -> tuple[torch.Tensor, float, float, float, float, int, int] | None:
    """The libjpeg-turbo paths of ``PanelSequenceDataset._decode`` (same tuple: uint8 (3, h, w) tensor, x0,
    y0, sx, sy, dw, dh), or None where PIL decodes: not a JPEG, reduced by 4x or more (``need`` <= 0.25), or
    no decoder installed. Only the rectangle ``box`` needs where ``decode_roi`` is built and takes the data,
    else the whole panel."""
    jpeg_decoder = _simplejpeg() or _torchvision_jpeg()
    if need > 0.25 and path.suffix.lower() in (".jpg", ".jpeg") and jpeg_decoder is not None:
        if _roi_decoder() is not None:
            with open(path, "rb") as f:
                part = _decode_jpeg_rect(f.read(), box)
            if part is not None:
                img, x0, y0, W, H = part
                return img, x0, y0, 1.0, 1.0, W, H
        img = _decode_jpeg_file(path)  # (3, H, W), HWC in memory
        return img, 0, 0, 1.0, 1.0, img.shape[-1], img.shape[-2]
    return None
