"""The simulated detector: raw, detector-style face boxes of one synthetic panel."""

from __future__ import annotations

import numpy as np

from ..comics import Box
from .panels import _int_box, _iou


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
