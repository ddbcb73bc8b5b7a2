"""Procedural synthetic comics in the COMICS / Golden Age on-disk layout (DESIGN.md 3).

The real COMICS panels (120 GB) and the detector weights are not part of the kit, so this module
writes a stand-in dataset with exactly the real layout (REFERENCE.md 3.1 and 4.4)::

    <root>/panels/<series>/<page>_<panel>.jpg   JPEG panels, sizes drawn around the real statistics
    <root>/annotations/<series>.txt             detector-style lines "<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf"
    <root>/ground_truth.csv                     true face boxes and character ids (evaluation only)
    <root>/manifest.json                        generator version, seed, counts, cast attributes

Why it is a useful testbed for the paper's claim: every series has a recurring cast of 2-4 characters
whose identity (skin tone, hair colour and style, eye colour, face shape, shirt colour, accessories) is
drawn in large, bold blocks in every panel, and a scene keeps the same characters over several
consecutive panels. The panels before a masked face therefore really do predict it, and the gain of
context over no context can be measured (DESIGN.md 7).

The annotation files simulate a real detector's raw output (before SSuperGAN's own filtering): every
true face detected with a jittered box and high confidence (a few missed), overlapping duplicates that
NMS at IoU 0.2 removes, low-confidence false positives that the 0.9 threshold removes, and a rare
high-confidence false positive. ``ground_truth.csv`` keeps the true boxes.

Determinism: each series is drawn from its own random stream seeded by ``(seed, series)``, so the
output is byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..comics import Box, natural_key, write_annotation_file

__all__ = ["GENERATOR_VERSION", "generate", "main", "CAST_PALETTES"]

GENERATOR_VERSION = "1.0"

# Real Golden Age statistics (REFERENCE.md 3.1): height mean 510 / median 475, width mean 508.5 / median 460.
# A side is a log-normal (median ``median``, log-sd ``sigma``) mixed with a share ``large`` of big splash
# panels (uniform 650-1000 px), redrawn outside PANEL_RANGE; the mixture matches the real means and medians
# (the real distribution has a long right tail that a plain log-normal cannot give without clamping piles).
PANEL_SIZE = {
    "height": {"median": 455.0, "sigma": 0.30, "large": 0.10},
    "width": {"median": 420.0, "sigma": 0.35, "large": 0.16},
}
PANEL_RANGE = (200, 1000)
DEFAULT_PANELS_PER_SERIES = (120, 150)  # drawn per series, inclusive range
JPEG_QUALITY = 85

OUTLINE = (22, 20, 24)

# Identity palettes: bold, well separated colours so that they survive downscaling to ~96 px.
CAST_PALETTES: dict[str, dict[str, tuple[int, int, int]]] = {
    "skin": {
        "porcelain": (255, 226, 204),
        "peach": (246, 196, 160),
        "tan": (222, 168, 112),
        "olive": (190, 150, 92),
        "brown": (150, 96, 58),
        "dark": (92, 58, 38),
        "grey": (190, 190, 196),
        "green": (150, 205, 120),
        "blue": (140, 175, 235),
    },
    "hair": {
        "black": (28, 26, 32),
        "brown": (112, 64, 28),
        "blonde": (250, 214, 70),
        "red": (205, 45, 25),
        "white": (240, 240, 240),
        "blue": (30, 80, 225),
        "green": (30, 165, 70),
        "purple": (135, 50, 190),
        "pink": (250, 110, 180),
        "orange": (250, 140, 15),
    },
    "eyes": {
        "blue": (40, 110, 230),
        "green": (40, 160, 60),
        "brown": (110, 60, 20),
        "black": (20, 20, 20),
        "red": (210, 30, 30),
        "violet": (140, 60, 200),
    },
    "shirt": {
        "red": (210, 40, 40),
        "blue": (40, 70, 200),
        "yellow": (245, 215, 40),
        "green": (40, 150, 60),
        "purple": (120, 50, 160),
        "orange": (240, 130, 30),
        "teal": (30, 160, 160),
        "black": (40, 40, 45),
        "white": (235, 235, 230),
        "pink": (240, 130, 180),
    },
    "accent": {
        "black": (30, 30, 30),
        "red": (200, 30, 40),
        "gold": (225, 180, 30),
        "silver": (170, 175, 185),
        "blue": (40, 60, 190),
        "green": (30, 120, 50),
    },
}
HAIR_STYLES = ("bald", "short", "spiky", "long", "bob", "mohawk", "ponytail", "afro", "bun")
FACE_SHAPES = {"round": 1.0, "oval": 1.2, "square": 1.05, "long": 1.38}  # height / width of the face box
ACCESSORIES = {"glasses": 0.3, "hat": 0.22, "earrings": 0.25, "beard": 0.18, "moustache": 0.15}
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "surprised", "shouting")

# Background palette (scene colours); deliberately muted next to the identity colours.
BACKGROUNDS = [
    (236, 226, 200), (200, 220, 235), (225, 205, 215), (210, 230, 200), (245, 235, 170),
    (190, 200, 215), (230, 200, 170), (215, 215, 215), (170, 200, 190), (240, 215, 200),
]


# --------------------------------------------------------------------------------------------------
# Cast
# --------------------------------------------------------------------------------------------------


def _make_cast(rng: np.random.Generator, series: int) -> list[dict[str, Any]]:
    """2-4 characters whose skin, hair colour, hair style and shirt differ within the series."""
    n = int(rng.integers(2, 5))
    pick = lambda names: [names[i] for i in rng.permutation(len(names))[:n]]  # noqa: E731 (distinct per series)
    skins = pick(list(CAST_PALETTES["skin"]))
    hairs = pick(list(CAST_PALETTES["hair"]))
    styles = pick(list(HAIR_STYLES))
    shirts = pick(list(CAST_PALETTES["shirt"]))
    cast = []
    for k in range(n):
        accessories = [a for a, p in ACCESSORIES.items() if rng.random() < p]
        if "beard" in accessories and "moustache" in accessories:
            accessories.remove("moustache")
        accent_names = list(CAST_PALETTES["accent"])
        cast.append(
            {
                "id": f"{series}_{k}",
                "skin": skins[k],
                "hair_colour": hairs[k],
                "hair_style": styles[k],
                "eye_colour": list(CAST_PALETTES["eyes"])[int(rng.integers(len(CAST_PALETTES["eyes"])))],
                "face_shape": list(FACE_SHAPES)[int(rng.integers(len(FACE_SHAPES)))],
                "shirt": shirts[k],
                "accessories": accessories,
                "accent": accent_names[int(rng.integers(len(accent_names)))],
            }
        )
    return cast


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, v * f))) for v in c)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _halftone_mask(spacing: int, radius: float) -> Image.Image:
    """An 'L' mask of dots on a staggered grid, large enough for any panel (cropped per use)."""
    size = PANEL_RANGE[1] + spacing
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    row = np.floor(yy / spacing)
    xs = xx + (row % 2) * spacing / 2  # staggered rows as in printed halftone
    dy = yy - (row + 0.5) * spacing
    dx = xs - (np.floor(xs / spacing) + 0.5) * spacing
    return Image.fromarray(((dx * dx + dy * dy) <= radius * radius).astype(np.uint8) * 255, mode="L")


def _squiggle_lines(d: ImageDraw.ImageDraw, rng: np.random.Generator, box, colour, width: int) -> None:
    """Fake lettering: rows of wiggly strokes broken into words, inside ``box``."""
    x1, y1, x2, y2 = box
    step = float(rng.uniform(9, 14))
    y = y1 + step * 0.6
    while y < y2 - 2:
        x = x1 + float(rng.uniform(0, 6))
        while x < x2 - 6:
            word = float(rng.uniform(10, 34))
            xe = min(x + word, x2)
            n = max(2, int((xe - x) / 3))
            xs = np.linspace(x, xe, n)
            ys = y + rng.uniform(-2.2, 2.2, n)
            d.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=width)
            x = xe + float(rng.uniform(5, 9))
        y += step


def _draw_background(img: Image.Image, d: ImageDraw.ImageDraw, rng: np.random.Generator, scene: dict) -> None:
    W, H = img.size
    d.rectangle([0, 0, W, H], fill=scene["bg"])
    if scene["ground"] is not None:
        gy = int(H * scene["horizon"])
        d.rectangle([0, gy, W, H], fill=scene["ground"])
        d.line([(0, gy), (W, gy)], fill=OUTLINE, width=2)
    if scene["halftone"]:
        spacing, radius = scene["halftone"]
        region = (0, 0, W, H) if scene["halftone_full"] else (0, 0, W, max(1, int(H * scene["horizon"])))
        mask = _halftone_mask(spacing, radius).crop(region)
        img.paste(_shade(scene["bg"], 0.82), region, mask)
    # A few props (buildings / furniture blocks) for clutter that is not a face.
    for _ in range(int(rng.integers(0, 4))):
        w = float(rng.uniform(0.08, 0.3)) * W
        h = float(rng.uniform(0.1, 0.45)) * H
        x = float(rng.uniform(-0.1, 1.0)) * W
        base = H * (scene["horizon"] if scene["ground"] is not None else float(rng.uniform(0.6, 1.0)))
        col = _shade(scene["prop"], float(rng.uniform(0.8, 1.15)))
        d.rectangle([x, base - h, x + w, base], fill=col, outline=OUTLINE, width=2)
        if rng.random() < 0.5:
            for wx in np.arange(x + 6, x + w - 10, 16):
                for wy in np.arange(base - h + 6, base - 12, 20):
                    d.rectangle([wx, wy, wx + 8, wy + 10], fill=(250, 240, 170), outline=OUTLINE)


def _draw_character(d: ImageDraw.ImageDraw, ch: dict, box, expression: str, yaw: float) -> None:
    """Body, hair, face, features and accessories of one character; ``box`` is the face (skin) box."""
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + yaw * fw * 0.06
    lw = max(1, int(round(fw / 30)))
    skin = CAST_PALETTES["skin"][ch["skin"]]
    hair = CAST_PALETTES["hair"][ch["hair_colour"]]
    shirt = CAST_PALETTES["shirt"][ch["shirt"]]
    accent = CAST_PALETTES["accent"][ch["accent"]]
    eyes = CAST_PALETTES["eyes"][ch["eye_colour"]]
    style = ch["hair_style"]
    acc = ch["accessories"]

    # Body: a big torso block in the character's shirt colour (a strong identity cue at low resolution).
    sh = y2 + 0.2 * fh
    torso = [
        (cx - 0.55 * fw, sh), (cx + 0.55 * fw, sh), (cx + 1.15 * fw, sh + 0.35 * fh),
        (cx + 1.3 * fw, sh + 2.8 * fh), (cx - 1.3 * fw, sh + 2.8 * fh), (cx - 1.15 * fw, sh + 0.35 * fh),
    ]
    d.polygon(torso, fill=shirt, outline=OUTLINE, width=lw)
    d.rectangle([cx - 0.18 * fw, y2 - 0.15 * fh, cx + 0.18 * fw, sh + 0.12 * fh], fill=skin, outline=OUTLINE, width=lw)
    d.polygon([(cx - 0.22 * fw, sh), (cx, sh + 0.3 * fh), (cx + 0.22 * fw, sh)], fill=skin, outline=OUTLINE, width=lw)

    # Hair behind the head.
    if style == "long":
        d.rounded_rectangle([x1 - 0.14 * fw, y1 - 0.12 * fh, x2 + 0.14 * fw, y2 + 0.5 * fh], radius=0.35 * fw,
                            fill=hair, outline=OUTLINE, width=lw)
    elif style == "bob":
        d.rounded_rectangle([x1 - 0.16 * fw, y1 - 0.14 * fh, x2 + 0.16 * fw, y2 - 0.02 * fh], radius=0.3 * fw,
                            fill=hair, outline=OUTLINE, width=lw)
    elif style == "afro":
        d.ellipse([cx - 0.95 * fw, y1 - 0.5 * fh, cx + 0.95 * fw, y1 + 0.8 * fh], fill=hair, outline=OUTLINE, width=lw)
    elif style == "ponytail":
        d.ellipse([x2 - 0.1 * fw, y1 + 0.05 * fh, x2 + 0.5 * fw, y1 + 1.05 * fh], fill=hair, outline=OUTLINE, width=lw)
    elif style == "bun":
        d.ellipse([cx - 0.3 * fw, y1 - 0.45 * fh, cx + 0.3 * fw, y1 + 0.1 * fh], fill=hair, outline=OUTLINE, width=lw)

    # Ears and earrings.
    ey0, ey1 = y1 + 0.4 * fh, y1 + 0.64 * fh
    if style not in ("long", "bob", "afro"):
        d.ellipse([x1 - 0.09 * fw, ey0, x1 + 0.1 * fw, ey1], fill=skin, outline=OUTLINE, width=lw)
        d.ellipse([x2 - 0.1 * fw, ey0, x2 + 0.09 * fw, ey1], fill=skin, outline=OUTLINE, width=lw)
    if "earrings" in acc:
        r = max(2.0, 0.07 * fw)
        for ex in (x1 - 0.02 * fw, x2 + 0.02 * fw):
            d.ellipse([ex - r, ey1 - 0.2 * r, ex + r, ey1 + 1.8 * r], fill=accent, outline=OUTLINE, width=max(1, lw // 2))

    # Face.
    shape = ch["face_shape"]
    if shape == "square":
        d.rounded_rectangle([x1, y1, x2, y2], radius=0.2 * fw, fill=skin, outline=OUTLINE, width=lw)
    elif shape == "long":
        d.rounded_rectangle([x1, y1, x2, y2], radius=0.45 * fw, fill=skin, outline=OUTLINE, width=lw)
    else:
        d.ellipse([x1, y1, x2, y2], fill=skin, outline=OUTLINE, width=lw)

    # Beard (under the features so the mouth stays visible).
    if "beard" in acc:
        d.chord([x1, y1 + 0.25 * fh, x2, y2 + 0.08 * fh], 0, 180, fill=hair, outline=OUTLINE, width=lw)

    # Hair in front (the cap).
    cap = [x1 - 0.07 * fw, y1 - 0.13 * fh, x2 + 0.07 * fw, y1 + 0.62 * fh]
    if style in ("short", "long", "bob", "ponytail", "bun", "afro"):
        d.chord(cap, 180, 360, fill=hair, outline=OUTLINE, width=lw)
        if style in ("bob", "long"):  # fringe
            d.chord([x1 + 0.05 * fw, y1 + 0.05 * fh, cx + 0.1 * fw, y1 + 0.45 * fh], 180, 360, fill=hair)
    elif style == "spiky":
        d.chord(cap, 180, 360, fill=hair, outline=OUTLINE, width=lw)
        n = 6
        pts = [(x1 - 0.08 * fw, y1 + 0.22 * fh)]
        for i in range(n):
            xa = x1 - 0.08 * fw + (i + 0.5) * (fw * 1.16) / n
            pts.append((xa, y1 - 0.4 * fh))
            pts.append((x1 - 0.08 * fw + (i + 1) * (fw * 1.16) / n, y1 - 0.02 * fh))
        pts[-1] = (x2 + 0.08 * fw, y1 + 0.22 * fh)
        d.polygon(pts, fill=hair, outline=OUTLINE, width=lw)
    elif style == "mohawk":
        d.polygon([(cx - 0.22 * fw, y1 + 0.18 * fh), (cx - 0.14 * fw, y1 - 0.5 * fh), (cx + 0.14 * fw, y1 - 0.5 * fh),
                   (cx + 0.22 * fw, y1 + 0.18 * fh)], fill=hair, outline=OUTLINE, width=lw)
    else:  # bald: a shine
        d.arc([x1 + 0.2 * fw, y1 + 0.06 * fh, x2 - 0.2 * fw, y1 + 0.4 * fh], 200, 260, fill=(255, 255, 255), width=lw + 1)

    # Eyes, brows, nose, mouth; expression moves brows and mouth, yaw shifts the features sideways.
    ey = y1 + 0.5 * fh
    brow_col = _shade(hair, 0.7) if ch["hair_colour"] not in ("black",) else hair
    small = fw < 34
    for side in (-1, 1):
        ex = cx + side * 0.21 * fw
        if small:
            r = max(1.5, 0.07 * fw)
            d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=eyes)
        else:
            big = 1.35 if expression in ("surprised", "shouting") else 1.0
            rx, ry = 0.1 * fw * big, 0.075 * fh * big
            d.ellipse([ex - rx, ey - ry, ex + rx, ey + ry], fill=(255, 255, 255), outline=OUTLINE, width=lw)
            ix = ex + yaw * 0.03 * fw
            ir = 0.06 * fw
            d.ellipse([ix - ir, ey - ir, ix + ir, ey + ir], fill=eyes)
            pr = 0.027 * fw
            d.ellipse([ix - pr, ey - pr, ix + pr, ey + pr], fill=(10, 10, 10))
        by = ey - 0.15 * fh
        inner, outer = ex - side * 0.1 * fw, ex + side * 0.12 * fw
        tilt = {"angry": 0.06, "sad": -0.06, "surprised": -0.05}.get(expression, 0.0) * fh
        lift = -0.05 * fh if expression == "surprised" else 0.0
        d.line([(inner, by + tilt + lift), (outer, by - 0.5 * tilt + lift)], fill=brow_col, width=max(2, int(lw * 1.8)))
    if not small:
        nx = cx + yaw * 0.08 * fw
        d.line([(nx, ey + 0.06 * fh), (nx + 0.05 * fw, ey + 0.18 * fh), (nx - 0.02 * fw, ey + 0.2 * fh)],
               fill=_shade(skin, 0.6), width=lw)
    if "moustache" in acc:
        d.polygon([(cx - 0.2 * fw, y1 + 0.78 * fh), (cx, y1 + 0.71 * fh), (cx + 0.2 * fw, y1 + 0.78 * fh),
                   (cx, y1 + 0.75 * fh)], fill=hair, outline=OUTLINE, width=max(1, lw // 2))
    my = y1 + 0.8 * fh
    mw = 0.17 * fw
    mouth_dark = (120, 20, 30)
    if expression == "happy":
        d.chord([cx - mw, my - 0.08 * fh, cx + mw, my + 0.08 * fh], 0, 180, fill=mouth_dark, outline=OUTLINE, width=lw)
    elif expression == "sad":
        d.arc([cx - mw, my, cx + mw, my + 0.12 * fh], 200, 340, fill=OUTLINE, width=lw + 1)
    elif expression == "angry":
        d.rectangle([cx - mw, my - 0.03 * fh, cx + mw, my + 0.03 * fh], fill=(250, 250, 250), outline=OUTLINE, width=lw)
    elif expression == "surprised":
        d.ellipse([cx - 0.06 * fw, my - 0.06 * fh, cx + 0.06 * fw, my + 0.06 * fh], fill=mouth_dark, outline=OUTLINE, width=lw)
    elif expression == "shouting":
        d.ellipse([cx - mw, my - 0.08 * fh, cx + mw, my + 0.1 * fh], fill=mouth_dark, outline=OUTLINE, width=lw)
    else:
        d.line([(cx - mw * 0.8, my), (cx + mw * 0.8, my)], fill=OUTLINE, width=lw + 1)

    if "glasses" in acc:
        gr = 0.14 * fw
        gw = max(2, int(lw * 1.6))
        for side in (-1, 1):
            ex = cx + side * 0.21 * fw
            d.ellipse([ex - gr, ey - gr, ex + gr, ey + gr], outline=accent, width=gw)
        d.line([(cx - 0.07 * fw, ey), (cx + 0.07 * fw, ey)], fill=accent, width=gw)
    if "hat" in acc:
        d.rectangle([cx - 0.45 * fw, y1 - 0.5 * fh, cx + 0.45 * fw, y1 + 0.1 * fh], fill=accent, outline=OUTLINE, width=lw)
        d.rectangle([cx - 0.45 * fw, y1 - 0.05 * fh, cx + 0.45 * fw, y1 + 0.05 * fh], fill=_shade(accent, 0.55))
        d.rounded_rectangle([x1 - 0.22 * fw, y1 + 0.04 * fh, x2 + 0.22 * fw, y1 + 0.15 * fh], radius=0.05 * fw,
                            fill=accent, outline=OUTLINE, width=lw)


def _draw_balloon(d: ImageDraw.ImageDraw, rng: np.random.Generator, box, speaker) -> None:
    x1, y1, x2, y2 = box
    if speaker is not None:
        sx, sy = speaker
        bx = (x1 + x2) / 2 + float(rng.uniform(-0.2, 0.2)) * (x2 - x1)
        tip = (bx + 0.5 * (sx - bx), y2 + 0.45 * max(8.0, sy - y2))
        d.polygon([(bx - 10, y2 - 12), (bx + 10, y2 - 12), tip], fill=(255, 255, 255), outline=OUTLINE, width=2)
    d.ellipse([x1, y1, x2, y2], fill=(255, 255, 255), outline=OUTLINE, width=2)
    w, h = x2 - x1, y2 - y1
    _squiggle_lines(d, rng, (x1 + 0.17 * w, y1 + 0.2 * h, x2 - 0.17 * w, y2 - 0.2 * h), (30, 30, 30), 2)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------------------------------
# Panels, scenes, detector simulation
# --------------------------------------------------------------------------------------------------


def _draw_side(rng: np.random.Generator, p: dict) -> int:
    lo, hi = PANEL_RANGE
    while True:
        if rng.random() < p["large"]:
            v = float(rng.uniform(650, 1000))
        else:
            v = p["median"] * math.exp(p["sigma"] * float(rng.standard_normal()))
        v = int(round(v))
        if lo <= v <= hi:
            return v


def _panel_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) of one panel, drawn around the real Golden Age statistics."""
    w = _draw_side(rng, PANEL_SIZE["width"])
    h = _draw_side(rng, PANEL_SIZE["height"])
    return w, h


