"""Realism in the drawing: heads turned to three-quarter and profile views, and faces partly hidden.

Frontal heads are drawn by :mod:`.draw`; this module draws the other views. A turned head keeps its face
(skin) box, and what sits on it moves with the head: the features move toward the side the character
faces, the far eye narrows (three-quarter) or disappears (profile), the nose points sideways and sticks out
of the outline in profile, the hair mass and the hat slide back, and only the back ear shows.

Occluders (:func:`occlude`) cover 10-50% of a face box from one side: a speech balloon, a panel border
(the gutter of an inset panel) or the head and shoulder of a figure in the foreground.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .cast import CAST_PALETTES, OUTLINE, _shade

__all__ = ["draw_turned", "occlude", "VIEWS"]

VIEWS = ("three_quarter", "profile")
_BACK = {"three_quarter": 0.12, "profile": 0.2}  # how far the hair mass slides back (share of face width)
_FEATURES = {"three_quarter": 0.16, "profile": 0.3}  # how far the features move toward the facing side


def draw_turned(d: ImageDraw.ImageDraw, f, expression: str, view: str, dirn: int, parts) -> None:
    """Draw figure ``f`` (:class:`.draw._Figure`) turned to ``view``, facing ``dirn`` (+1 right, -1 left).

    ``parts`` holds the frontal drawing functions that are reused as they are (body, hair, face)."""
    back = -dirn * _BACK[view] * f.fw
    fb = f._replace(x1=f.x1 + back, x2=f.x2 + back, cx=f.cx + back)  # the hair and hat sit further back
    parts.body(d, f)
    parts.hair_back(d, fb)
    _ear(d, f, view, dirn)
    parts.face(d, f)
    if view == "profile":
        _profile_nose(d, f, dirn)
    parts.hair_front(d, fb)
    fx = (f.x1 + f.x2) / 2 + dirn * _FEATURES[view] * f.fw
    eyes = _eyes(d, f, fx, view, dirn, expression)
    _nose_mouth(d, f, fx, view, dirn, expression)
    _accessories(d, f, fb, eyes)


def _ear(d, f, view: str, dirn: int) -> None:
    if f.style in ("long", "bob", "afro"):
        return
    ex = (f.x1 + f.x2) / 2 - dirn * (0.38 if view == "three_quarter" else 0.12) * f.fw
    ey0, ey1 = f.y1 + 0.4 * f.fh, f.y1 + 0.64 * f.fh
    d.ellipse([ex - 0.09 * f.fw, ey0, ex + 0.09 * f.fw, ey1], fill=f.skin, outline=OUTLINE, width=f.lw)


def _profile_nose(d, f, dirn: int) -> None:
    edge = f.x2 - 0.05 * f.fw if dirn > 0 else f.x1 + 0.05 * f.fw
    ey = f.y1 + 0.5 * f.fh
    pts = [(edge, ey - 0.02 * f.fh), (edge + dirn * 0.17 * f.fw, ey + 0.2 * f.fh), (edge, ey + 0.27 * f.fh)]
    d.polygon(pts, fill=f.skin, outline=OUTLINE, width=f.lw)


def _eyes(d, f, fx: float, view: str, dirn: int, expression: str) -> list[tuple[float, float, float]]:
    """The visible eyes (centre x, centre y, radius); brows above them."""
    ey = f.y1 + 0.5 * f.fh
    if view == "three_quarter":
        eyes = [(fx + dirn * 0.17 * f.fw, 1.0), (fx - dirn * 0.16 * f.fw, 0.65)]
    else:
        eyes = [(fx + dirn * 0.02 * f.fw, 0.75)]
    brow = _shade(f.hair, 0.7) if f.ch["hair_colour"] != "black" else f.hair
    big = 1.35 if expression in ("surprised", "shouting") else 1.0
    out = []
    for ex, narrow in eyes:
        if f.fw < 34:
            r = max(1.5, 0.07 * f.fw * narrow)
            d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=f.eyes)
        else:
            rx, ry = 0.1 * f.fw * big * narrow, 0.075 * f.fh * big
            d.ellipse([ex - rx, ey - ry, ex + rx, ey + ry], fill=(255, 255, 255), outline=OUTLINE, width=f.lw)
            ix = ex + dirn * 0.035 * f.fw * narrow
            ir = 0.06 * f.fw * min(1.0, narrow + 0.2)
            d.ellipse([ix - ir, ey - ir, ix + ir, ey + ir], fill=f.eyes)
            pr = 0.027 * f.fw
            d.ellipse([ix - pr, ey - pr, ix + pr, ey + pr], fill=(10, 10, 10))
        by = ey - 0.15 * f.fh
        tilt = {"angry": 0.06, "sad": -0.06, "surprised": -0.05}.get(expression, 0.0) * f.fh
        half = 0.11 * f.fw * narrow
        d.line([(ex - half, by + tilt * dirn), (ex + half, by - tilt * dirn)], fill=brow, width=max(2, int(f.lw * 1.8)))
        out.append((ex, ey, 0.14 * f.fw * narrow))
    return out


def _nose_mouth(d, f, fx: float, view: str, dirn: int, expression: str) -> None:
    ey = f.y1 + 0.5 * f.fh
    if view == "three_quarter" and f.fw >= 34:
        nx = fx + dirn * 0.06 * f.fw
        d.line([(nx, ey + 0.06 * f.fh), (nx + dirn * 0.09 * f.fw, ey + 0.18 * f.fh), (nx, ey + 0.21 * f.fh)],
               fill=_shade(f.skin, 0.6), width=f.lw)
    mx = fx + dirn * (0.03 if view == "three_quarter" else 0.12) * f.fw
    mw = 0.17 * f.fw * (0.75 if view == "three_quarter" else 0.45)
    my = f.y1 + 0.8 * f.fh
    if "moustache" in f.acc:
        d.polygon([(mx - 1.1 * mw, my - 0.02 * f.fh), (mx, my - 0.09 * f.fh), (mx + 1.1 * mw, my - 0.02 * f.fh)],
                  fill=f.hair, outline=OUTLINE, width=max(1, f.lw // 2))
    dark = (120, 20, 30)
    if expression in ("happy", "shouting"):
        d.chord([mx - mw, my - 0.08 * f.fh, mx + mw, my + 0.08 * f.fh], 0, 180, fill=dark, outline=OUTLINE, width=f.lw)
    elif expression == "surprised":
        r = 0.05 * f.fw
        d.ellipse([mx - r, my - r, mx + r, my + r], fill=dark, outline=OUTLINE, width=f.lw)
    else:
        y = my + (0.03 * f.fh if expression == "sad" else 0.0)
        d.line([(mx - mw, y), (mx + mw, my)], fill=OUTLINE, width=f.lw + 1)


def _accessories(d, f, fb, eyes) -> None:
    if "glasses" in f.acc:
        gw = max(2, int(f.lw * 1.6))
        for ex, ey, r in eyes:
            d.ellipse([ex - r, ey - 0.14 * f.fw, ex + r, ey + 0.14 * f.fw], outline=f.accent, width=gw)
    if "hat" in f.acc:
        cx, y1, fw, fh = fb.cx, fb.y1, fb.fw, fb.fh
        d.rectangle([cx - 0.45 * fw, y1 - 0.5 * fh, cx + 0.45 * fw, y1 + 0.1 * fh], fill=f.accent, outline=OUTLINE,
                    width=f.lw)
        d.rounded_rectangle([fb.x1 - 0.22 * fw, y1 + 0.04 * fh, fb.x2 + 0.22 * fw, y1 + 0.15 * fh], radius=0.05 * fw,
                            fill=f.accent, outline=OUTLINE, width=f.lw)


# --------------------------------------------------------------------------------------------------
# Occluders
# --------------------------------------------------------------------------------------------------

OCCLUDERS = ("balloon", "border", "figure")


def _occluder_shape(kind: str, box, side: str, frac: float, rr: np.random.Generator) -> tuple[str, list]:
    """(shape, coordinates) of an occluder covering about ``frac`` of ``box`` from ``side``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if side == "left":
        edge = x1 + frac * w
        region = [edge - 1.6 * w, y1 - 0.45 * h, edge, y2 + 0.45 * h]
    elif side == "right":
        edge = x2 - frac * w
        region = [edge, y1 - 0.45 * h, edge + 1.6 * w, y2 + 0.45 * h]
    else:  # from below: a balloon or a foreground figure rising over the chin
        edge = y2 - frac * h
        region = [x1 - 0.45 * w, edge, x2 + 0.45 * w, edge + 1.4 * h]
    if kind == "border":
        slant = float(rr.uniform(-0.12, 0.12)) * h
        if side in ("left", "right"):
            far = region[0] if side == "left" else region[2]
            return "polygon", [(far, region[1]), (edge + slant, region[1]), (edge - slant, region[3]), (far, region[3])]
        return "polygon", [(region[0], region[3]), (region[0], edge + slant), (region[2], edge - slant), (region[2], region[3])]
    return "ellipse", region


