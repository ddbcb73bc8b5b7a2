"""Preprocessing: detector boxes -> filtered faces -> square face boxes -> sequences of 3 panels, face crops, split.

Implements the paper's data construction (docs/original.md 4.1, 4.2): a sample is a window of ``window_size``
consecutive panels on disk (natural order of the series folder, crossing page boundaries) in which every
panel holds at least one valid face; the target is a face of the last panel, which the model must generate
from the context. Each panel is represented by a square crop of side min(W, H) that contains its face.

Differences from the original ``extract_golden_panels.py`` (docs/original.md 4.1 and 8, items 10, 11):

* every valid face of the last panel gives a sample (the original kept only the last box of each panel
  because of a dictionary bug);
* the last window of every series is included (the original's loop stopped one window early);
* all randomness (the crop shift, the face chosen in context panels) comes from
  ``np.random.default_rng`` seeded from ``(seed, panel, face index)``, so the same seed gives a
  byte-identical sequence JSON, independent of process count or order;
* samples are written in a fixed order (series, window, face) rather than shuffled: the DataLoader shuffles;
* the crop shift is handled on both axes (the original used ``elif`` and handled only one);
* the train/test split is by series and written to ``split.json``; both the original's rule and a fraction
  rule are available (``DataConfig.split``);
* image sizes are read from file headers only, and face crops are written by a process pool;
* a panel that is annotated but not on disk, or that does not decode (an empty or truncated file, not an
  image), is counted and listed in the report, never crashes the run, and no window bridges it: a window
  whose panels skip a panel number on a page, or pass a missing panel, is not consecutive
  (:func:`~ssuper_lib.data.comics.panel_gaps`);
* the split is checked before anything is written, and the sequence file and ``split.json`` are written
  last, together.

CLI: ``python -m ssuper_lib.preprocess [CONFIG] [data.key=value ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import DataConfig, load_config, resolve_path
from ..data.comics import (Box, SequenceSample, list_panels, list_series, natural_key, panel_gaps, read_annotations,
                           write_sequences)
from ..data.datasets import holdout_val_series, split_samples, split_series
from ..detect import filter_annotations

__all__ = [
    "square_face_box",
    "square_panel_crop",
    "sample_rng",
    "build_sequences",
    "write_face_crops",
    "margin_faces_path",
    "split_path",
    "PreprocessReport",
    "run_preprocessing",
    "split_samples",
    "split_series",
    "split_summary",
    "plot_sequence_preview",
    "main",
]


def square_face_box(box: Sequence[float], width: int, height: int, margin: bool = False) -> list[int]:
    """Square box around a face, inside the image (docs/original.md 4.1 ``set_face_area``).

    The box is clipped to the image; centre = box centre, radius = floor(max(w, h) / 2). With ``margin`` the
    centre moves up by h/6 and the radius grows x1.5 (the original's "with margin" faces). The radius is
    capped at min(W, H) / 2 and the square is shifted (not shrunk) to lie inside the image.
    Returns integer ``[x1, y1, x2, y2]`` with x2 - x1 == y2 - y1 (end exclusive).
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    r = max(w, h) / 2.0
    if margin:
        cy -= h / 6.0
        r *= 1.5
    r = int(min(math.floor(r), min(width, height) // 2))
    r = max(r, 1)
    sx1, sy1 = math.floor(cx) - r, math.floor(cy) - r
    sx1 = min(max(sx1, 0), width - 2 * r)
    sy1 = min(max(sy1, 0), height - 2 * r)
    return [sx1, sy1, sx1 + 2 * r, sy1 + 2 * r]


def square_panel_crop(face: Sequence[int], width: int, height: int, rng: np.random.Generator) -> list[int]:
    """Square crop of side min(W, H) that contains the square ``face`` (docs/original.md 4.1 ``select_area_given_face``).

    The crop is centred on the long axis when the face fits; otherwise its start is drawn uniformly from
    the positions that contain the face (seeded ``rng``). The face square's side never exceeds min(W, H).
    """
    side = min(width, height)
    start = []
    for lo_f, hi_f, length in ((face[0], face[2], width), (face[1], face[3], height)):
        c = (length - side) // 2
        if lo_f >= c and hi_f <= c + side:
            start.append(c)
            continue
        lo, hi = max(0, hi_f - side), min(length - side, lo_f)
        start.append(int(rng.integers(lo, hi + 1)) if hi >= lo else min(max(c, 0), length - side))
    return [start[0], start[1], start[0] + side, start[1] + side]


def sample_rng(seed: int, key: str, k: int = 0) -> np.random.Generator:
    """Generator for one (panel, face) draw: depends only on ``seed``, the panel key and ``k``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8")), int(k)])


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """(W, H) from the SOF segment of a JPEG's first bytes; None when it is not there (the caller uses PIL)."""
    if head[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(head)
    while i + 9 <= n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF:
            h, w = int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
            return (w, h) if w > 0 and h > 0 else None
        if marker in (0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7):  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


_TAIL_MARKS = {b"\xff\xd8": (b"\xff\xd9", "truncated JPEG: no end-of-image marker"),
               b"\x89P": (b"IEND", "truncated PNG: no IEND chunk")}


def _image_size(path: str | Path) -> tuple[int, int]:
    """(W, H) of an image from its header: a direct SOF read for JPEG (~10x faster than ``Image.open``, the same
    numbers), PIL for anything else or any JPEG whose SOF is not in the first 64 KiB. A JPEG or PNG whose last
    32 bytes lack its end marker (a truncated file, the check of ``data.stats``) raises ``ValueError``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, 2048)  # the SOF of a plain JPEG sits in its first few hundred bytes
        size = _jpeg_size(head)
        if size is None and head[:2] == b"\xff\xd8":  # large EXIF / ICC segments before it
            size = _jpeg_size(head + os.read(fd, 65536 - len(head)))
        mark, problem = _TAIL_MARKS.get(head[:2], (b"", ""))
        if mark and mark not in os.pread(fd, 32, max(0, os.fstat(fd).st_size - 32)):
            raise ValueError(problem)
    finally:
        os.close(fd)
    if size is not None:
        return size
    return _pil_image_size(path)


def _pil_image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:  # header only: no pixel decoding
        return im.size


def build_sequences(
    panel_root: str | Path,
    faces: dict[str, list[Box]],
    sizes: dict[str, tuple[int, int]],
    window_size: int = 3,
    seed: int = 0,
    margin: bool = False,
    series: Sequence[str] | None = None,
    listing: dict[str, list[str]] | None = None,
    missing: dict[str, list[str]] | None = None,
) -> tuple[list[SequenceSample], dict]:
    """Windows of ``window_size`` consecutive on-disk panels, each with >= 1 valid face; one sample per face of the
    last panel. ``faces``: filtered boxes per panel key; ``sizes``: (W, H) per panel key holding faces;
    ``listing``: the panel file names per series when already listed (default: ``list_panels``); ``missing``:
    per series, names of panels known to be missing on disk (e.g. annotated ones). No window bridges a missing
    panel (:func:`~ssuper_lib.data.comics.panel_gaps`).

    Returns ``(samples, counts)`` with counts ``{"windows", "series_with_windows", "panel_gaps",
    "windows_broken"}`` (places where a panel is missing; windows of panels with faces left out for one).
    """
    panel_root = Path(panel_root)
    series = list(series) if series is not None else list_series(panel_root)
    samples: list[SequenceSample] = []
    n_windows = n_gaps = n_broken = 0
    series_with = 0
    for s in series:
        names = listing[s] if listing is not None else list_panels(panel_root, s)
        keys = [f"{s}/{name}" for name in names]
        valid = [k in faces and len(faces[k]) > 0 for k in keys]
        gaps = panel_gaps(names, (missing or {}).get(s, ()))
        n_gaps += sum(gaps)
        squares: dict[str, list[list[int]]] = {}
        found = False
        for i in range(len(keys) - window_size + 1):  # + 1: the last window of the series is included
            if not all(valid[i : i + window_size]):
                continue
            if any(gaps[i : i + window_size - 1]):  # not consecutive: a panel between them is missing
                n_broken += 1
                continue
            window = keys[i : i + window_size]
            for k in window:
                if k not in squares:
                    w, h = sizes[k]
                    squares[k] = [square_face_box(b.as_list(), w, h, margin) for b in faces[k]]
            n_windows += 1
            found = True
            last = window[-1]
            for f_idx, target in enumerate(squares[last]):
                crops, boxes = [], []
                for j, k in enumerate(window):
                    w, h = sizes[k]
                    rng = sample_rng(seed, last, f_idx * 16 + j)
                    face = target if j == window_size - 1 else squares[k][int(rng.integers(len(squares[k])))]
                    crops.append(square_panel_crop(face, w, h, rng))
                    boxes.append(list(face))
                samples.append(SequenceSample(list(window), crops, boxes))
        series_with += int(found)
    return samples, {"windows": n_windows, "series_with_windows": series_with, "panel_gaps": n_gaps,
                     "windows_broken": n_broken}


def margin_faces_path(faces_path: str | Path) -> Path:
    """``<root>/faces`` -> ``<root>/faces_margin`` (the with-margin face folder beside the plain one)."""
    p = Path(faces_path)
    return p.with_name(p.name + "_margin")


def split_path(data_cfg: DataConfig) -> Path:
    """``split.json`` beside the sequence file."""
    return resolve_path(data_cfg.sequence_path).parent / "split.json"


def _decoded(path: Path):
    """The panel at ``path`` decoded to RGB, or the reason it does not decode (a string)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - a damaged panel is reported, not a crash
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _crop_series(args) -> tuple[int, dict[str, str]]:
    """Write the face crops of one series (worker function): ``<out>/<series>/<page>_<panel>_<k>.jpg``.
    Returns (crops written, {panel key: why it does not decode})."""
    panel_root, items, out_plain, out_margin = args
    n, failed = 0, {}
    for key, boxes in items:
        series, name = key.split("/", 1)
        stem = Path(name).stem
        im = _decoded(Path(panel_root) / key)
        if isinstance(im, str):
            failed[key] = im
            continue
        w, h = im.size
        for out, margin in ((out_plain, False), (out_margin, True)):
            d = Path(out) / series
            d.mkdir(parents=True, exist_ok=True)
            for k, b in enumerate(boxes):
                sq = square_face_box(b, w, h, margin)
                im.crop(tuple(sq)).save(d / f"{stem}_{k}.jpg", quality=95)
                n += 1
    return n, failed


def write_face_crops(
    panel_root: str | Path, faces: dict[str, list[Box]], out_plain: str | Path, out_margin: str | Path | None = None,
    workers: int | None = None, progress: bool = False, failed: dict[str, str] | None = None,
) -> int:
    """Save every valid face as a square crop at original resolution (docs/original.md 4.2), without and with margin.

    ``k`` in ``<page>_<panel>_<k>.jpg`` is the face's index among the panel's valid faces (file order).
    Series are spread over ``workers`` processes (default: up to 4, bounded by the CPU count).
    Returns the number of crops written (both folders); panels that do not decode are skipped and, with
    ``failed``, entered there (panel key -> reason).
    """
    from tqdm.auto import tqdm

    out_margin = out_margin if out_margin is not None else margin_faces_path(out_plain)
    by_series: dict[str, list] = {}
    for key in sorted(faces, key=natural_key):
        by_series.setdefault(key.split("/")[0], []).append((key, [b.as_list() for b in faces[key]]))
    jobs = [(str(panel_root), items, str(out_plain), str(out_margin)) for _, items in sorted(by_series.items(), key=lambda kv: natural_key(kv[0]))]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1, max(1, len(jobs)))
    bar = tqdm(total=len(jobs), desc="face crops", unit="series", disable=not progress)
    total = 0
    parallel = workers > 1 and len(jobs) > 1
    ctx = mp.get_context("fork") if parallel and sys.platform.startswith("linux") else None
    with ProcessPoolExecutor(workers, mp_context=ctx) if parallel else contextlib.nullcontext() as ex:
        for n, bad in (ex.map if parallel else map)(_crop_series, jobs):
            total += n
            if failed is not None:
                failed.update(bad)
            bar.update()
    bar.close()
    return total


@dataclass
class PreprocessReport:
    """Counts at each preprocessing stage, and where the outputs went."""

    annotation_files: int = 0
    boxes_read: int = 0
    malformed_lines: int = 0
    malformed: list[str] = field(default_factory=list)  # first 20, "file:line: reason"
    after_conf: int = 0
    after_nms: int = 0
    after_size: int = 0
    panels_total: int = 0  # panels on disk
    panels_with_faces: int = 0
    series: int = 0
    windows: int = 0
    samples: int = 0
    train_series: int = 0
    val_series: int = 0
    test_series: int = 0
    train_samples: int = 0
    val_samples: int = 0
    test_samples: int = 0
    face_crops: int = 0  # files written (plain + margin)
    missing_panels: int = 0  # annotated panels that are not on disk (left out)
    missing: list[str] = field(default_factory=list)  # first 20 of them, "series/page_panel.jpg"
    undecodable_panels: int = 0  # panels with faces that do not decode (left out)
    undecodable: list[str] = field(default_factory=list)  # first 20, "series/page_panel.jpg: reason"
    panel_gaps: int = 0  # places where a series' panels on disk skip a missing panel
    windows_broken: int = 0  # windows of panels with faces left out because they would bridge a missing panel
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)  # annotations, sizes, sequences, split, faces
    sequence_path: str = ""
    split_path: str = ""
    faces_path: str = ""
    filter: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def stages(self) -> "pandas.DataFrame":  # noqa: F821
        """Counts per stage as a two-column table (stage, count) for the notebook."""
        import pandas as pd

        rows = [
            ("boxes read", self.boxes_read), ("malformed lines", self.malformed_lines),
            ("after confidence", self.after_conf), ("after NMS", self.after_nms), ("after size", self.after_size),
            ("panels on disk", self.panels_total), ("panels with faces", self.panels_with_faces),
            ("windows", self.windows), ("samples", self.samples), ("train samples", self.train_samples),
            ("validation samples", self.val_samples), ("test samples", self.test_samples),
            ("train series", self.train_series), ("validation series", self.val_series), ("test series", self.test_series),
            ("face crops written", self.face_crops), ("annotated panels missing on disk", self.missing_panels),
            ("undecodable panels", self.undecodable_panels), ("gaps in the panel order", self.panel_gaps),
            ("windows bridging a missing panel (left out)", self.windows_broken),
        ]
        return pd.DataFrame(rows, columns=["stage", "count"])

    def skipped(self) -> str:
        """The panels left out (missing, undecodable) and the windows broken by them, one per line."""
        lines = [f"{self.missing_panels} annotated panels missing on disk, {self.undecodable_panels} undecodable "
                 f"panels, {self.panel_gaps} gaps in the panel order: {self.windows_broken} windows left out"]
        for what, shown, total in (("missing", self.missing, self.missing_panels),
                                   ("undecodable", self.undecodable, self.undecodable_panels)):
            lines += [f"  {what}: {x}" for x in shown] + ([f"  ... and {total - len(shown)} more"] if total > len(shown) else [])
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"{self.boxes_read} boxes ({self.malformed_lines} malformed lines) -> conf {self.after_conf} -> NMS "
            f"{self.after_nms} -> size {self.after_size}; {self.panels_with_faces}/{self.panels_total} panels with faces; "
            f"{self.windows} windows -> {self.samples} samples (train {self.train_samples} in {self.train_series} series, "
            f"validation {self.val_samples} in {self.val_series} series, "
            f"test {self.test_samples} in {self.test_series} series); {self.face_crops} face crops; "
            f"{self.missing_panels} missing and {self.undecodable_panels} undecodable panels left out, "
            f"{self.windows_broken} windows broken by a missing panel; {self.seconds:.1f} s"
        )


def run_preprocessing(
    data_cfg: DataConfig, progress: bool = True, write_faces: bool = True, workers: int | None = None
) -> PreprocessReport:
    """The whole preprocessing: read + filter boxes, panel sizes, face crops, sequences, split. Writes

    ``data_cfg.faces_path`` and its ``_margin`` sibling, then ``data_cfg.sequence_path`` (original JSON format)
    and ``split.json`` beside it. The split settings are checked before anything is written. Annotated panels
    that are not on disk and panels that do not decode are left out, counted and listed in the report, and no
    window bridges them. Returns a :class:`PreprocessReport`.
    """
    t0 = time.perf_counter()
    panel_root = resolve_path(data_cfg.panel_path)
    series = list_series(panel_root)
    train_s, test_s = split_series(series, data_cfg)  # a split error stops the run before anything is written
    train_s, val_s = holdout_val_series(train_s, data_cfg)
    ann = read_annotations(resolve_path(data_cfg.annot_path), series)
    rep = PreprocessReport(annotation_files=ann.files_read, boxes_read=ann.n_boxes, malformed_lines=len(ann.malformed),
                           malformed=[str(m) for m in ann.malformed[:20]], series=len(series))
    faces, frep = filter_annotations(ann, data_cfg.conf_thold, data_cfg.nms_iou, data_cfg.face_thold)
    rep.after_conf, rep.after_nms, rep.after_size = frep.after_conf, frep.after_nms, frep.after_size
    rep.filter = frep.as_dict()
    t_stage = time.perf_counter()
    rep.stage_seconds["annotations"] = t_stage - t0

    listing = {s: list_panels(panel_root, s) for s in series}  # listed once, reused by build_sequences
    on_disk = set()
    for s in series:
        on_disk.update(f"{s}/{n}" for n in listing[s])
    rep.panels_total = len(on_disk)
    missing: dict[str, list[str]] = {}
    for k in sorted((k for k in ann.boxes if k not in on_disk), key=natural_key):
        missing.setdefault(k.split("/")[0], []).append(k.split("/", 1)[-1])
    rep.missing = [f"{s}/{n}" for s, names in missing.items() for n in names][:20]
    rep.missing_panels = sum(len(v) for v in missing.values())
    faces = {k: v for k, v in faces.items() if k in on_disk}
    sizes, bad = _panel_sizes(panel_root, faces, progress)
    rep.stage_seconds["sizes"] = time.perf_counter() - t_stage
    if write_faces:
        t_stage = time.perf_counter()
        fp = resolve_path(data_cfg.faces_path)
        good = {k: v for k, v in faces.items() if k not in bad}
        rep.face_crops = write_face_crops(panel_root, good, fp, margin_faces_path(fp), workers=workers,
                                          progress=progress, failed=bad)
        rep.faces_path = str(fp)
        rep.stage_seconds["faces"] = time.perf_counter() - t_stage
    faces = {k: v for k, v in faces.items() if k not in bad}
    rep.panels_with_faces = len(faces)
    rep.undecodable_panels = len(bad)
    rep.undecodable = [f"{k}: {bad[k]}" for k in sorted(bad, key=natural_key)[:20]]

    t_stage = time.perf_counter()
    samples, counts = build_sequences(panel_root, faces, sizes, data_cfg.window_size, data_cfg.seed,
                                      data_cfg.add_face_margin, series, listing, missing)
    rep.windows, rep.samples = counts["windows"], len(samples)
    rep.panel_gaps, rep.windows_broken = counts["panel_gaps"], counts["windows_broken"]
    rep.stage_seconds["sequences"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    train, test = split_samples(samples, data_cfg, series=series)
    seq_path, sp = resolve_path(data_cfg.sequence_path), split_path(data_cfg)
    write_sequences(seq_path, samples)
    tmp = sp.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"train": train_s, "val": val_s, "test": test_s}, indent=1))
    os.replace(tmp, sp)
    rep.sequence_path, rep.split_path = str(seq_path), str(sp)
    val_set = set(val_s)
    rep.train_series, rep.val_series, rep.test_series = len(train_s), len(val_s), len(test_s)
    rep.val_samples = sum(1 for s in train if s.series in val_set)
    rep.train_samples, rep.test_samples = len(train) - rep.val_samples, len(test)
    rep.stage_seconds["split"] = time.perf_counter() - t_stage
    rep.seconds = time.perf_counter() - t0
    return rep