def _new_scene(rng: np.random.Generator, cast: list[dict]) -> dict:
    n_main = 1 if len(cast) == 1 else int(rng.choice([1, 2, 2, 2, 3])) if len(cast) >= 3 else int(rng.choice([1, 2, 2]))
    has_ground = rng.random() < 0.6
    return {
        "length": int(rng.integers(4, 12)),
        "members": [int(i) for i in rng.permutation(len(cast))[:n_main]],
        "bg": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        "ground": _shade(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], 0.8) if has_ground else None,
        "horizon": float(rng.uniform(0.55, 0.8)),
        "prop": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        "halftone": (int(rng.integers(6, 11)), float(rng.uniform(1.3, 2.6))) if rng.random() < 0.5 else None,
        "halftone_full": bool(rng.random() < 0.5),
    }


def _place_faces(rng: np.random.Generator, W: int, H: int, shapes: list[str]) -> list[tuple[float, float, float, float]]:
    """Face (skin) boxes that neither overlap each other nor sit on another character's body."""
    boxes: list[tuple[float, float, float, float]] = []
    limit = 0.42 * min(W, H) if len(shapes) == 1 else 0.3 * min(W, H)
    for shape in shapes:
        aspect = FACE_SHAPES[shape]
        side = float(np.clip(np.exp(rng.normal(math.log(85), 0.5)), 24, 200))
        side = max(24.0, min(side, limit))
        placed = None
        for attempt in range(40):
            fh = side
            fw = max(16.0, fh / aspect)
            m = 0.04 * min(W, H)
            if W - fw - 2 * m <= 0 or H - fh * 1.5 - 2 * m <= 0:
                side *= 0.85
                continue
            x1 = float(rng.uniform(m, W - fw - m))
            y1 = float(rng.uniform(m + 0.5 * fh, H - fh - m))
            cand = (x1, y1, x1 + fw, y1 + fh)
            ok = True
            for b in boxes:
                bw = b[2] - b[0]
                grown = (cand[0] - 0.15 * fw, cand[1] - 0.5 * fh, cand[2] + 0.15 * fw, cand[3] + 0.1 * fh)
                other_body = (b[0] - 0.9 * bw, b[3], b[2] + 0.9 * bw, H)
                my_body = (cand[0] - 0.9 * fw, cand[3], cand[2] + 0.9 * fw, H)
                if _intersects(grown, b) or _intersects(cand, other_body) or _intersects(b, my_body):
                    ok = False
                    break
            if ok:
                placed = cand
                break
            if attempt % 10 == 9:
                side = max(24.0, side * 0.8)
        if placed is not None:
            boxes.append(placed)
    return boxes


