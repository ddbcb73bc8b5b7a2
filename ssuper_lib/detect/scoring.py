"""Detection evaluation against ground truth (synthetic data): precision, recall and AP@0.5, and the sweep
over confidence thresholds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import resolve_path
from ..data.boxes import box_iou
from ..data.comics import Annotations, Box, read_annotations
from .filters import filter_annotations

__all__ = ["read_ground_truth", "evaluate_detections", "confidence_sweep", "evaluate_dataset"]


def read_ground_truth(gt_csv: str | Path) -> "pandas.DataFrame":  # noqa: F821
    """The synthetic ``ground_truth.csv`` (columns panel, x1, y1, x2, y2, character, series)."""
    import pandas as pd

    path = Path(gt_csv)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {path} not found (only synthetic datasets have one)")
    df = pd.read_csv(path, dtype={"panel": str, "character": str, "series": str})
    missing = {"panel", "x1", "y1", "x2", "y2"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return df


def _gt_boxes(gt, gt_min_side: int) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    for row in gt[["panel", "x1", "y1", "x2", "y2"]].itertuples(index=False):
        if max(row.x2 - row.x1, row.y2 - row.y1) >= gt_min_side:
            out.setdefault(row.panel, []).append([row.x1, row.y1, row.x2, row.y2])
    return {k: np.array(v, np.float64) for k, v in out.items()}


def evaluate_detections(detections: dict[str, list[Box]], gt, iou_thold: float = 0.5, gt_min_side: int = 0) -> dict:
    """Precision, recall and AP (all-point interpolated, VOC style) of ``detections`` at IoU ``iou_thold``.

    ``gt`` is a ground-truth DataFrame or a ``{panel: (M, 4) array}`` dict; ground-truth faces with max side
    < ``gt_min_side`` are left out (they cannot survive the size filter). Each ground-truth face matches at
    most one detection (greedy by score); a duplicate is a false positive.
    """
    gt_boxes = gt if isinstance(gt, dict) else _gt_boxes(gt, gt_min_side)
    n_gt = int(sum(len(v) for v in gt_boxes.values()))
    records = []  # (score, is_tp)
    for key, boxes in detections.items():
        if not boxes:
            continue
        order = sorted(range(len(boxes)), key=lambda j: -boxes[j].conf)
        g = gt_boxes.get(key)
        used = np.zeros(0 if g is None else len(g), bool)
        ious = box_iou(np.array([boxes[j].as_list() for j in order]), g) if g is not None else None
        for r, j in enumerate(order):
            tp = False
            if ious is not None and ious.shape[1]:
                cand = np.where(used, -1.0, ious[r])
                best = int(np.argmax(cand))
                if cand[best] >= iou_thold:
                    used[best] = True
                    tp = True
            records.append((boxes[j].conf, tp))
    records.sort(key=lambda t: -t[0])
    tps = np.array([t for _, t in records], dtype=bool)
    n_det, n_tp = len(tps), int(tps.sum())
    ap = 0.0
    if n_det and n_gt:
        ctp = np.cumsum(tps)
        rec = ctp / n_gt
        prec = ctp / np.arange(1, n_det + 1)
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        ap = float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    return {
        "n_det": n_det,
        "n_gt": n_gt,
        "tp": n_tp,
        "fp": n_det - n_tp,
        "fn": n_gt - n_tp,
        "precision": n_tp / n_det if n_det else float("nan"),
        "recall": n_tp / n_gt if n_gt else float("nan"),
        "ap50": ap,
    }


def confidence_sweep(
    ann: Annotations, gt, thresholds: Iterable[float] = tuple(np.round(np.arange(0.0, 1.0, 0.05), 2)) + (0.9, 0.95, 0.99),
    nms_iou: float = 0.2, face_thold: int = 32, iou_thold: float = 0.5,
) -> "pandas.DataFrame":  # noqa: F821
    """One row per confidence threshold: the filtered detections' counts, precision, recall and AP@``iou_thold``.

    Ground truth is restricted to faces with max side >= ``face_thold`` (the ones the pipeline can keep).
    """
    import pandas as pd

    gt_boxes = gt if isinstance(gt, dict) else _gt_boxes(gt, face_thold)
    rows = []
    for t in sorted(set(float(x) for x in thresholds)):
        kept, rep = filter_annotations(ann, conf_thold=t, nms_iou=nms_iou, face_thold=face_thold)
        ev = evaluate_detections(kept, gt_boxes, iou_thold=iou_thold)
        rows.append({"conf_thold": t, "nms_iou": nms_iou, "face_thold": face_thold, "iou_thold": iou_thold,
                     "boxes_in": rep.boxes_in, "after_conf": rep.after_conf, "after_nms": rep.after_nms, **ev})
    return pd.DataFrame(rows)


def evaluate_dataset(data_cfg, out_csv: str | Path | None = None, thresholds: Iterable[float] | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Confidence sweep of ``data_cfg``'s annotation files against its ground truth (synthetic data).

    Uses the configured NMS IoU and minimum face side; the row of the configured confidence threshold has
    ``configured = True``. Written to ``out_csv`` (e.g. ``data_stats/detections.csv``) when given, atomically.
    """
    if not data_cfg.ground_truth_path or not resolve_path(data_cfg.ground_truth_path).is_file():
        raise FileNotFoundError(f"data.ground_truth_path={data_cfg.ground_truth_path!r}: no ground truth to evaluate against")
    ann = read_annotations(resolve_path(data_cfg.annot_path))
    gt = read_ground_truth(resolve_path(data_cfg.ground_truth_path))
    ths = list(thresholds) if thresholds is not None else [round(x, 2) for x in np.arange(0.0, 1.0, 0.05)] + [0.9, 0.95, 0.99]
    df = confidence_sweep(ann, gt, ths + [data_cfg.conf_thold], data_cfg.nms_iou, data_cfg.face_thold)
    df["configured"] = np.isclose(df["conf_thold"], data_cfg.conf_thold)
    if out_csv is not None:
        out = Path(out_csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        df.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, out)
    return df
