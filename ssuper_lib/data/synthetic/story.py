"""One series' realism decisions: outfits per scene, close-ups, long shots, extras, print and what they did.

:class:`_Story` is the realism side of the series loop in :mod:`.generator`. Every decision is drawn from the
realism stream ``rr``, never from the series' main stream, so at rate 0 a factor changes nothing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .detector import kept_after_filters, match_counts
from .printing import page_settings, print_page, to_greyscale
from .realism import (CLOSEUP_SIDE, LONGSHOT_SIDE, Realism, RealismCounter, changed_outfit, dressed, first_outfit,
                      make_extra, make_lookalikes)

JPEG_QUALITY = 85  # every clean panel; printed pages draw theirs from 60-90


class _Story:
    """Realism state of one series: the cast's current outfits, the page's print settings, the counters."""

    def __init__(self, realism: Realism, rr: np.random.Generator, series: int, cast: list[dict],
                 series_draws: tuple[bool, bool] = (False, False)):
        self.realism, self.rr, self.series = realism, rr, series
        self.counter = RealismCounter()
        if make_lookalikes(cast, series_draws[0], rr):
            self.counter.add("lookalike_series")
        self.grey = bool(series_draws[1])
        self.counter.add("greyscale_series", int(self.grey))
        self.outfit = {ch["id"]: first_outfit(ch) for ch in cast}
        self.appeared: set[str] = set()  # characters seen in an earlier scene
        self.scene_seen: set[str] = set()
        self.page = page_settings(rr) if realism.print_effects else None
        self.n_extra = 0
        self.costume_offset = float(rr.random())
        self.detection = {"true_positives": 0, "kept": 0, "faces": 0}
        # a close-up panel holds one face: the panel probability that gives ``closeup_rate`` of the faces
        # (faces per other panel: about 1.6 cast faces, plus about 1.4 extras in a share of the panels)
        r, m = realism.closeup_rate, 1.6 + 1.4 * realism.extra_face_panel_rate
        # (about 7% of the tries fail: a panel without a character, or a face that found no room at that size)
        self.p_closeup = min(1.0, r * m / (1.0 - r + r * m) / 0.93) if r > 0 else 0.0
        self.p_long = min(1.0, realism.longshot_rate / max(1e-9, 1.0 - realism.closeup_rate))
        # extras are tried in the panels that are no close-up; about 85% of the tries find room
        self.p_extra = min(1.0, realism.extra_face_panel_rate / ((1.0 - self.p_closeup) * 0.85))

    def new_scene(self) -> None:
        self.appeared |= self.scene_seen
        self.scene_seen = set()

    def new_page(self) -> None:
        if self.realism.print_effects:
            self.page = page_settings(self.rr)

    def _wear(self, ch: dict) -> dict:
        """``ch`` in its outfit of this scene (changed on its first appearance in the scene, at the rate)."""
        cid = ch["id"]
        if cid not in self.scene_seen:
            self.scene_seen.add(cid)
            if cid in self.appeared:
                self.counter.add("costume_pairs")
                # balanced draws: after n pairs floor(rate * n + offset) have changed, so every series changes
                # at the rate (not just on average) and the choice of pairs still looks random
                due = int(np.floor(self.realism.costume_change_rate * self.counter.n["costume_pairs"] + self.costume_offset))
                if due > self.counter.n["costume_changed"]:
                    self.outfit[cid] = changed_outfit(self.rr, self.outfit[cid])
                    self.counter.add("costume_changed")
        return dressed(ch, self.outfit[cid])

    def panel(self, chars: list[dict], W: int, H: int) -> tuple[list[dict], dict]:
        """The characters drawn in one panel (outfits, extras) and the panel's realism decisions."""
        rr, re = self.rr, self.realism
        chars = [self._wear(ch) for ch in chars]
        closeup = None
        sides: list = [None] * len(chars)
        if chars and rr.random() < self.p_closeup:
            chars, closeup = chars[:1], float(rr.uniform(-0.12, 0.1))
            sides = [float(rr.uniform(CLOSEUP_SIDE + 0.02, 0.55)) * min(W, H)]
        else:
            sides = [float(rr.uniform(26, LONGSHOT_SIDE - 1)) if rr.random() < self.p_long else None for _ in chars]
            if rr.random() < self.p_extra:
                for _ in range(1 + int(rr.random() < 0.35)):
                    chars.append(make_extra(rr, self.series, self.n_extra))
                    sides.append(float(rr.uniform(28, 70)))
                    self.n_extra += 1
        return chars, {"rr": rr, "sides": sides, "closeup": closeup, "non_frontal_rate": re.non_frontal_rate,
                       "occluded_rate": re.occluded_rate}

    def printed(self, img: Image.Image) -> tuple[Image.Image, int]:
        """The panel as printed (greyscale series, print effects) and its JPEG quality."""
        if self.page is not None:
            img = print_page(img, self.page, grey=self.grey)
            self.counter.jpeg_quality.append(self.page["quality"])
            return img, self.page["quality"]
        if self.grey:
            img = to_greyscale(img)
        return img, JPEG_QUALITY

    def detector_hints(self, boxes, W: int, H: int, placed, real: dict) -> tuple[list[bool], list]:
        """Per true face whether it is hard to detect (small, profile, hidden); faceless distractor regions."""
        hard = []
        for b, view, cov in zip(boxes, real.get("views", []), real.get("covered", [])):
            hard.append(max(b[2] - b[0], b[3] - b[1]) < LONGSHOT_SIDE or view == "profile" or cov >= 0.1)
        distractors = list(real.get("balloons", []))
        for b, _ in placed:  # hands and props: the region beside a figure's torso
            fw, fh = b[2] - b[0], b[3] - b[1]
            side = -1 if self.rr.random() < 0.5 else 1
            cx = (b[0] + b[2]) / 2 + side * 1.2 * fw
            distractors.append((cx - 0.5 * fw, b[3] + 0.9 * fh, cx + 0.5 * fw, min(H, b[3] + 2.0 * fh)))
        return hard, [d for d in distractors if d[2] - d[0] > 8 and d[3] - d[1] > 8]

    def count_panel(self, boxes, W: int, H: int, placed, real: dict, detections) -> None:
        """Count the panel's faces, extras and (after the 0.9 threshold and NMS 0.2) its detection matches."""
        c = self.counter
        c.add("panels")
        views, covered = real.get("views", ["front"] * len(boxes)), real.get("covered", [0.0] * len(boxes))
        for b, view, cov in zip(boxes, views, covered):
            c.count_face(b, W, H, view, cov)
        n_extra = sum(1 for _, ch in placed if not ch["id"])
        c.add("extra_faces", n_extra)
        c.add("extra_face_panels", int(n_extra > 0))
        tp, kept, faces = match_counts(kept_after_filters(detections), boxes)
        self.detection["true_positives"] += tp
        self.detection["kept"] += kept
        self.detection["faces"] += faces
