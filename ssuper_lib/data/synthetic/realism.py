"""Realism factors of the synthetic comics: the knobs, the presets and what each one measured.

In the ``clean`` world a character is a set of flat colours that never change, every face is near frontal,
the torso is always in frame and the detector is close to the truth, so a colour thumbnail of a face's
surroundings is almost an identity key. Real Golden Age comics differ; each knob imitates one of those facts
(docs/data.md, "Realism"):

========================  ==================================================================================
knob                      real-comics fact it imitates
========================  ==================================================================================
costume_change_rate       characters change clothes between scenes (civilian and costume): per (character,
                          scene) the outfit (shirt colour and pattern, hat) differs from the previous scene's
lookalike_series_rate     look-alikes: two cast members share skin, hair colour, face shape and shirt and
                          differ only in hair style, eye colour or accessories
non_frontal_rate          three-quarter and profile views: features, ears and hair move with the head
closeup_rate              close-ups: face side over 35% of the panel's short side, shoulders out of frame
longshot_rate             long shots: face side under 40 px
occluded_rate             faces partly hidden (10-50% of the box) by a balloon, a panel border or a figure
extra_face_panel_rate     extras and crowds: panels with a face that belongs to no cast member
greyscale_series_rate     greyscale reprints: whole series printed in grey
print_effects             four-colour halftone dots, plate misregistration of 1-3 px, yellowed paper, JPEG
                          quality 60-90 (every page)
detector                  ``simple`` (today's near-perfect simulation) or ``calibrated`` to a real cartoon
                          detector: about 0.80 recall and 0.85 precision at IoU 0.5 after the 0.9 threshold and
                          NMS 0.2, box jitter about 10% of the face side, high-confidence false positives on
                          faceless regions (background, balloons, hands)
========================  ==================================================================================

Every decision of a realism factor is drawn from its own random stream ``(seed, series, REALISM_STREAM)``,
so the ``clean`` preset (all knobs at 0) draws nothing from the main stream that today's generator did not:
it writes the same bytes, and a knob at rate 0 changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .cast import CAST_PALETTES, HAIR_STYLES

__all__ = ["Realism", "PRESETS", "realism_preset", "RealismCounter", "REALISM_STREAM", "OUTFIT_PATTERNS", "series_draws"]

REALISM_STREAM = 7919  # third element of the realism random stream's seed (the main stream is (seed, series))
OUTFIT_PATTERNS = ("plain", "stripes", "dots", "check")
CLOSEUP_SIDE = 0.35  # close-up: face side over this share of the panel's short side, shoulders out of frame
LONGSHOT_SIDE = 40  # long shot: face side under this many pixels


@dataclass(frozen=True)
class Realism:
    """One point of the realism ladder (rates are fractions in [0, 1]); the default is ``clean``."""

    costume_change_rate: float = 0.0
    lookalike_series_rate: float = 0.0
    non_frontal_rate: float = 0.0
    closeup_rate: float = 0.0
    longshot_rate: float = 0.0
    occluded_rate: float = 0.0
    extra_face_panel_rate: float = 0.0
    greyscale_series_rate: float = 0.0
    print_effects: bool = False
    detector: str = "simple"
    # the calibrated detector: share of true faces missed, box jitter (sd as a share of the face side) and
    # high-confidence false positives per panel
    detector_miss_rate: float = 0.18
    detector_jitter: float = 0.10
    detector_false_positives: float = 0.20

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_rate") and not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"realism {f.name} must be in [0, 1], got {v}")
        if self.detector not in ("simple", "calibrated"):
            raise ValueError(f"realism detector must be 'simple' or 'calibrated', got {self.detector!r}")
        if self.closeup_rate + self.longshot_rate > 1.0:
            raise ValueError("realism closeup_rate + longshot_rate must be at most 1")

    @property
    def is_clean(self) -> bool:
        return self == Realism()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Realism] = {
    "clean": Realism(),
    # at least 0.3 / 0.3 / 0.4 / 0.2 / 0.15 / 0.1 / 0.2 / 0.25 as measured: the per-face and per-pair draws get a
    # small margin over those floors so that a 40-series data set does not fall under them by chance
    "real": Realism(
        costume_change_rate=0.32, lookalike_series_rate=0.3, non_frontal_rate=0.43, closeup_rate=0.22,
        longshot_rate=0.15, occluded_rate=0.11, extra_face_panel_rate=0.22, greyscale_series_rate=0.25,
        print_effects=True, detector="calibrated", detector_miss_rate=0.15,
    ),
    "hard": Realism(
        costume_change_rate=0.6, lookalike_series_rate=0.6, non_frontal_rate=0.7, closeup_rate=0.3,
        longshot_rate=0.25, occluded_rate=0.25, extra_face_panel_rate=0.4, greyscale_series_rate=0.5,
        print_effects=True, detector="calibrated", detector_miss_rate=0.28, detector_jitter=0.14,
        detector_false_positives=0.35,
    ),
}


def realism_preset(name: str | Realism) -> Realism:
    """The :class:`Realism` of preset ``name`` (``clean``, ``real``, ``hard``); a Realism passes through."""
    if isinstance(name, Realism):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown realism preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


# --------------------------------------------------------------------------------------------------
# Cast and scene decisions
# --------------------------------------------------------------------------------------------------


def series_draws(realism: Realism, seed: int, n_series: int, series: int) -> tuple[bool, bool]:
    """(look-alike pair, greyscale print) of ``series``: exactly ``round(rate * n_series)`` series of the data
    set get each, chosen by a permutation of the series drawn from ``(seed, REALISM_STREAM)``."""
    out = []
    for k, rate in enumerate((realism.lookalike_series_rate, realism.greyscale_series_rate)):
        perm = np.random.default_rng([seed, REALISM_STREAM, k]).permutation(n_series)
        out.append(bool(int(np.flatnonzero(perm == series)[0]) < round(rate * n_series)))
    return out[0], out[1]


def make_lookalikes(cast: list[dict], on: bool, rr: np.random.Generator) -> bool:
    """When ``on``, make cast member 1 a look-alike of member 0 (in place): same skin, hair colour, face shape
    and shirt; another eye colour (the hair styles already differ). Returns whether it did."""
    if len(cast) < 2 or not on:
        return False
    a, b = cast[0], cast[1]
    b["skin"], b["hair_colour"], b["face_shape"], b["shirt"] = a["skin"], a["hair_colour"], a["face_shape"], a["shirt"]
    eyes = [e for e in CAST_PALETTES["eyes"] if e != a["eye_colour"]]
    b["eye_colour"] = eyes[int(rr.integers(len(eyes)))]
    b["lookalike_of"] = a["id"]
    return True


def first_outfit(ch: dict) -> dict:
    """The outfit a character first appears in: the cast's shirt, plain, with or without its hat."""
    return {"shirt": ch["shirt"], "pattern": "plain", "hat": "hat" in ch["accessories"]}


