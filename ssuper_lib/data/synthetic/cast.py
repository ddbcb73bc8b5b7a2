"""The recurring casts of the synthetic comics: identity palettes, styles and one series' characters."""

from __future__ import annotations

from typing import Any

import numpy as np

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


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, v * f))) for v in c)  # type: ignore[return-value]


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

