"""Drawing of the synthetic panels: backgrounds, characters (body, hair, face, features), balloons."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from .cast import CAST_PALETTES, EXPRESSIONS, OUTLINE, _shade
from .panels import PANEL_RANGE, _intersects, _place_faces
from .turned import VIEWS, covered_share, draw_turned, occlude


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


class _Figure(NamedTuple):
    """Geometry and colours of one character, derived from its face (skin) box."""

    x1: float
    y1: float
    x2: float
    y2: float
    fw: float
    fh: float
    cx: float
    lw: int
    yaw: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    accent: tuple[int, int, int]
    eyes: tuple[int, int, int]
    style: str
    acc: list[str]
    ch: dict


def _figure(ch: dict, box, yaw: float) -> _Figure:
    """The shared geometry (face size, centre shifted by ``yaw``, line width) and palette colours."""
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
    return _Figure(x1, y1, x2, y2, fw, fh, cx, lw, yaw, skin, hair, shirt, accent, eyes, style, acc, ch)


class _FrontalParts(NamedTuple):
    """The frontal drawing steps a turned head reuses as they are (:func:`.turned.draw_turned`)."""

    body: object
    hair_back: object
    face: object
    hair_front: object


def _draw_character(d: ImageDraw.ImageDraw, ch: dict, box, expression: str, yaw: float,
                    view: str = "front", dirn: int = 1) -> None:
    """Body, hair, face, features and accessories of one character; ``box`` is the face (skin) box.
    ``view``: ``front`` (yaw shifts the features a little), ``three_quarter`` or ``profile`` facing ``dirn``."""
    f = _figure(ch, box, yaw)
    if view != "front":
        draw_turned(d, f._replace(cx=(f.x1 + f.x2) / 2), expression, view, dirn,
                    _FrontalParts(_draw_body, _draw_hair_back, _draw_face, _draw_hair_front))
        return
    _draw_body(d, f)
    _draw_hair_back(d, f)
    _draw_ears(d, f)
    _draw_face(d, f)
    _draw_hair_front(d, f)
    _draw_eyes(d, f, expression)
    _draw_nose_and_mouth(d, f, expression)
    _draw_accessories(d, f)


def _draw_body(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    y2, fw, fh, cx, lw, skin, shirt = f.y2, f.fw, f.fh, f.cx, f.lw, f.skin, f.shirt
    # Body: a big torso block in the character's shirt colour (a strong identity cue at low resolution).
    sh = y2 + 0.2 * fh
    torso = [
        (cx - 0.55 * fw, sh), (cx + 0.55 * fw, sh), (cx + 1.15 * fw, sh + 0.35 * fh),
        (cx + 1.3 * fw, sh + 2.8 * fh), (cx - 1.3 * fw, sh + 2.8 * fh), (cx - 1.15 * fw, sh + 0.35 * fh),
    ]
    d.polygon(torso, fill=shirt, outline=OUTLINE, width=lw)
    if f.ch.get("pattern", "plain") != "plain":
        _draw_pattern(d, f, sh)
    d.rectangle([cx - 0.18 * fw, y2 - 0.15 * fh, cx + 0.18 * fw, sh + 0.12 * fh], fill=skin, outline=OUTLINE, width=lw)
    d.polygon([(cx - 0.22 * fw, sh), (cx, sh + 0.3 * fh), (cx + 0.22 * fw, sh)], fill=skin, outline=OUTLINE, width=lw)


def _draw_pattern(d: ImageDraw.ImageDraw, f: _Figure, sh: float) -> None:
    """Stripes, dots or checks on the torso (a changed outfit), clipped to the torso outline."""
    fw, fh, cx, lw = f.fw, f.fh, f.cx, f.lw
    ink = _shade(f.shirt, 0.55) if sum(f.shirt) > 200 else _shade(f.accent, 1.0)

    def half_width(y: float) -> float:  # the torso's half width at height y (its outline, piecewise linear)
        if y < sh + 0.35 * fh:
            return (0.55 + 0.6 * (y - sh) / (0.35 * fh)) * fw
        return (1.15 + 0.15 * (y - sh - 0.35 * fh) / (2.45 * fh)) * fw

    pattern = f.ch["pattern"]
    step = 0.36 * fh
    y = sh + 0.5 * step
    while y < sh + 2.75 * fh:
        hw = half_width(y) - lw
        if pattern in ("stripes", "check"):
            d.line([(cx - hw, y), (cx + hw, y)], fill=ink, width=max(2, int(0.12 * fh)))
        if pattern == "dots":
            r = 0.07 * fw
            for x in np.arange(cx - hw + 2 * r, cx + hw - r, 0.36 * fw):
                d.ellipse([x - r, y - r, x + r, y + r], fill=ink)
        y += step
    if pattern == "check":
        for x in np.arange(cx - 1.1 * fw, cx + 1.1 * fw, 0.36 * fw):
            y0 = sh + 0.35 * fh if abs(x - cx) > 0.55 * fw else sh + 0.05 * fh
            d.line([(x, y0), (x, sh + 2.75 * fh)], fill=ink, width=max(2, int(0.08 * fh)))


def _draw_hair_back(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    x1, y1, x2, y2, fw, fh, cx, lw, hair, style = f.x1, f.y1, f.x2, f.y2, f.fw, f.fh, f.cx, f.lw, f.hair, f.style
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


def _draw_ears(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    x1, y1, x2, fw, fh, lw, skin, accent = f.x1, f.y1, f.x2, f.fw, f.fh, f.lw, f.skin, f.accent
    style, acc = f.style, f.acc
    # Ears and earrings.
    ey0, ey1 = y1 + 0.4 * fh, y1 + 0.64 * fh
    if style not in ("long", "bob", "afro"):
        d.ellipse([x1 - 0.09 * fw, ey0, x1 + 0.1 * fw, ey1], fill=skin, outline=OUTLINE, width=lw)
        d.ellipse([x2 - 0.1 * fw, ey0, x2 + 0.09 * fw, ey1], fill=skin, outline=OUTLINE, width=lw)
    if "earrings" in acc:
        r = max(2.0, 0.07 * fw)
        for ex in (x1 - 0.02 * fw, x2 + 0.02 * fw):
            d.ellipse([ex - r, ey1 - 0.2 * r, ex + r, ey1 + 1.8 * r], fill=accent, outline=OUTLINE, width=max(1, lw // 2))


def _draw_face(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    x1, y1, x2, y2, fw, fh, lw, skin, hair, acc = f.x1, f.y1, f.x2, f.y2, f.fw, f.fh, f.lw, f.skin, f.hair, f.acc
    ch = f.ch
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


def _draw_hair_front(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    x1, y1, x2, fw, fh, cx, lw, hair, style = f.x1, f.y1, f.x2, f.fw, f.fh, f.cx, f.lw, f.hair, f.style
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


def _draw_eyes(d: ImageDraw.ImageDraw, f: _Figure, expression: str) -> None:
    y1, fw, fh, cx, lw, yaw, hair, eyes, ch = f.y1, f.fw, f.fh, f.cx, f.lw, f.yaw, f.hair, f.eyes, f.ch
    # Eyes and brows; expression moves the brows (and the mouth), yaw shifts the features sideways.
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


def _draw_nose_and_mouth(d: ImageDraw.ImageDraw, f: _Figure, expression: str) -> None:
    y1, fw, fh, cx, lw, yaw, skin, hair, acc = f.y1, f.fw, f.fh, f.cx, f.lw, f.yaw, f.skin, f.hair, f.acc
    ey = y1 + 0.5 * fh
    small = fw < 34
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


def _draw_accessories(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    x1, y1, x2, fw, fh, cx, lw, accent, acc = f.x1, f.y1, f.x2, f.fw, f.fh, f.cx, f.lw, f.accent, f.acc
    ey = y1 + 0.5 * fh
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



def _render_panel(rng: np.random.Generator, W: int, H: int, scene: dict, chars: list[dict], real: dict | None = None):
    """Draw one panel; returns (image, [(true face box, character)]).

    ``real`` (None: the clean drawing) holds the panel's realism decisions and the realism stream ``rr``:
    ``sides`` and ``closeup`` for the face placement, ``non_frontal_rate`` and ``occluded_rate``; the drawing
    adds ``views`` and ``covered`` (per placed face) and ``balloons`` (boxes) to it."""
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    _draw_background(img, d, rng, scene)
    if real is None:
        boxes = _place_faces(rng, W, H, [c["face_shape"] for c in chars])
    else:
        boxes = _place_faces(rng, W, H, [c["face_shape"] for c in chars], real["sides"], real["closeup"])
    placed = list(zip(boxes, chars))
    # Upper heads first: a lower character's head then sits over the upper one's body, never the reverse.
    placed.sort(key=lambda bc: bc[0][1])
    views = []
    for box, ch in placed:
        expression = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
        yaw = float(rng.uniform(-1, 1))
        view, dirn = "front", 1
        if real is not None and real["rr"].random() < real["non_frontal_rate"]:
            view, dirn = VIEWS[int(real["rr"].random() < 0.4)], (1 if real["rr"].random() < 0.5 else -1)
        views.append(view)
        _draw_character(d, ch, box, expression, yaw, view, dirn)
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
    if real is not None:
        _occlude_faces(img, real, placed)
        real["views"], real["balloons"] = views, keep_out[len(placed):]
    bw = int(rng.integers(2, 6))
    d.rectangle([0, 0, W - 1, H - 1], outline=OUTLINE, width=bw)
    return img, placed


def _occlude_faces(img: Image.Image, real: dict, placed: list) -> None:
    """Occluders over a share ``real["occluded_rate"]`` of the faces; ``real["covered"]``: share of each box hidden."""
    rr = real["rr"]
    masks = []
    colours = [CAST_PALETTES["hair"][ch["hair_colour"]] for _, ch in placed]
    for box, _ in placed:
        if rr.random() < real["occluded_rate"]:
            masks.append(occlude(img, rr, box, colours))
    if not masks:
        real["covered"] = [0.0] * len(placed)
        return
    union = masks[0]
    for m in masks[1:]:
        union = Image.fromarray(np.maximum(np.asarray(union), np.asarray(m)))
    real["covered"] = [covered_share(union, [int(v) for v in box]) for box, _ in placed]

