"""COMICS / Golden Age on-disk formats: panel listing, detector annotation files, sequence JSON.

Formats (docs/original.md 3.1), kept byte-compatible with the original so that existing detector outputs
and sequence files can be used as they are:

* panels: ``<panel_root>/<series>/<page>_<panel>.jpg``, listed in natural (digit-aware) order;
* annotations: one ``<series>.txt`` per series, a line per box ``<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf``
  (integer corners, float confidence); blank lines are ignored;
* sequences: a JSON dict ``{"0": sample, "1": sample, ...}`` where a sample is
  ``[[p1, p2, p3], [[crop1, face1], [crop2, face2], [crop3, face3]]]``, ``pi`` = ``"series/page_panel.jpg"``,
  crop and face = ``[x1, y1, x2, y2]`` in original-panel pixels (crop square, face square).

Differences from the original: a malformed annotation line is counted and reported with its file and
line number (the original crashed or, in older code, read the corners in another order); the
original's newline handling (dropping the last character of every line) is replaced by proper parsing;
a damaged JSON file raises :class:`DataFileError` naming it; :func:`panel_gaps` tells where a panel of a
series is missing on disk, so that no window of "consecutive" panels bridges it.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

__all__ = [
    "IMAGE_EXTENSIONS",
    "natural_key",
    "list_series",
    "list_panels",
    "Box",
    "MalformedLine",
    "Annotations",
    "annotation_files",
    "read_annotation_file",
    "read_annotations",
    "write_annotation_file",
    "SequenceSample",
    "read_sequences",
    "write_sequences",
    "parse_panel_name",
    "panel_gaps",
    "DataFileError",
    "read_json",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"(\d+)")


def indented_list(items: list, limit: int = 20) -> list[str]:
    """Report lines for the first ``limit`` items (indented), then "... and N more" (reports of skips)."""
    lines = [f"  {x}" for x in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2_10.jpg`` after ``2_9.jpg`` (digit runs compare as numbers)."""
    return tuple(int(tok) if tok.isdigit() else tok.lower() for tok in _DIGITS.split(str(name)))


def list_series(panel_root: str | Path) -> list[str]:
    """Series folder names under ``panel_root``, naturally sorted."""
    root = Path(panel_root)
    if not root.is_dir():
        raise FileNotFoundError(f"panel root {root} does not exist: point data.panel_path at the COMICS panels")
    return sorted((e.name for e in os.scandir(root) if e.is_dir()), key=natural_key)


def list_panels(panel_root: str | Path, series: str) -> list[str]:
    """Panel file names (``page_panel.jpg``) of one series, naturally sorted; non-image files are left out."""
    folder = Path(panel_root) / str(series)
    return sorted(
        (e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)),
        key=natural_key,
    )


def parse_panel_name(name: str) -> tuple[int, int]:
    """``"12_3.jpg"`` or ``"7/12_3.jpg"`` -> (page 12, panel 3)."""
    stem = Path(name).stem
    page, _, panel = stem.partition("_")
    return int(page), int(panel)


def _panel_number(name: str) -> tuple[int, int] | None:
    """(page, panel) of ``page_panel.ext``, or None for a name of another form (no string-to-Path: ~1 M calls)."""
    page, sep, panel = name.rsplit(".", 1)[0].partition("_")
    return (int(page), int(panel)) if sep and page.isdigit() and panel.isdigit() else None