def _int_box(b, W: int, H: int) -> tuple[int, int, int, int]:
    x1 = int(min(max(0, math.floor(b[0])), W - 2))
    y1 = int(min(max(0, math.floor(b[1])), H - 2))
    x2 = int(min(max(x1 + 1, math.ceil(b[2])), W))
    y2 = int(min(max(y1 + 1, math.ceil(b[3])), H))
    return x1, y1, x2, y2


def _jitter(rng: np.random.Generator, b, frac: float, W: int, H: int, scale: float = 1.0) -> tuple[int, int, int, int]:
    w, h = b[2] - b[0], b[3] - b[1]
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    s = max(w, h)
    cx += float(rng.normal(0, frac * s))
    cy += float(rng.normal(0, frac * s))
    w = w * scale * float(np.exp(rng.normal(0, frac)))
    h = h * scale * float(np.exp(rng.normal(0, frac)))
    return _int_box((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), W, H)


def _detections(rng: np.random.Generator, faces, W: int, H: int, counts: dict) -> list[Box]:
    """Raw detector output for one panel: true hits, duplicates, misses, false positives."""
    out: list[Box] = []
    for f in faces:
        if rng.random() < 0.05:
            counts["missed"] += 1
            continue
        main = _jitter(rng, f, 0.04, W, H)
        conf = round(0.9 + 0.1 * float(rng.beta(4.0, 1.3)), 4)
        conf = min(conf, 0.9999)
        out.append(Box(*main, conf))
        counts["detection"] += 1
        if rng.random() < 0.3:
            for _ in range(1 if rng.random() < 0.8 else 2):
                dup = None
                for frac in (0.1, 0.07, 0.04, 0.0):
                    cand = _jitter(rng, main, frac, W, H, scale=float(rng.uniform(0.9, 1.15)))
                    if _iou(cand, main) > 0.35:
                        dup = cand
                        break
                if dup is None:
                    dup = main
                dconf = round(max(0.3, conf - float(rng.uniform(0.005, 0.25))), 4)
                out.append(Box(*dup, dconf))
                counts["duplicate"] += 1
    n_fp = int(rng.poisson(0.6))
    high = rng.random() < 0.015
    for k in range(n_fp + int(high)):
        for _ in range(10):
            s = float(rng.uniform(20, 110))
            x = float(rng.uniform(0, max(1.0, W - s)))
            y = float(rng.uniform(0, max(1.0, H - s)))
            cand = _int_box((x, y, x + s * float(rng.uniform(0.8, 1.25)), y + s), W, H)
            if all(_iou(cand, f) < 0.05 for f in faces):
                is_high = high and k == n_fp
                conf = float(rng.uniform(0.9, 0.97)) if is_high else float(rng.uniform(0.3, 0.89))
                out.append(Box(*cand, round(conf, 4)))
                counts["false_positive_high" if is_high else "false_positive_low"] += 1
                break
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _render_panel(rng: np.random.Generator, W: int, H: int, scene: dict, chars: list[dict]):
    """Draw one panel; returns (image, [(true face box, character)])."""
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    _draw_background(img, d, rng, scene)
    boxes = _place_faces(rng, W, H, [c["face_shape"] for c in chars])
    placed = list(zip(boxes, chars))
    # Upper heads first: a lower character's head then sits over the upper one's body, never the reverse.
    placed.sort(key=lambda bc: bc[0][1])
    for box, ch in placed:
        expression = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
        yaw = float(rng.uniform(-1, 1))
        _draw_character(d, ch, box, expression, yaw)
    # Speech balloons and captions, kept off faces and hair.
    keep_out = [(b[0] - 0.25 * (b[2] - b[0]), b[1] - 0.55 * (b[3] - b[1]), b[2] + 0.25 * (b[2] - b[0]), b[3]) for b, _ in placed]
    for _ in range(int(rng.integers(0, 3))):
        for _try in range(8):
            bw = float(rng.uniform(0.3, 0.55)) * W
            bh = float(rng.uniform(0.13, 0.24)) * H
            bx = float(rng.uniform(0.02 * W, 0.98 * W - bw))
            by = float(rng.uniform(0.02 * H, max(0.021 * H, 0.45 * H - bh)))
            cand = (bx, by, bx + bw, by + bh)
            if not any(_intersects(cand, k) for k in keep_out):
                speaker = None
                if placed:
                    fb = placed[int(rng.integers(len(placed)))][0]
                    speaker = ((fb[0] + fb[2]) / 2, fb[1])
                _draw_balloon(d, rng, cand, speaker)
                keep_out.append(cand)
                break
    if rng.random() < 0.2:
        cw, chh = 0.5 * W, 0.1 * H
        cap = (4.0, 4.0, 4 + cw, 4 + chh)
        if not any(_intersects(cap, k) for k in keep_out):
            d.rectangle(cap, fill=(250, 235, 150), outline=OUTLINE, width=2)
            _squiggle_lines(d, rng, (cap[0] + 6, cap[1] + 2, cap[2] - 6, cap[3] - 2), (40, 30, 30), 2)
    bw = int(rng.integers(2, 6))
    d.rectangle([0, 0, W - 1, H - 1], outline=OUTLINE, width=bw)
    return img, placed