def changed_outfit(rr: np.random.Generator, outfit: dict) -> dict:
    """Another outfit: a new shirt colour, a pattern, and the hat put on or taken off half the time."""
    shirts = [s for s in CAST_PALETTES["shirt"] if s != outfit["shirt"]]
    hat = (not outfit["hat"]) if rr.random() < 0.5 else outfit["hat"]
    return {"shirt": shirts[int(rr.integers(len(shirts)))],
            "pattern": OUTFIT_PATTERNS[int(rr.integers(len(OUTFIT_PATTERNS)))], "hat": hat}


def dressed(ch: dict, outfit: dict) -> dict:
    """A copy of character ``ch`` wearing ``outfit`` (the drawing code reads shirt, pattern and accessories)."""
    if outfit == first_outfit(ch):
        return ch
    acc = [a for a in ch["accessories"] if a != "hat"] + (["hat"] if outfit["hat"] else [])
    return {**ch, "shirt": outfit["shirt"], "pattern": outfit["pattern"], "accessories": acc}


def make_extra(rr: np.random.Generator, series: int, n: int) -> dict:
    """A face that belongs to no cast member (an extra, a passer-by): random palette, dull clothes."""
    pick = lambda names: names[int(rr.integers(len(names)))]  # noqa: E731
    acc = [a for a, p in (("hat", 0.3), ("glasses", 0.15), ("moustache", 0.2)) if rr.random() < p]
    return {
        "id": "", "extra": f"{series}_x{n}",
        "skin": pick(list(CAST_PALETTES["skin"])[:6]), "hair_colour": pick(["black", "brown", "blonde", "white"]),
        "hair_style": pick(list(HAIR_STYLES)), "eye_colour": pick(list(CAST_PALETTES["eyes"])[:4]),
        "face_shape": pick(["round", "oval", "square", "long"]), "shirt": pick(["black", "white", "blue", "teal"]),
        "accessories": acc, "accent": pick(list(CAST_PALETTES["accent"])),
    }


