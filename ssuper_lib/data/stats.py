"""Dataset statistics: a header-only, parallel scan of panel folders and detector-box statistics.

Panel scan (:func:`scan_panels`): every regular file in every series folder is opened with PIL, which
parses only the image header (size, mode), never the pixel data, so the 1.23 M Golden Age panels take
minutes rather than hours. A JPEG whose end-of-image marker is missing (a truncated download) is caught
by a 32-byte look at the file's tail, still without decoding. Unreadable, zero-byte, truncated and
non-image files are counted and listed in the summary, never crash the scan (docs/design.md 11: in a bulk job
errors are counted and reported).

The summary reports height and width mean / median / mode as the original README did (docs/original.md
3.1: height 510.0 / 475 / 445, width 508.5 / 460 / 460 on the real panels).

Face statistics (:func:`face_stats`): every box of every annotation file, with size and confidence, and
the malformed lines reported by :mod:`ssuper_lib.data.comics` (file and line number).

Results are written to ``data_stats/`` by :func:`write_stats` (CSV + JSON).
"""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from ..config import REPO_ROOT
from .comics import Box, annotation_files, natural_key, read_annotation_file

__all__ = [
    "PANEL_COLUMNS",
    "FACE_COLUMNS",
    "scan_panels",
    "scan_file",
    "summarize_panels",
    "face_stats",
    "summarize_faces",
    "faces_per_panel",
    "write_stats",
    "plot_panel_boxes",
    "load_ground_truth",
    "panel_size_table",
    "plot_panel_sizes",
    "plot_width_vs_height",
    "plot_faces_per_panel",
    "plot_face_sizes",
    "plot_confidences",
    "GOLDEN_AGE_README",
    "STATS_DIR",
]

STATS_DIR = REPO_ROOT / "data_stats"
PANEL_COLUMNS = ["series", "file", "width", "height", "bytes", "readable", "error"]
FACE_COLUMNS = ["series", "panel", "x1", "y1", "x2", "y2", "conf", "width", "height", "max_side", "min_side"]

_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND"
_TAIL = 32  # bytes read from the end of each file for the truncation check
_CHUNK = 1024  # files per task: large enough that process overhead is negligible