def panel_gaps(names: list[str], missing: Iterable[str] = ()) -> list[bool]:
    """``gaps[i]``: a panel is missing between ``names[i]`` and ``names[i + 1]`` (naturally sorted names of one
    series on disk). A panel is missing where the panel number skips one on a page (``0_2``, ``0_4``), where a
    page does not start at the series' first panel number (``0_5``, ``1_1``), and where a name of ``missing``
    (e.g. annotated panels that are not on disk) sorts between the two. Pages themselves may be skipped."""
    nums = [_panel_number(n) for n in names]
    first = min((n[1] for n in nums if n is not None), default=0)
    gaps = [a is not None and b is not None and (b[1] != a[1] + 1 if a[0] == b[0] else b[1] != first)
            for a, b in zip(nums, nums[1:])]
    missing = list(missing)
    if missing and len(names) > 1:
        absent = [_panel_number(m) for m in missing]
        if None in nums or None in absent:  # names of another form: compare natural keys (slower)
            nums, absent = [natural_key(n) for n in names], [natural_key(m) for m in missing]
        for m in absent:  # between names[j - 1] and names[j]
            j = bisect.bisect_left(nums, m)
            if 0 < j < len(names) and nums[j] != m:
                gaps[j - 1] = True
    return gaps


@dataclass(frozen=True)
class Box:
    """A detector box in original-panel pixels with its confidence."""

    x1: int
    y1: int
    x2: int
    y2: int
    conf: float = 1.0

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def max_side(self) -> int:
        return max(self.width, self.height)

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class MalformedLine:
    """An annotation line that could not be parsed; kept so that nothing is lost silently."""

    path: str
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}: {self.text!r}"


@dataclass
class Annotations:
    """Boxes per panel (key ``"series/page_panel.jpg"``, value list of boxes in file order)."""

    boxes: dict[str, list[Box]] = field(default_factory=dict)
    malformed: list[MalformedLine] = field(default_factory=list)
    files_read: int = 0

    @property
    def n_boxes(self) -> int:
        return sum(len(v) for v in self.boxes.values())

    def merge(self, other: "Annotations") -> None:
        for key, boxes in other.boxes.items():
            self.boxes.setdefault(key, []).extend(boxes)
        self.malformed.extend(other.malformed)
        self.files_read += other.files_read

    def report(self) -> str:
        """One-paragraph summary, listing malformed lines (at most 20)."""
        lines = [
            f"{self.files_read} annotation files, {len(self.boxes)} panels with boxes, {self.n_boxes} boxes, "
            f"{len(self.malformed)} malformed lines skipped"
        ]
        return "\n".join(lines + indented_list(self.malformed))


def _parse_line(text: str) -> tuple[str, Box] | str:
    parts = text.split()
    if len(parts) != 6:
        return f"expected 6 fields 'file x1 y1 x2 y2 conf', got {len(parts)}"
    name = parts[0]
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"first field {name!r} is not an image path"
    try:
        # int(v) equals int(float(v)) for short integer strings and is ~3x faster (1.5 M lines at COMICS scale)
        x1, y1, x2, y2 = (int(v) if len(v) < 15 and v.isdigit() else int(float(v)) for v in parts[1:5])
        conf = float(parts[5])
    except ValueError:
        return "coordinates and confidence must be numbers"
    if conf != conf:  # NaN
        return "confidence is NaN"
    if x2 <= x1 or y2 <= y1:
        return f"empty box ({x1}, {y1}, {x2}, {y2}): need x2 > x1 and y2 > y1"
    return name, Box(x1, y1, x2, y2, conf)


def read_annotation_file(path: str | Path) -> Annotations:
    """Read one ``<series>.txt``. Malformed lines are collected in ``.malformed``, never raised."""
    path = Path(path)
    ann = Annotations(files_read=1)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            parsed = _parse_line(text)
            if isinstance(parsed, str):
                ann.malformed.append(MalformedLine(str(path), line_no, text, parsed))
                continue
            name, box = parsed
            ann.boxes.setdefault(name, []).append(box)
    return ann


NO_PERSON_FILE = "no_person_frames.txt"  # panels where the face detector found nobody (FaceDetector's log)