class RealismCounter:
    """What the realism factors did in one series; summed over series into the manifest's ``realism`` block."""

    KEYS = ("faces", "panels", "costume_pairs", "costume_changed", "non_frontal", "closeup", "longshot",
            "occluded", "extra_face_panels", "extra_faces", "lookalike_series", "greyscale_series")

    def __init__(self):
        self.n = {k: 0 for k in self.KEYS}
        self.jpeg_quality: list[int] = []

    def add(self, key: str, v: int = 1) -> None:
        self.n[key] += int(v)

    def count_face(self, box, W: int, H: int, view: str, covered: float) -> None:
        """One drawn face: its true box (x1, y1, x2, y2), view and the share of its box an occluder covers."""
        x1, y1, x2, y2 = box
        side = max(x2 - x1, y2 - y1)
        self.n["faces"] += 1
        self.n["non_frontal"] += int(view != "front")
        shoulders_out = y2 + 0.2 * (y2 - y1) >= H
        self.n["closeup"] += int(side > CLOSEUP_SIDE * min(W, H) and shoulders_out)
        self.n["longshot"] += int(side < LONGSHOT_SIDE)
        self.n["occluded"] += int(0.1 <= covered <= 0.5)

    def to_dict(self) -> dict:
        return {**self.n, "jpeg_quality": self.jpeg_quality}


def realism_block(realism: Realism, per_series: list[dict], detection: dict | None) -> dict:
    """The manifest's ``realism`` block: the knobs, and every rate as measured over the written data."""
    tot = {k: sum(int(r[k]) for r in per_series) for k in RealismCounter.KEYS}
    q = [v for r in per_series for v in r["jpeg_quality"]]
    rate = lambda a, b: round(a / b, 4) if b else 0.0  # noqa: E731
    out = {
        "preset": next((k for k, v in PRESETS.items() if v == realism), "custom"),
        "settings": realism.as_dict(),
        "costume_change_rate": rate(tot["costume_changed"], tot["costume_pairs"]),
        "lookalike_series_rate": rate(tot["lookalike_series"], len(per_series)),
        "non_frontal_rate": rate(tot["non_frontal"], tot["faces"]),
        "closeup_rate": rate(tot["closeup"], tot["faces"]),
        "longshot_rate": rate(tot["longshot"], tot["faces"]),
        "occluded_rate": rate(tot["occluded"], tot["faces"]),
        "extra_face_panel_rate": rate(tot["extra_face_panels"], tot["panels"]),
        "greyscale_series_rate": rate(tot["greyscale_series"], len(per_series)),
        "print_effects": bool(realism.print_effects),
        "jpeg_quality": [min(q), max(q)] if q else None,
        "counts": tot,
    }
    if detection is not None:
        out["detector"] = detection
    return out
