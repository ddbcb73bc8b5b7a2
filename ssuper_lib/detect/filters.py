"""Box filtering: confidence threshold -> NMS (``torchvision.ops.nms``) -> minimum face side, with the count
after each stage in a :class:`FilterReport`.

The original applied NMS inside the detector and the confidence / size filter later in preprocessing
(docs/original.md 4.4); here the three stages are one configurable function.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

import numpy as np

from ..data.comics import Annotations, Box

__all__ = ["FilterReport", "filter_boxes", "filter_panel_boxes", "filter_annotations"]


@dataclass
class FilterReport:
    """Box counts after each filtering stage (and the settings that produced them)."""

    conf_thold: float = 0.9
    nms_iou: float = 0.2
    face_thold: int = 32
    panels: int = 0  # panels with at least one input box
    boxes_in: int = 0
    after_conf: int = 0
    after_nms: int = 0
    after_size: int = 0
    panels_with_faces: int = 0  # panels with at least one box after every stage

    def add(self, other: "FilterReport") -> None:
        for k in ("panels", "boxes_in", "after_conf", "after_nms", "after_size", "panels_with_faces"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.boxes_in} boxes in {self.panels} panels -> conf >= {self.conf_thold}: {self.after_conf} -> "
            f"NMS {self.nms_iou}: {self.after_nms} -> max side >= {self.face_thold}: {self.after_size} "
            f"({self.panels_with_faces} panels with faces)"
        )


def filter_boxes(
    boxes: np.ndarray, scores: np.ndarray, conf_thold: float = 0.9, nms_iou: float = 0.2, face_thold: int = 32,
    report: FilterReport | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept by the three stages and, for every input box, the stage that removed it.

    Returns ``(keep, removed_by)``: ``keep`` the kept indices in input order; ``removed_by`` an int array with
    0 = kept, 1 = confidence, 2 = NMS, 3 = size. NMS (``torchvision.ops.nms``) removes a box whose IoU with a
    higher-scoring kept box exceeds ``nms_iou``; the size rule keeps max(w, h) >= ``face_thold`` (the original's).
    """
    import torch
    from torchvision.ops import nms

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    removed = np.zeros(len(scores), dtype=np.int64)
    conf_ok = scores >= conf_thold
    removed[~conf_ok] = 1
    idx = np.flatnonzero(conf_ok)
    if len(idx) > 1:
        kept = nms(torch.from_numpy(boxes[idx]), torch.from_numpy(scores[idx]), float(nms_iou)).numpy()
        nms_mask = np.zeros(len(idx), bool)
        nms_mask[kept] = True
        removed[idx[~nms_mask]] = 2
        idx = np.sort(idx[nms_mask])
    n_nms = len(idx)
    sides = np.maximum(boxes[idx, 2] - boxes[idx, 0], boxes[idx, 3] - boxes[idx, 1])
    removed[idx[sides < face_thold]] = 3
    keep = idx[sides >= face_thold]
    if report is not None:
        report.panels += int(len(scores) > 0)
        report.boxes_in += len(scores)
        report.after_conf += int(conf_ok.sum())
        report.after_nms += n_nms
        report.after_size += len(keep)
        report.panels_with_faces += int(len(keep) > 0)
    return keep, removed


_F32 = struct.Struct("f")
_AREA_EXACT = float(2**24)  # float32 holds every integer below this: areas and their sums are exact


def _f32(x: float) -> float:
    """``x`` rounded to float32 (as torchvision's float32 kernels and numpy's float32 comparisons see it)."""
    return _F32.unpack(_F32.pack(x))[0]