def annotation_files(annot_root: str | Path, series: Iterable[str] | None = None) -> list[Path]:
    """The ``<series>.txt`` files under ``annot_root`` in natural order (or those of the given series that exist)."""
    root = Path(annot_root)
    if not root.is_dir():
        raise FileNotFoundError(f"annotation folder {root} does not exist: point data.annot_path at the detector outputs")
    if series is None:  # the detector's list of faceless panels (original and kit) is not a series file
        return sorted((p for p in root.glob("*.txt") if p.name != NO_PERSON_FILE), key=lambda p: natural_key(p.name))
    return [root / f"{s}.txt" for s in series if (root / f"{s}.txt").is_file()]


def read_annotations(annot_root: str | Path, series: Iterable[str] | None = None) -> Annotations:
    """Read every ``<series>.txt`` under ``annot_root`` (or only the given series; missing files are skipped)."""
    out = Annotations()
    for f in annotation_files(annot_root, series):
        out.merge(read_annotation_file(f))
    return out


def write_annotation_file(path: str | Path, rows: Iterable[tuple[str, Box]]) -> None:
    """Write ``(panel_key, box)`` rows in the original format, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for key, b in rows:
            fh.write(f"{key} {int(b.x1)} {int(b.y1)} {int(b.x2)} {int(b.y2)} {float(b.conf):.4f}\n")
    os.replace(tmp, path)


@dataclass
class SequenceSample:
    """One training sample: three consecutive panels, their square crops and face squares.

    ``faces[-1]`` is the target face (masked in the last panel); the other faces are the boxes the
    context crops were placed around.
    """

    panels: list[str]
    crops: list[list[int]]
    faces: list[list[int]]

    @property
    def series(self) -> str:
        return self.panels[0].split("/")[0]

    def to_original(self) -> list:
        return [list(self.panels), [[list(map(int, c)), list(map(int, f))] for c, f in zip(self.crops, self.faces)]]

    @classmethod
    def from_original(cls, item: list, where: str = "") -> "SequenceSample":
        try:
            panels, areas = item
            crops = [list(map(int, a[0])) for a in areas]
            faces = [list(map(int, a[1])) for a in areas]
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{where}: expected [[p1, p2, p3], [[crop, face], ...]], got {item!r}") from exc
        if len(panels) != len(crops) or any(len(c) != 4 for c in crops) or any(len(f) != 4 for f in faces):
            raise ValueError(f"{where}: panels, crops and faces do not match in length or a box is not 4 numbers")
        return cls(list(map(str, panels)), crops, faces)


class DataFileError(ValueError):
    """A data file (sequence JSON, split) that is damaged or cut short."""


def read_json(path: str | Path, what_to_do: str) -> object:
    """``json.loads`` of a file; a damaged or truncated one raises :class:`DataFileError` naming it and ``what_to_do``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DataFileError(f"{path}: not valid JSON{where} (damaged or cut short); {what_to_do}") from None


def read_sequences(path: str | Path) -> list[SequenceSample]:
    """Read a sequence JSON in the original format, in key order ("0", "1", ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sequence file {path} not found: run the preprocessing (notebook 02) first")
    data = read_json(path, "run the preprocessing again (python -m ssuper_lib.preprocess, or notebook 02)")
    if isinstance(data, dict):
        items = sorted(data.items(), key=lambda kv: natural_key(kv[0]))
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        raise ValueError(f"{path}: expected a JSON object {{'0': sample, ...}}, got {type(data).__name__}")
    return [SequenceSample.from_original(v, f"{path} sample {k}") for k, v in items]


def write_sequences(path: str | Path, samples: Iterable[SequenceSample]) -> None:
    """Write samples as ``{"0": ..., "1": ...}`` (original format), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {str(i): s.to_original() for i, s in enumerate(samples)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def iter_panel_paths(panel_root: str | Path) -> Iterator[tuple[str, Path]]:
    """Yield ``("series/page_panel.jpg", path)`` over all series in natural order."""
    root = Path(panel_root)
    for s in list_series(root):
        for name in list_panels(root, s):
            yield f"{s}/{name}", root / s / name
