"""The detector protocol: :class:`Detection` (boxes and scores of one image), :class:`Detector` and
:func:`open_rgb`, the image opener every adapter uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence, Union, runtime_checkable

import numpy as np

__all__ = ["ImageInput", "Detection", "Detector", "open_rgb"]

ImageInput = Union[str, os.PathLike, "PIL.Image.Image"]  # noqa: F821


@dataclass
class Detection:
    """Boxes found in one image: ``boxes`` (N, 4) float32 ``x1 y1 x2 y2`` in image pixels, ``scores`` (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"Detection: {len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detection":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@runtime_checkable
class Detector(Protocol):
    """Anything with ``detect(images) -> list[Detection]`` (one Detection per input image, same order).

    Inputs are PIL images or file paths. ``needs_pixels`` tells :func:`run_detector` whether the images
    must be decoded (False for detectors that only look up the file name).
    """

    needs_pixels: bool

    def detect(self, images: Sequence[ImageInput]) -> list[Detection]: ...


def open_rgb(image: ImageInput):
    """A PIL image in RGB from a path or a PIL image (converted when it is not RGB)."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