def _panel_sizes(panel_root: Path, faces: dict[str, list[Box]], progress: bool) -> tuple[dict, dict[str, str]]:
    """``({key: (W, H)}, {key: why it does not decode})`` of the panels holding faces, from their headers."""
    from tqdm.auto import tqdm

    root_str = str(panel_root)  # plain strings: a Path per panel costs more than reading its header
    sizes, bad = {}, {}
    for k in tqdm(faces, desc="panel sizes", unit="panel", disable=not progress):
        try:
            sizes[k] = _image_size(os.path.join(root_str, k))
        except Exception as exc:  # noqa: BLE001 - an empty, truncated or non-image file is reported, not a crash
            text = str(exc).splitlines()[0] if str(exc) else ""
            bad[k] = text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"
    return sizes, bad


def split_summary(samples: Sequence[SequenceSample], split: dict[str, list[str]]) -> "pandas.DataFrame":  # noqa: F821
    """One row per series: split, sample count, distinct last panels (targets' panels)."""
    import pandas as pd

    where = {s: k for k in ("train", "val", "test") for s in split.get(k, [])}
    counts: dict[str, list] = {s: [0, set()] for s in where}
    for smp in samples:
        c = counts.setdefault(smp.series, [0, set()])
        c[0] += 1
        c[1].add(smp.panels[-1])
    rows = [{"series": s, "split": where.get(s, "?"), "samples": c[0], "target_panels": len(c[1])}
            for s, c in sorted(counts.items(), key=lambda kv: natural_key(kv[0]))]
    return pd.DataFrame(rows, columns=["series", "split", "samples", "target_panels"])


