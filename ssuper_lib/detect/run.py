"""Running a detector over a panel root: one annotation file per series in the original format, written
atomically; resumable (finished series are skipped) and shardable (``shard="i/n"``).

Differences from the original (docs/original.md 4.4): the external detector rewrote a series file in place, so
a killed run lost the series in progress and had to be restarted by hand; here each series file appears
only once complete (temp file + rename) and a rerun continues where it stopped. Unreadable panels are
skipped and reported instead of crashing the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data.comics import Box, indented_list, list_panels, list_series, write_annotation_file
from .base import Detector

__all__ = ["parse_shard", "shard_series", "DetectionRunReport", "run_detector"]


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> (i, n); None -> (0, 1)."""
    if shard in (None, ""):
        return 0, 1
    try:
        i, n = (int(v) for v in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"shard {shard!r}: expected 'i/n' with integers, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {shard!r}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_series(series: Sequence[str], shard: str | None) -> list[str]:
    """Series handled by shard ``i/n``: every n-th series of the natural order, starting at i (balanced)."""
    i, n = parse_shard(shard)
    return [s for k, s in enumerate(series) if k % n == i]


@dataclass
class DetectionRunReport:
    """What :func:`run_detector` did: series written / skipped (already finished), boxes, unreadable panels."""

    shard: str = "0/1"
    series_total: int = 0  # series of this shard
    series_written: list[str] = field(default_factory=list)
    series_skipped: list[str] = field(default_factory=list)
    panels: int = 0
    boxes: int = 0
    corrupt: list[str] = field(default_factory=list)  # "series/page_panel.jpg: reason"

    def __str__(self) -> str:
        lines = [
            f"shard {self.shard}: {self.series_total} series, {len(self.series_written)} written, "
            f"{len(self.series_skipped)} already finished (skipped); {self.panels} panels, {self.boxes} boxes; "
            f"{len(self.corrupt)} unreadable panels skipped"
        ]
        return "\n".join(lines + indented_list(self.corrupt))


def _load_panel(path: Path, needs_pixels: bool):
    """Open (and fully decode when the detector needs pixels) a panel; raises on unreadable files."""
    from PIL import Image

    im = Image.open(path)  # parses the header: rejects files that are not images
    if needs_pixels:
        im.load()  # full decode: rejects truncated or damaged image data
    return im


def run_detector(
    detector: Detector,
    panel_root: str | Path,
    annot_out: str | Path,
    shard: str | None = "0/1",
    conf_floor: float = 0.05,
    series: Sequence[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
) -> DetectionRunReport:
    """Run ``detector`` over ``panel_root/<series>/*.jpg`` and write ``annot_out/<series>.txt`` (original format).

    * Boxes with score < ``conf_floor`` are not written (keep it low: the kit's filter runs later and the
      notebook's sliders need the low-confidence boxes too); corners are floored to integers as the original.
    * Resumable: a series whose file exists is skipped (unless ``overwrite``); files are written atomically,
      so a killed run leaves only finished series behind and the rerun continues with the next one.
    * Shardable: ``shard="i/n"`` handles every n-th series (run n machines with i = 0..n-1 into one folder).
    * An unreadable panel is skipped and listed in the report; the series is still written.
    """
    from tqdm.auto import tqdm

    panel_root, annot_out = Path(panel_root), Path(annot_out)
    annot_out.mkdir(parents=True, exist_ok=True)
    all_series = list(series) if series is not None else list_series(panel_root)
    mine = shard_series(all_series, shard)
    i, n = parse_shard(shard)
    report = DetectionRunReport(shard=f"{i}/{n}", series_total=len(mine))
    needs_pixels = getattr(detector, "needs_pixels", True)
    todo = []
    for s in mine:
        if (annot_out / f"{s}.txt").is_file() and not overwrite:
            report.series_skipped.append(s)
        else:
            todo.append(s)
    bar = tqdm(todo, desc=f"detect shard {i}/{n}", unit="series", disable=not progress)
    for s in bar:
        rows: list[tuple[str, Box]] = []
        names = list_panels(panel_root, s)
        for start in range(0, len(names), batch_size):
            keys, images = [], []
            for name in names[start : start + batch_size]:
                key = f"{s}/{name}"
                try:
                    images.append(_load_panel(panel_root / s / name, needs_pixels))
                    keys.append(key)
                except Exception as exc:  # noqa: BLE001 - any decoding failure counts as a corrupt panel
                    report.corrupt.append(f"{key}: {type(exc).__name__}: {exc}")
            if not images:
                continue
            try:
                dets = detector.detect(images)
            finally:
                for im in images:
                    im.close()
            report.panels += len(images)
            for key, det in zip(keys, dets):
                for (x1, y1, x2, y2), sc in zip(det.boxes, det.scores):
                    if sc < conf_floor:
                        continue
                    b = Box(int(math.floor(x1)), int(math.floor(y1)), int(math.floor(x2)), int(math.floor(y2)), float(sc))
                    if b.x2 > b.x1 and b.y2 > b.y1:
                        rows.append((key, b))
        write_annotation_file(annot_out / f"{s}.txt", rows)
        report.boxes += len(rows)
        report.series_written.append(s)
    return report
