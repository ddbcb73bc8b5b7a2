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


def _detections_calibrated(rr: np.random.Generator, faces, W: int, H: int, counts: dict, realism,
                           hard: list[bool], distractors: list) -> list[Box]:
    """Raw output of a detector calibrated to a real cartoon-face detector (realism ``detector: calibrated``).

    A true face is missed with probability ``realism.detector_miss_rate``, more often when it is small,
    turned or hidden (``hard[i]``); a hit's box is jittered by ``realism.detector_jitter`` of the face side
    (some hits then fall under IoU 0.5). Duplicates and low-confidence false positives are removed by NMS 0.2
    and the 0.9 threshold as before; a Poisson number (mean ``realism.detector_false_positives``) of
    high-confidence false positives lands on faceless regions: ``distractors`` (balloons, hands, props) or
    the background."""
    out: list[Box] = []
    m = realism.detector_miss_rate
    for f, is_hard in zip(faces, hard):
        if rr.random() < min(0.9, m * (1.9 if is_hard else 0.6)):
            counts["missed"] += 1
            continue
        main = _jitter(rr, f, realism.detector_jitter, W, H)
        conf = min(round(0.9 + 0.1 * float(rr.beta(3.0, 1.3)), 4), 0.9999)
        out.append(Box(*main, conf))
        counts["detection"] += 1
        if rr.random() < 0.3:
            dup = _jitter(rr, main, 0.05, W, H, scale=float(rr.uniform(0.9, 1.15)))
            out.append(Box(*(dup if _iou(dup, main) > 0.35 else main), round(max(0.3, conf - float(rr.uniform(0.005, 0.25))), 4)))
            counts["duplicate"] += 1
    for k in range(int(rr.poisson(0.6)) + int(rr.poisson(realism.detector_false_positives))):
        high = rr.random() < realism.detector_false_positives / (0.6 + realism.detector_false_positives)
        for _ in range(10):
            if distractors and rr.random() < 0.6:
                b = distractors[int(rr.integers(len(distractors)))]
                s = float(np.clip(min(b[2] - b[0], b[3] - b[1]) * rr.uniform(0.4, 0.9), 32, 140))
                x = float(rr.uniform(b[0], max(b[0] + 1.0, b[2] - s)))
                y = float(rr.uniform(b[1], max(b[1] + 1.0, b[3] - s)))
            else:
                s = float(rr.uniform(32, 110))
                x, y = float(rr.uniform(0, max(1.0, W - s))), float(rr.uniform(0, max(1.0, H - s)))
            cand = _int_box((x, y, x + s * float(rr.uniform(0.8, 1.25)), y + s), W, H)
            if all(_iou(cand, f) < 0.05 for f in faces):
                conf = float(rr.uniform(0.9, 0.99)) if high else float(rr.uniform(0.3, 0.89))
                out.append(Box(*cand, round(conf, 4)))
                counts["false_positive_high" if high else "false_positive_low"] += 1
                break
    order = rr.permutation(len(out))
    return [out[i] for i in order]


def kept_after_filters(boxes: list[Box], conf_thold: float = 0.9, nms_iou: float = 0.2) -> list[Box]:
    """The boxes a pipeline keeps: confidence >= ``conf_thold``, then greedy NMS at ``nms_iou``."""
    kept: list[Box] = []
    for b in sorted((b for b in boxes if b.conf >= conf_thold), key=lambda b: -b.conf):
        if all(_iou(b.as_list(), k.as_list()) <= nms_iou for k in kept):
            kept.append(b)
    return kept


def match_counts(kept: list[Box], truth, iou_thold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, kept boxes, true faces) of one panel: greedy one-to-one matching at ``iou_thold``."""
    used: set[int] = set()
    tp = 0
    for b in sorted(kept, key=lambda b: -b.conf):
        best, j_best = iou_thold, -1
        for j, t in enumerate(truth):
            iou = _iou(b.as_list(), t) if j not in used else 0.0
            if iou >= best:
                best, j_best = iou, j
        if j_best >= 0:
            used.add(j_best)
            tp += 1
    return tp, len(kept), len(truth)