def plot_sequence_preview(dataset, indices: Sequence[int]) -> "plt.Figure":  # noqa: F821
    """Rows of (panel 1, panel 2, masked panel 3, mask, target face) for samples of a PanelSequenceDataset."""
    import matplotlib.pyplot as plt

    def show(ax, t, title, cmap=None):
        x = t.detach().cpu()
        img = ((x.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy() if x.shape[0] == 3 else x[0].numpy()
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")

    indices = list(indices)
    fig, axes = plt.subplots(len(indices), 5, figsize=(11, 2.3 * len(indices)), squeeze=False)
    for row, i in zip(axes, indices):
        item = dataset[i]
        s = dataset.samples[i]
        panels = item["panels"]
        if dataset.panel_order == "masked_first":  # show chronologically
            panels = panels[[1, 2, 0]]
        for j in range(3):
            show(row[j], panels[j], s.panels[j] + (" (masked)" if j == 2 else ""))
        y1, y2, x1, x2 = item["mask_coords"].tolist()
        show(row[3], item["mask"], f"mask y{y1}:{y2} x{x1}:{x2}", cmap="gray")
        show(row[4], item["face"], f"target face #{i}")
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssuper_lib.preprocess",
                                description="Build sequences, face crops and the series split from detector boxes.")
    p.add_argument("config", nargs="?", default=None, help="YAML config with a data: section (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.conf_thold=0.95")
    p.add_argument("--no-faces", action="store_true", help="skip writing the face crop folders")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.config is not None and "=" in a.config:  # no config file, only overrides
        a.overrides, a.config = [a.config, *a.overrides], None
    cfg = load_config(a.config, a.overrides)
    rep = run_preprocessing(cfg.data, progress=not a.no_progress, write_faces=not a.no_faces, workers=a.workers)
    print(rep)
    for m in rep.malformed:
        print("  malformed:", m)
    if rep.missing_panels or rep.undecodable_panels or rep.windows_broken:
        print(rep.skipped())
    return 0


if __name__ == "__main__":
    sys.exit(main())