def _generate_series(job: tuple[str, int, int, int | None]) -> dict:
    """Write one series (panels + annotation file); returns its ground truth, cast and counts."""
    out, seed, s, n_panels = job
    rng = np.random.default_rng([seed, s])
    cast = _make_cast(rng, s)
    if n_panels is None:
        n_panels = int(rng.integers(DEFAULT_PANELS_PER_SERIES[0], DEFAULT_PANELS_PER_SERIES[1] + 1))
    folder = Path(out) / "panels" / str(s)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"detection": 0, "duplicate": 0, "false_positive_low": 0, "false_positive_high": 0, "missed": 0}
    gt_rows: list[list] = []
    ann_rows: list[tuple[str, Box]] = []
    page, panel_in_page, page_len = 0, 0, int(rng.integers(3, 9))
    scene, scene_left = None, 0
    faceless = 0
    for _ in range(n_panels):
        if scene_left == 0:
            scene = _new_scene(rng, cast)
            scene_left = scene["length"]
        scene_left -= 1
        W, H = _panel_size(rng)
        k = int(rng.choice([0, 1, 2, 3], p=[0.07, 0.5, 0.33, 0.10]))
        members = list(scene["members"])
        chosen = [members[int(i)] for i in rng.permutation(len(members))[: min(k, len(members))]]
        others = [i for i in range(len(cast)) if i not in chosen]
        while len(chosen) < k and others:  # a guest from the rest of the cast
            chosen.append(others.pop(int(rng.integers(len(others)))))
        chars = [cast[i] for i in chosen]
        img, placed = _render_panel(rng, W, H, scene, chars)
        name = f"{page}_{panel_in_page}.jpg"
        key = f"{s}/{name}"
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
        (folder / name).write_bytes(buf.getvalue())
        true_boxes = [_int_box(b, W, H) for b, _ in placed]
        if not placed:
            faceless += 1
        for tb, (_, ch) in zip(true_boxes, placed):
            gt_rows.append([key, *tb, ch["id"], str(s)])
        for box in _detections(rng, true_boxes, W, H, counts):
            ann_rows.append((key, box))
        panel_in_page += 1
        if panel_in_page == page_len:
            page, panel_in_page, page_len = page + 1, 0, int(rng.integers(3, 9))
    write_annotation_file(Path(out) / "annotations" / f"{s}.txt", ann_rows)
    return {
        "series": str(s),
        "cast": cast,
        "n_panels": n_panels,
        "n_pages": page + (1 if panel_in_page else 0),
        "n_faces": len(gt_rows),
        "n_faceless_panels": faceless,
        "annotation_lines": counts,
        "gt_rows": gt_rows,
    }