def occlude(img: Image.Image, rr: np.random.Generator, box, cast_colours: list[tuple]) -> Image.Image:
    """Draw one occluder over ``box`` on ``img``; returns the occluder's 'L' mask (255 = covered)."""
    kind = OCCLUDERS[int(rr.integers(len(OCCLUDERS)))]
    side = ("left", "right", "below")[int(rr.integers(3))]
    frac = float(rr.uniform(0.18, 0.5))
    shape, xy = _occluder_shape(kind, box, side, frac, rr)
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).ellipse(xy, fill=255) if shape == "ellipse" else ImageDraw.Draw(mask).polygon(xy, fill=255)
    d = ImageDraw.Draw(img)
    if kind == "balloon":
        d.ellipse(xy, fill=(255, 255, 255), outline=OUTLINE, width=2)
    elif kind == "border":
        d.polygon(xy, fill=(250, 250, 246), outline=OUTLINE, width=3)
    else:  # the back of a head (hair) over a shoulder (shirt) of someone nearer to the reader
        hair = cast_colours[int(rr.integers(len(cast_colours)))] if cast_colours else CAST_PALETTES["hair"]["black"]
        d.ellipse(xy, fill=hair, outline=OUTLINE, width=2)
    return mask


def covered_share(mask: Image.Image, box) -> float:
    """Share of ``box`` (x1, y1, x2, y2, integer pixels) that ``mask`` covers."""
    x1, y1, x2, y2 = (int(v) for v in box)
    a = np.asarray(mask.crop((x1, y1, x2, y2)))
    return float((a > 127).mean()) if a.size else 0.0
