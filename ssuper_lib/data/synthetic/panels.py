"""Panel sizes, scenes and face placement of the synthetic comics (docs/original.md 3.1)."""

from __future__ import annotations

import math

import numpy as np

from .cast import BACKGROUNDS, FACE_SHAPES, _shade

# Real Golden Age statistics (docs/original.md 3.1): height mean 510 / median 475, width mean 508.5 / median 460.
# A side is a log-normal (median ``median``, log-sd ``sigma``) mixed with a share ``large`` of big splash
# panels (uniform 650-1000 px), redrawn outside PANEL_RANGE; the mixture matches the real means and medians
# (the real distribution has a long right tail that a plain log-normal cannot give without clamping piles).
PANEL_SIZE = {
    "height": {"median": 455.0, "sigma": 0.30, "large": 0.10},
    "width": {"median": 420.0, "sigma": 0.35, "large": 0.16},
}
PANEL_RANGE = (200, 1000)
DEFAULT_PANELS_PER_SERIES = (120, 150)  # drawn per series, inclusive range


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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


def _place_faces(rng: np.random.Generator, W: int, H: int, shapes: list[str], sides: list | None = None,
                 closeup: float | None = None) -> list[tuple[float, float, float, float]]:
    """Face (skin) boxes that neither overlap each other nor sit on another character's body.

    Realism (None: today's drawing): ``sides[i]`` replaces face i's drawn side (close-ups, long shots), and
    ``closeup`` puts the (single) face at the panel's bottom, its lower edge ``closeup`` face heights below
    it (negative: above), so the shoulders are out of frame."""
    boxes: list[tuple[float, float, float, float]] = []
    limit = 0.42 * min(W, H) if len(shapes) == 1 else 0.3 * min(W, H)
    for i, shape in enumerate(shapes):
        aspect = FACE_SHAPES[shape]
        side = float(np.clip(np.exp(rng.normal(math.log(85), 0.5)), 24, 200))
        side = max(24.0, min(side, limit))
        if sides is not None and sides[i] is not None:
            side = float(sides[i])
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
            if closeup is not None:
                y1 = H + closeup * fh - fh
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