_OWNED = ("panels", "annotations", "ground_truth.csv", "manifest.json")
# Preprocessing outputs derived from a previous dataset; stale once the panels are regenerated.
_DERIVED = ("sequences.json", "faces", "faces_margin", "split.json")


def generate(
    out: str | Path,
    n_series: int = 40,
    seed: int = 0,
    panels_per_series: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a synthetic COMICS-layout dataset to ``out`` and return its manifest.

    ``panels_per_series`` fixes the panel count of every series; by default each series draws it from
    ``DEFAULT_PANELS_PER_SERIES`` (120-150, so 40 series give > 5,000 panels). ``workers`` processes
    share the series (default: all cores); the output does not depend on it. An existing dataset in
    ``out`` is an error unless ``overwrite=True``, which replaces it and removes stale preprocessing
    outputs (sequences.json, faces/, faces_margin/, split.json).
    """
    out = Path(out)
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if panels_per_series is not None and panels_per_series < 1:
        raise ValueError(f"panels_per_series must be >= 1 or None, got {panels_per_series}")
    existing = [n for n in _OWNED if (out / n).exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a dataset ({', '.join(existing)}); pass overwrite=True (CLI: --overwrite) "
                "to replace it, or choose another --out"
            )
        for n in _OWNED + _DERIVED:
            p = out / n
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "panels").mkdir(exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)

    jobs = [(str(out), int(seed), s, panels_per_series) for s in range(n_series)]
    workers = min(n_series, workers if workers is not None else (os.cpu_count() or 1))
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_series, desc="synthetic series", unit="series")
    if workers <= 1:
        for job in jobs:
            results.append(_generate_series(job))
            if bar is not None:
                bar.update(1)
    else:
        with get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(workers) as pool:
            for r in pool.imap(_generate_series, jobs, chunksize=1):
                results.append(r)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    results.sort(key=lambda r: natural_key(r["series"]))

    with open(out / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["panel", "x1", "y1", "x2", "y2", "character", "series"])
        for r in results:
            w.writerows(r["gt_rows"])

    kinds = ("detection", "duplicate", "false_positive_low", "false_positive_high")
    lines = {k: sum(r["annotation_lines"][k] for r in results) for k in kinds}
    manifest = {
        "generator": "ssuper_lib.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "panels_per_series": panels_per_series,
        "layout": {
            "panels": "panels/<series>/<page>_<panel>.jpg",
            "annotations": "annotations/<series>.txt (<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf)",
            "ground_truth": "ground_truth.csv (panel,x1,y1,x2,y2,character,series)",
        },
        "counts": {
            "series": len(results),
            "panels": sum(r["n_panels"] for r in results),
            "pages": sum(r["n_pages"] for r in results),
            "faces": sum(r["n_faces"] for r in results),
            "faceless_panels": sum(r["n_faceless_panels"] for r in results),
            "characters": sum(len(r["cast"]) for r in results),
            "missed_faces": sum(r["annotation_lines"]["missed"] for r in results),
            "annotation_lines": {**lines, "total": sum(lines.values())},
        },
        "settings": {
            "panel_size": PANEL_SIZE,
            "panel_range": list(PANEL_RANGE),
            "jpeg_quality": JPEG_QUALITY,
            "face_side_px": [24, 200],
        },
        "series": {
            r["series"]: {
                "n_panels": r["n_panels"],
                "n_pages": r["n_pages"],
                "n_faces": r["n_faces"],
                "annotation_lines": r["annotation_lines"],
                "cast": r["cast"],
            }
            for r in results
        },
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m ssuper_lib.data.synthetic --out data/synthetic --series 40 --seed 0``."""
    ap = argparse.ArgumentParser(prog="ssuper-synth", description="Write a synthetic COMICS-layout dataset.")
    ap.add_argument("--out", default="data/synthetic", help="output root (relative paths: to the current directory)")
    ap.add_argument("--series", type=int, default=40, help="number of series (folders 0..N-1)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed -> byte-identical output)")
    ap.add_argument("--panels-per-series", type=int, default=None, help="fixed panels per series (default: 120-150 drawn)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        m = generate(args.out, args.series, args.seed, args.panels_per_series, args.workers, args.overwrite, progress=True)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    c = m["counts"]
    print(
        f"wrote {c['panels']} panels in {c['series']} series, {c['faces']} faces, "
        f"{c['annotation_lines']['total']} annotation lines to {args.out} in {dt:.1f} s "
        f"({c['panels'] / dt:.0f} panels/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
