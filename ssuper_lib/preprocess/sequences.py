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
* image sizes are read from file headers only, and face crops are written by a process pool.

CLI: ``python -m ssuper_lib.preprocess [CONFIG] [data.key=value ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
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
from ..data.comics import Box, SequenceSample, list_panels, list_series, natural_key, read_annotations, write_sequences
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


def _image_size(path: str | Path) -> tuple[int, int]:
    """(W, H) of an image from its header: a direct SOF read for JPEG (~10x faster than ``Image.open``, the same
    numbers), PIL for anything else or any JPEG whose SOF is not in the first 64 KiB."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, 2048)  # the SOF of a plain JPEG sits in its first few hundred bytes
        size = _jpeg_size(head)
        if size is None and head[:2] == b"\xff\xd8":  # large EXIF / ICC segments before it
            size = _jpeg_size(head + os.read(fd, 65536 - len(head)))
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
) -> tuple[list[SequenceSample], dict]:
    """Windows of ``window_size`` consecutive on-disk panels, each with >= 1 valid face; one sample per face of the
    last panel. ``faces``: filtered boxes per panel key; ``sizes``: (W, H) per panel key holding faces;
    ``listing``: the panel file names per series when already listed (default: ``list_panels``).

    Returns ``(samples, counts)`` with counts ``{"windows": .., "series_with_windows": ..}``.
    """
    panel_root = Path(panel_root)
    series = list(series) if series is not None else list_series(panel_root)
    samples: list[SequenceSample] = []
    n_windows = 0
    series_with = 0
    for s in series:
        names = listing[s] if listing is not None else list_panels(panel_root, s)
        keys = [f"{s}/{name}" for name in names]
        valid = [k in faces and len(faces[k]) > 0 for k in keys]
        squares: dict[str, list[list[int]]] = {}
        found = False
        for i in range(len(keys) - window_size + 1):  # + 1: the last window of the series is included
            if not all(valid[i : i + window_size]):
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
    return samples, {"windows": n_windows, "series_with_windows": series_with}


def margin_faces_path(faces_path: str | Path) -> Path:
    """``<root>/faces`` -> ``<root>/faces_margin`` (the with-margin face folder beside the plain one)."""
    p = Path(faces_path)
    return p.with_name(p.name + "_margin")


def split_path(data_cfg: DataConfig) -> Path:
    """``split.json`` beside the sequence file."""
    return resolve_path(data_cfg.sequence_path).parent / "split.json"


def _crop_series(args) -> int:
    """Write the face crops of one series (worker function): ``<out>/<series>/<page>_<panel>_<k>.jpg``."""
    from PIL import Image

    panel_root, items, out_plain, out_margin = args
    n = 0
    for key, boxes in items:
        series, name = key.split("/", 1)
        stem = Path(name).stem
        with Image.open(Path(panel_root) / key) as im:
            im = im.convert("RGB")
            w, h = im.size
            for out, margin in ((out_plain, False), (out_margin, True)):
                d = Path(out) / series
                d.mkdir(parents=True, exist_ok=True)
                for k, b in enumerate(boxes):
                    sq = square_face_box(b, w, h, margin)
                    im.crop(tuple(sq)).save(d / f"{stem}_{k}.jpg", quality=95)
                    n += 1
    return n


def write_face_crops(
    panel_root: str | Path, faces: dict[str, list[Box]], out_plain: str | Path, out_margin: str | Path | None = None,
    workers: int | None = None, progress: bool = False,
) -> int:
    """Save every valid face as a square crop at original resolution (docs/original.md 4.2), without and with margin.

    ``k`` in ``<page>_<panel>_<k>.jpg`` is the face's index among the panel's valid faces (file order).
    Series are spread over ``workers`` processes (default: up to 4, bounded by the CPU count).
    Returns the number of crops written (both folders).
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
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            total += _crop_series(job)
            bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if sys.platform.startswith("linux") else None
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            for n in ex.map(_crop_series, jobs):
                total += n
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
    unknown_panels: int = 0  # annotated panels that are not on disk (ignored)
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
            ("face crops written", self.face_crops),
        ]
        return pd.DataFrame(rows, columns=["stage", "count"])

    def __str__(self) -> str:
        return (
            f"{self.boxes_read} boxes ({self.malformed_lines} malformed lines) -> conf {self.after_conf} -> NMS "
            f"{self.after_nms} -> size {self.after_size}; {self.panels_with_faces}/{self.panels_total} panels with faces; "
            f"{self.windows} windows -> {self.samples} samples (train {self.train_samples} in {self.train_series} series, "
            f"validation {self.val_samples} in {self.val_series} series, "
            f"test {self.test_samples} in {self.test_series} series); {self.face_crops} face crops; {self.seconds:.1f} s"
        )


def run_preprocessing(
    data_cfg: DataConfig, progress: bool = True, write_faces: bool = True, workers: int | None = None
) -> PreprocessReport:
    """The whole preprocessing: read + filter boxes, sequences, face crops, split. Writes

    ``data_cfg.sequence_path`` (original JSON format), ``split.json`` beside it, ``data_cfg.faces_path`` and its
    ``_margin`` sibling. Returns a :class:`PreprocessReport`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    panel_root = resolve_path(data_cfg.panel_path)
    series = list_series(panel_root)
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
    rep.unknown_panels = sum(1 for k in faces if k not in on_disk)
    faces = {k: v for k, v in faces.items() if k in on_disk}
    rep.panels_with_faces = len(faces)
    root_str = str(panel_root)  # plain strings: a Path per panel costs more than reading its header
    sizes = {k: _image_size(os.path.join(root_str, k)) for k in tqdm(faces, desc="panel sizes", unit="panel",
                                                                     disable=not progress)}
    rep.stage_seconds["sizes"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()

    samples, counts = build_sequences(panel_root, faces, sizes, data_cfg.window_size, data_cfg.seed,
                                      data_cfg.add_face_margin, series, listing)
    rep.windows, rep.samples = counts["windows"], len(samples)
    seq_path = resolve_path(data_cfg.sequence_path)
    write_sequences(seq_path, samples)
    rep.sequence_path = str(seq_path)
    rep.stage_seconds["sequences"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()

    train_s, test_s = split_series(series, data_cfg)
    train_s, val_s = holdout_val_series(train_s, data_cfg)
    train, test = split_samples(samples, data_cfg, series=series)
    sp = split_path(data_cfg)
    tmp = sp.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"train": train_s, "val": val_s, "test": test_s}, indent=1))
    os.replace(tmp, sp)
    rep.split_path = str(sp)
    val_set = set(val_s)
    rep.train_series, rep.val_series, rep.test_series = len(train_s), len(val_s), len(test_s)
    rep.val_samples = sum(1 for s in train if s.series in val_set)
    rep.train_samples, rep.test_samples = len(train) - rep.val_samples, len(test)
    rep.stage_seconds["split"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()

    if write_faces:
        fp = resolve_path(data_cfg.faces_path)
        rep.face_crops = write_face_crops(panel_root, faces, fp, margin_faces_path(fp), workers=workers, progress=progress)
        rep.faces_path = str(fp)
        rep.stage_seconds["faces"] = time.perf_counter() - t_stage
    rep.seconds = time.perf_counter() - t0
    return rep


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
