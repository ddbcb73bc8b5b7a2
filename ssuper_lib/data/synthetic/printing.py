"""How a Golden Age page was printed: four-colour halftone, misregistered plates, yellowed paper, greyscale.

:func:`print_page` turns a drawn panel (flat colours) into a printed one:

* the cyan, magenta and yellow inks (``1 - R``, ``1 - G``, ``1 - B``) are each printed as a screen of dots
  whose size follows the ink density (an amplitude-modulated halftone at the classic screen angles 15, 75
  and 0 degrees), so flat skin and clothes become dot patterns;
* the cyan and magenta plates are shifted by 1-3 px against the black line art (misregistration);
* the paper is not white but a yellowed tone drawn per page;
* greyscale reprints print one black screen at 45 degrees from the luminance.

The black line art (pixels dark in every channel) is printed solid on top. Page settings
(:func:`page_settings`) are drawn once per page, from the realism stream.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["page_settings", "print_page", "to_greyscale"]


def page_settings(rr: np.random.Generator) -> dict:
    """Print settings of one page: dot spacing, plate offsets, paper tone and JPEG quality (60-90)."""
    offsets = []
    for _ in range(2):  # cyan and magenta plates; yellow stays with the black
        mag = int(rr.integers(1, 4))
        ang = float(rr.uniform(0, 2 * np.pi))
        offsets.append((int(round(mag * np.cos(ang))), int(round(mag * np.sin(ang)))))
    base = np.array([244.0, 232.0, 200.0]) + rr.uniform(-10, 8, 3)
    return {"spacing": float(rr.uniform(3.2, 4.6)), "offsets": offsets,
            "paper": tuple(int(v) for v in np.clip(base, 0, 255)), "quality": int(rr.integers(60, 91))}


def _dot_area(r: np.ndarray) -> np.ndarray:
    """Share of a unit cell inside a disc of radius ``r`` about its centre (r in [0, sqrt(2) / 2])."""
    r2 = r * r
    inner = np.float32(np.pi) * r2
    big = r > 0.5
    if big.any():
        rb = r[big]
        corner = rb * rb * np.arccos(np.float32(0.5) / rb) - np.float32(0.5) * np.sqrt(rb * rb - np.float32(0.25))
        inner[big] = np.float32(np.pi) * rb * rb - 4.0 * corner
    return inner


def _screen(h: int, w: int, spacing: float, angle_deg: float) -> np.ndarray:
    """(h, w) halftone thresholds in [0, 1] of a screen with dot ``spacing`` px at ``angle_deg``: the share of
    the cell closer to its centre than the pixel, so that an ink density d prints a round dot covering d."""
    t = np.deg2rad(angle_deg)
    c, s = np.float32(np.cos(t) / spacing), np.float32(np.sin(t) / spacing)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    u = xx * c + yy * s
    v = yy * c - xx * s
    u -= np.floor(u) + np.float32(0.5)
    v -= np.floor(v) + np.float32(0.5)
    return _dot_area(np.sqrt(u * u + v * v))


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``a`` moved by (dx, dy) pixels, the uncovered border filled with 0 (no ink)."""
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def to_greyscale(img: Image.Image) -> Image.Image:
    """A greyscale reprint of ``img`` (still an RGB image)."""
    return img.convert("L").convert("RGB")


def print_page(img: Image.Image, page: dict, grey: bool = False) -> Image.Image:
    """``img`` as printed with ``page``'s settings (:func:`page_settings`); ``grey``: one black screen."""
    u8 = np.asarray(img)
    a = u8.astype(np.float32) / np.float32(255.0)
    h, w, _ = a.shape
    line_art = np.maximum(np.maximum(u8[..., 0], u8[..., 1]), u8[..., 2]) < 56  # the black plate, printed solid
    paper = np.array(page["paper"], dtype=np.float32) / 255.0
    s = page["spacing"]
    if grey:
        ink = 1.0 - a.mean(axis=2)
        dots = (ink > _screen(h, w, s, 45.0)).astype(np.float32)
        out = paper[None, None, :] * (1.0 - 0.92 * dots[..., None])
    else:
        out = np.empty_like(a)
        for c, angle in enumerate((15.0, 75.0, 0.0)):  # cyan (from R), magenta (from G), yellow (from B)
            ink = 1.0 - a[..., c]
            if c < 2:
                ink = _shift(ink, *page["offsets"][c])
            dots = (ink > _screen(h, w, s, angle)).astype(np.float32)
            out[..., c] = paper[c] * (1.0 - 0.9 * dots)
    out[line_art] = np.minimum(out[line_art], 0.1)
    return Image.fromarray(np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