def _filter_small(boxes: list[Box], conf_thold: float, nms_iou: float, face_thold: int,
                  report: FilterReport | None) -> list[int] | None:
    """:func:`filter_boxes` for one panel in plain Python (no array or tensor set-up: a COMICS-scale run filters
    ~700 k panels of 1-4 boxes). Kept indices in input order, or None where the result could depend on a detail
    of torchvision's kernel (equal scores: its sort order; areas beyond float32's exact integers); the caller
    then uses :func:`filter_boxes`. Same arithmetic as the kernels: scores and the threshold compared in float32,
    NMS by descending score with IoU = inter / (area_i + area_j - inter) rounded to float32 (integer
    coordinates: every term is exact; float64 division then rounding to float32 equals float32 division)."""
    for b in boxes:
        if any(type(v) is not int or abs(v) >= _AREA_EXACT for v in (b.x1, b.y1, b.x2, b.y2)):
            return None
    try:
        t32 = _f32(conf_thold)
        conf = [i for i, b in enumerate(boxes) if _f32(b.conf) >= t32]
    except OverflowError:  # a confidence beyond float32's range
        return None
    if len(conf) > 1:
        scores = [_f32(boxes[i].conf) for i in conf]
        if len(set(scores)) != len(scores):
            return None
        order = [i for _, i in sorted(zip(scores, conf), reverse=True)]
        area = {}
        for i in order:
            b = boxes[i]
            area[i] = (b.x2 - b.x1) * (b.y2 - b.y1)
            if area[i] >= _AREA_EXACT:
                return None
        kept, dead = [], set()
        for a, i in enumerate(order):
            if i in dead:
                continue
            kept.append(i)
            bi = boxes[i]
            for j in order[a + 1 :]:
                if j in dead:
                    continue
                bj = boxes[j]
                w = min(bi.x2, bj.x2) - max(bi.x1, bj.x1)
                h = min(bi.y2, bj.y2) - max(bi.y1, bj.y1)
                inter = max(0, w) * max(0, h)
                if _f32(inter / (area[i] + area[j] - inter)) > nms_iou:
                    dead.add(j)
        nms_kept = sorted(kept)
    else:
        nms_kept = conf
    keep = [i for i in nms_kept if max(boxes[i].x2 - boxes[i].x1, boxes[i].y2 - boxes[i].y1) >= face_thold]
    if report is not None:
        report.panels += 1
        report.boxes_in += len(boxes)
        report.after_conf += len(conf)
        report.after_nms += len(nms_kept)
        report.after_size += len(keep)
        report.panels_with_faces += int(len(keep) > 0)
    return keep


def filter_panel_boxes(
    boxes: list[Box], conf_thold: float = 0.9, nms_iou: float = 0.2, face_thold: int = 32, report: FilterReport | None = None,
    removed: bool = True,
) -> tuple[list[Box], list[tuple[Box, str]]]:
    """:func:`filter_boxes` on a list of :class:`Box`: ``(kept, [(removed box, "conf" | "nms" | "size")])``.

    ``removed=False`` skips the list of removed boxes (returned empty) and takes the plain-Python path of
    :func:`_filter_small` when it applies (the same result, ~20x faster on a panel of a few boxes).
    """
    if not boxes:
        return [], []
    if not removed:
        keep = _filter_small(boxes, conf_thold, nms_iou, face_thold, report)
        if keep is not None:
            return [boxes[i] for i in keep], []
    arr = np.array([b.as_list() for b in boxes], dtype=np.float32)
    keep, removed_by = filter_boxes(arr, [b.conf for b in boxes], conf_thold, nms_iou, face_thold, report)
    names = {1: "conf", 2: "nms", 3: "size"}
    return [boxes[i] for i in keep], [(b, names[int(r)]) for b, r in zip(boxes, removed_by) if r]


def filter_annotations(
    ann: Annotations, conf_thold: float = 0.9, nms_iou: float = 0.2, face_thold: int = 32
) -> tuple[dict[str, list[Box]], FilterReport]:
    """Filter every panel of ``ann``; returns ``({panel_key: kept boxes}, report)`` (panels left empty are dropped)."""
    report = FilterReport(conf_thold=conf_thold, nms_iou=nms_iou, face_thold=face_thold)
    out: dict[str, list[Box]] = {}
    for key, boxes in ann.boxes.items():
        kept, _ = filter_panel_boxes(boxes, conf_thold, nms_iou, face_thold, report, removed=False)
        if kept:
            out[key] = kept
    return out, report