def scan_file(path: str | Path) -> tuple[int, int, int, bool, str]:
    """``(width, height, bytes, readable, error)`` of one file from its header and its last 32 bytes."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return -1, -1, 0, False, "empty file (0 bytes)"
            with Image.open(fh) as im:  # header only: no pixel data is decoded
                w, h = im.size
                fmt = im.format
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except Exception as exc:  # noqa: BLE001 - any failure is a finding about the file, not a crash
        msg = str(exc).split("\n")[0]
        return -1, -1, _safe_size(path), False, f"{type(exc).__name__}: {msg}"
    if fmt == "JPEG" and _JPEG_EOI not in tail:
        return w, h, size, False, "truncated JPEG: no end-of-image marker"
    if fmt == "PNG" and _PNG_IEND not in tail:
        return w, h, size, False, "truncated PNG: no IEND chunk"
    return w, h, size, True, ""


def _safe_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _scan_chunk(task: tuple[str, str, list[str]]) -> list[tuple]:
    root, series, names = task
    folder = os.path.join(root, series)
    return [(series, name, *scan_file(os.path.join(folder, name))) for name in names]


def _list_tasks(panel_root: Path, series: Iterable[str] | None) -> tuple[list[tuple[str, str, list[str]]], int]:
    root = Path(panel_root)
    if not root.is_dir():
        raise FileNotFoundError(f"panel root {root} does not exist: point data.panel_path at the panel folders")
    if series is None:
        series = sorted((e.name for e in os.scandir(root) if e.is_dir()), key=natural_key)
    tasks, total = [], 0
    for s in series:
        names = sorted((e.name for e in os.scandir(root / str(s)) if e.is_file()), key=natural_key)
        total += len(names)
        for i in range(0, len(names), _CHUNK):
            tasks.append((str(root), str(s), names[i : i + _CHUNK]))
    return tasks, total


def scan_panels(
    panel_root: str | Path,
    series: Iterable[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Scan every file of every series folder (headers only) and return one row per file.

    Columns: series, file (``page_panel.jpg``), width, height, bytes, readable, error. Unreadable files
    have width = height = -1 (or their header size when only the tail is missing) and an error message.
    ``workers`` processes share the work in chunks of files (default: all cores; small scans run inline).
    """
    tasks, total = _list_tasks(Path(panel_root), series)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(workers, len(tasks)))
    if total < 2 * _CHUNK:  # a process pool costs more than it saves on a small folder
        workers = 1
    rows: list[tuple] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="panel headers", unit="file", mininterval=0.5)
    if workers == 1:
        for t in tasks:
            rows.extend(_scan_chunk(t))
            if bar is not None:
                bar.update(len(t[2]))
    else:
        with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            for chunk in pool.imap(_scan_chunk, tasks, chunksize=1):
                rows.extend(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    if bar is not None:
        bar.close()
    df = pd.DataFrame(rows, columns=PANEL_COLUMNS)
    return df.astype({"series": str, "file": str, "width": "int64", "height": "int64", "bytes": "int64", "readable": bool, "error": str})


def _mode(values: pd.Series) -> int | None:
    if values.empty:
        return None
    return int(values.mode().min())  # smallest of tied modes, so the summary is deterministic


def summarize_panels(df: pd.DataFrame) -> dict[str, Any]:
    """Counts, unreadable files, and height/width mean / median / mode (as the original README)."""
    ok = df[df["readable"]]
    bad = df[~df["readable"]]
    out: dict[str, Any] = {
        "total_files": int(len(df)),
        "series": int(df["series"].nunique()),
        "readable": int(len(ok)),
        "unreadable": int(len(bad)),
        "unreadable_files": [
            {"file": f"{r.series}/{r.file}", "error": r.error} for r in bad.itertuples(index=False)
        ],
        "total_bytes": int(df.loc[df["bytes"] > 0, "bytes"].sum()),
    }
    for dim in ("height", "width"):
        v = ok[dim]
        out[dim] = {
            "mean": round(float(v.mean()), 2) if len(v) else None,
            "median": float(v.median()) if len(v) else None,
            "mode": _mode(v),
            "min": int(v.min()) if len(v) else None,
            "max": int(v.max()) if len(v) else None,
        }
    return out


def face_stats(annot_root: str | Path, series: Iterable[str] | None = None) -> tuple[pd.DataFrame, list]:
    """Every detector box of the annotation files -> (DataFrame with FACE_COLUMNS, malformed lines).

    Malformed lines (``comics.MalformedLine``, with file and line number) are returned, not raised.
    """
    files = annotation_files(annot_root, series)
    rows: list[tuple] = []
    malformed: list = []
    for f in files:
        ann = read_annotation_file(f)
        malformed.extend(ann.malformed)
        for key, boxes in ann.boxes.items():
            s = key.split("/", 1)[0]
            for b in boxes:
                rows.append((s, key, b.x1, b.y1, b.x2, b.y2, b.conf))
    df = pd.DataFrame(rows, columns=FACE_COLUMNS[:7])
    df = df.astype({"series": str, "panel": str, "x1": "int64", "y1": "int64", "x2": "int64", "y2": "int64", "conf": float})
    df["width"] = df["x2"] - df["x1"]
    df["height"] = df["y2"] - df["y1"]
    df["max_side"] = df[["width", "height"]].max(axis=1)
    df["min_side"] = df[["width", "height"]].min(axis=1)
    return df, malformed


def faces_per_panel(faces: pd.DataFrame, panels: pd.DataFrame | None = None, conf_thold: float = 0.0) -> pd.Series:
    """Boxes with conf >= ``conf_thold`` per panel; with ``panels`` (a scan), panels without boxes count 0."""
    counts = faces.loc[faces["conf"] >= conf_thold].groupby("panel").size()
    if panels is not None:
        keys = (panels.loc[panels["readable"], "series"] + "/" + panels.loc[panels["readable"], "file"]).tolist()
        counts = counts.reindex(keys, fill_value=0)
    return counts.rename("faces")


def summarize_faces(
    faces: pd.DataFrame, malformed: list, panels: pd.DataFrame | None = None, conf_thold: float = 0.9
) -> dict[str, Any]:
    """Box counts, confidence and size statistics (the original's detector table, docs/original.md 4.3)."""
    kept = faces[faces["conf"] >= conf_thold]
    out: dict[str, Any] = {
        "boxes": int(len(faces)),
        "panels_with_boxes": int(faces["panel"].nunique()),
        "conf_thold": conf_thold,
        "boxes_at_or_above_thold": int(len(kept)),
        "panels_with_boxes_at_or_above_thold": int(kept["panel"].nunique()),
        "malformed_lines": len(malformed),
        "malformed": [str(m) for m in malformed[:100]],
        "conf": {
            "mean": round(float(faces["conf"].mean()), 4) if len(faces) else None,
            "median": round(float(faces["conf"].median()), 4) if len(faces) else None,
        },
        "max_side": {
            "mean": round(float(faces["max_side"].mean()), 2) if len(faces) else None,
            "median": float(faces["max_side"].median()) if len(faces) else None,
        },
        # As the original's data_stats notebook: boxes whose min / max side reaches a size.
        "side_at_least": {
            str(t): {"min_side": int((kept["min_side"] >= t).sum()), "max_side": int((kept["max_side"] >= t).sum())}
            for t in (32, 64, 96, 128, 256)
        },
    }
    if panels is not None:
        fpp = faces_per_panel(faces, panels, conf_thold)
        out["faces_per_panel_at_or_above_thold"] = {
            "mean": round(float(fpp.mean()), 3) if len(fpp) else None,
            "panels_with_none": int((fpp == 0).sum()),
            "histogram": {str(k): int(v) for k, v in fpp.value_counts().sort_index().items()},
        }
    return out


def write_stats(
    panels: pd.DataFrame | None = None,
    panel_summary: dict | None = None,
    faces: pd.DataFrame | None = None,
    face_summary: dict | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``panels.csv``, ``panels_summary.json``, ``faces.csv``, ``faces_summary.json`` (those given)."""
    out = Path(out_dir) if out_dir is not None else STATS_DIR
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def _atomic(path: Path, write) -> None:
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)
        written[path.stem] = path

    if panels is not None:
        _atomic(out / "panels.csv", lambda p: panels.to_csv(p, index=False))
    if panel_summary is not None:
        _atomic(out / "panels_summary.json", lambda p: p.write_text(json.dumps(panel_summary, indent=1) + "\n"))
    if faces is not None:
        _atomic(out / "faces.csv", lambda p: faces.to_csv(p, index=False))
    if face_summary is not None:
        _atomic(out / "faces_summary.json", lambda p: p.write_text(json.dumps(face_summary, indent=1) + "\n"))
    return written


def plot_panel_boxes(
    panel_root: str | Path,
    key: str,
    boxes: list[Box],
    conf_thold: float = 0.9,
    truth: list[tuple[int, int, int, int]] | None = None,
    ax=None,
    cmap: str = "viridis",
):
    """Draw panel ``key`` (``"series/page_panel.jpg"``) with its detector boxes coloured by confidence.

    Boxes below ``conf_thold`` are dashed; optional ``truth`` boxes are drawn in white dotted lines.
    Returns the matplotlib figure (the notebook's browser widget calls this; it can be saved as PNG).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    img = Image.open(Path(panel_root) / key).convert("RGB")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 6 * img.height / max(1, img.width) + 0.4))
    else:
        fig = ax.figure
    ax.imshow(np.asarray(img))
    norm = Normalize(vmin=0.3, vmax=1.0)
    colours = plt.get_cmap(cmap)
    for b in sorted(boxes, key=lambda b: b.conf):
        above = b.conf >= conf_thold
        ax.add_patch(
            Rectangle((b.x1, b.y1), b.width, b.height, fill=False, lw=2.2 if above else 1.4,
                      ls="-" if above else "--", ec=colours(norm(b.conf)))
        )
        ax.text(b.x1, b.y1 - 2, f"{b.conf:.2f}", color="black" if norm(b.conf) > 0.5 else "white", fontsize=7,
                va="bottom", bbox=dict(facecolor=colours(norm(b.conf)), alpha=0.85, pad=0.5, lw=0))
    for t in truth or []:
        ax.add_patch(Rectangle((t[0], t[1]), t[2] - t[0], t[3] - t[1], fill=False, lw=1.2, ls=":", ec="white"))
    sm = plt.cm.ScalarMappable(norm=norm, cmap=colours)
    fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02, label="detector confidence")
    n_kept = sum(b.conf >= conf_thold for b in boxes)
    ax.set_title(f"{key}  {img.width}x{img.height}  boxes: {len(boxes)} ({n_kept} >= {conf_thold})", fontsize=9)
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------------------------------
# Figures (notebook 01 calls these; notebook 06 can redraw them from data_stats/*.csv)
# --------------------------------------------------------------------------------------------------

# The original README's Golden Age panel statistics (docs/original.md 3.1), drawn as reference marks.
GOLDEN_AGE_README = {"height": {"mean": 510.0, "median": 475.0, "mode": 445}, "width": {"mean": 508.5, "median": 460.0, "mode": 460}}


def load_ground_truth(path: str | Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """``ground_truth.csv`` (synthetic data) -> {panel key: [true boxes]}; {} when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return {}
    gt = pd.read_csv(path, dtype={"series": str})
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for key, x1, y1, x2, y2 in gt[["panel", "x1", "y1", "x2", "y2"]].itertuples(index=False):
        out.setdefault(key, []).append((int(x1), int(y1), int(x2), int(y2)))
    return out


def panel_size_table(summary: dict, reference: dict | None = GOLDEN_AGE_README) -> pd.DataFrame:
    """Height/width mean, median, mode of a scan next to the original README's Golden Age numbers."""
    rows = []
    for dim in ("height", "width"):
        for stat in ("mean", "median", "mode"):
            row = {"dimension": dim, "statistic": stat, "this dataset": summary[dim][stat]}
            if reference is not None:
                row["Golden Age (original README)"] = reference[dim][stat]
            rows.append(row)
    return pd.DataFrame(rows)


def plot_panel_sizes(panels: pd.DataFrame, summary: dict):
    """Height and width histograms with mean / median / mode marked (and the README's values dotted)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = panels[panels["readable"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    marks = {"mean": ("tab:red", "-"), "median": ("tab:green", "--"), "mode": ("tab:purple", "-.")}
    for ax, dim in zip(axes, ("height", "width")):
        sns.histplot(ok[dim], bins=50, ax=ax, color="tab:blue", alpha=0.6)
        for stat, (col, ls) in marks.items():
            v = summary[dim][stat]
            if v is not None:
                ax.axvline(v, color=col, ls=ls, lw=1.8, label=f"{stat} {v:g}")
        for stat, (col, _) in marks.items():
            ax.axvline(GOLDEN_AGE_README[dim][stat], color=col, ls=":", lw=1, alpha=0.7)
        ax.set_xlabel(f"panel {dim} (px)")
        ax.set_title(f"{dim}: {len(ok)} panels (dotted: Golden Age README)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_width_vs_height(panels: pd.DataFrame):
    """Width against height of every readable panel."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = panels[panels["readable"]]
    fig, ax = plt.subplots(figsize=(5, 5))
    sns.scatterplot(x=ok["width"], y=ok["height"], s=6, alpha=0.35, edgecolor=None, ax=ax)
    lim = [0, max(1, int(ok[["width", "height"]].to_numpy().max() * 1.05)) if len(ok) else 1]
    ax.plot(lim, lim, color="grey", lw=0.8, ls="--", label="square")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_faces_per_panel(faces: pd.DataFrame, panels: pd.DataFrame, conf_thold: float = 0.9):
    """Boxes per panel: every detector box, and only boxes at or above the confidence threshold."""
    import matplotlib.pyplot as plt

    all_boxes = faces_per_panel(faces, panels, 0.0).value_counts().sort_index()
    kept = faces_per_panel(faces, panels, conf_thold).value_counts().sort_index()
    table = pd.DataFrame({"all boxes": all_boxes, f"conf >= {conf_thold}": kept}).fillna(0).astype(int)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    table.plot.bar(ax=ax, rot=0, color=["tab:grey", "tab:blue"])
    ax.set_xlabel("boxes in the panel")
    ax.set_ylabel("panels")
    fig.tight_layout()
    return fig


def plot_face_sizes(faces: pd.DataFrame, conf_thold: float = 0.9, face_thold: int = 32):
    """Max side of the boxes at or above the threshold (log scale), with the minimum face size marked."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    kept = faces[faces["conf"] >= conf_thold]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if len(kept):
        sns.histplot(kept["max_side"].clip(lower=1), bins=40, log_scale=True, ax=ax, color="tab:blue")
    ax.axvline(face_thold, color="tab:red", ls="--", label=f"face_thold {face_thold} px")
    ax.set_xlabel(f"box max side (px), conf >= {conf_thold}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confidences(faces: pd.DataFrame, conf_thold: float = 0.9):
    """Detector confidence of every box, with the threshold marked."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.6))
    if len(faces):
        sns.histplot(faces["conf"], bins=50, ax=ax, color="tab:blue")
    ax.axvline(conf_thold, color="tab:red", ls="--", label=f"conf_thold {conf_thold}")
    ax.set_xlabel("detector confidence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
