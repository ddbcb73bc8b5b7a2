"""Header-only panel statistics and face statistics, checked against an independent full decode."""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssuper_lib.data import stats


def test_scan_agrees_with_full_decode(tiny_synthetic):
    panel_root = tiny_synthetic / "panels"
    df = stats.scan_panels(panel_root, progress=False)
    assert list(df.columns) == stats.PANEL_COLUMNS
    assert len(df) == 48 and df["readable"].all()
    # Independent computation: decode every pixel with PIL + numpy, sizes from the arrays.
    decoded = {}
    for p in sorted(panel_root.rglob("*.jpg")):
        arr = np.asarray(Image.open(p).convert("RGB"))
        decoded[f"{p.parent.name}/{p.name}"] = (arr.shape[1], arr.shape[0], p.stat().st_size)
    scanned = {f"{r.series}/{r.file}": (r.width, r.height, r.bytes) for r in df.itertuples(index=False)}
    assert scanned == decoded
    summary = stats.summarize_panels(df)
    widths = [v[0] for v in decoded.values()]
    heights = [v[1] for v in decoded.values()]
    assert summary["total_files"] == 48 and summary["readable"] == 48 and summary["unreadable"] == 0
    assert summary["width"]["mean"] == pytest.approx(statistics.mean(widths), abs=0.01)
    assert summary["height"]["mean"] == pytest.approx(statistics.mean(heights), abs=0.01)
    assert summary["width"]["median"] == statistics.median(widths)
    assert summary["height"]["median"] == statistics.median(heights)
    assert summary["width"]["mode"] == min(statistics.multimode(widths))
    assert summary["height"]["mode"] == min(statistics.multimode(heights))


def test_parallel_scan_equals_serial(tiny_synthetic, monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK", 5)  # small chunks so that 48 files go through the process pool
    serial = stats.scan_panels(tiny_synthetic / "panels", workers=1, progress=False)
    parallel = stats.scan_panels(tiny_synthetic / "panels", workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)


@pytest.fixture
def damaged_panels(tiny_synthetic, tmp_path) -> Path:
    """Two series copied from the tiny dataset plus a truncated JPEG, a zero-byte file, a non-image file."""
    root = tmp_path / "panels"
    for s in ("0", "1"):
        shutil.copytree(tiny_synthetic / "panels" / s, root / s)
    good = (root / "0" / "0_0.jpg").read_bytes()
    (root / "0" / "99_0.jpg").write_bytes(good[: len(good) // 2])  # truncated download
    (root / "0" / "99_1.jpg").write_bytes(good[:40])  # cut inside the header
    (root / "1" / "99_2.jpg").write_bytes(b"")  # zero bytes
    (root / "1" / "readme.txt").write_text("not a panel\n")  # non-image file
    return root


def test_bad_files_are_counted_and_listed(damaged_panels):
    df = stats.scan_panels(damaged_panels, progress=False)
    assert len(df) == 24 + 4, "the scan finishes and lists every file"
    summary = stats.summarize_panels(df)
    assert summary["readable"] == 24 and summary["unreadable"] == 4
    listed = {d["file"]: d["error"] for d in summary["unreadable_files"]}
    assert set(listed) == {"0/99_0.jpg", "0/99_1.jpg", "1/99_2.jpg", "1/readme.txt"}
    assert "truncated" in listed["0/99_0.jpg"]
    assert "0 bytes" in listed["1/99_2.jpg"]
    assert listed["1/readme.txt"]  # a reason is given
    # statistics use readable panels only
    ok = df[df["readable"]]
    assert summary["height"]["mean"] == pytest.approx(ok["height"].mean(), abs=0.01)
    assert (df.loc[~df["readable"], "error"] != "").all()


def test_face_stats_match_annotation_lines(tiny_synthetic):
    ann_root = tiny_synthetic / "annotations"
    faces, malformed = stats.face_stats(ann_root)
    assert malformed == []
    lines = [ln.split() for f in sorted(ann_root.glob("*.txt")) for ln in f.read_text().splitlines() if ln.strip()]
    assert len(faces) == len(lines)
    assert faces["conf"].sum() == pytest.approx(sum(float(ln[5]) for ln in lines))
    widths = [int(ln[3]) - int(ln[1]) for ln in lines]
    assert sorted(faces["width"].tolist()) == sorted(widths)
    panels = stats.scan_panels(tiny_synthetic / "panels", progress=False)
    fpp = stats.faces_per_panel(faces, panels, conf_thold=0.9)
    assert len(fpp) == 48, "panels without boxes count as 0"
    assert fpp.sum() == sum(float(ln[5]) >= 0.9 for ln in lines)
    summary = stats.summarize_faces(faces, malformed, panels)
    assert summary["boxes"] == len(lines) and summary["malformed_lines"] == 0
    assert summary["faces_per_panel_at_or_above_thold"]["panels_with_none"] == int((fpp == 0).sum())


def test_face_stats_report_malformed_lines(tmp_path):
    (tmp_path / "3.txt").write_text("3/0_0.jpg 1 2 30 40 0.95\n3/0_1.jpg 1 2 x 40 0.95\n\n3/0_2.jpg 5 5 50 50 0.5\n")
    faces, malformed = stats.face_stats(tmp_path)
    assert len(faces) == 2 and len(malformed) == 1
    assert malformed[0].line_no == 2 and malformed[0].path.endswith("3.txt")
    summary = stats.summarize_faces(faces, malformed)
    assert summary["malformed_lines"] == 1 and "3.txt:2" in summary["malformed"][0]
    assert summary["boxes_at_or_above_thold"] == 1


def test_write_stats(tiny_synthetic, tmp_path):
    panels = stats.scan_panels(tiny_synthetic / "panels", progress=False)
    faces, malformed = stats.face_stats(tiny_synthetic / "annotations")
    paths = stats.write_stats(panels, stats.summarize_panels(panels), faces, stats.summarize_faces(faces, malformed), tmp_path)
    assert sorted(p.name for p in paths.values()) == ["faces.csv", "faces_summary.json", "panels.csv", "panels_summary.json"]
    again = pd.read_csv(tmp_path / "panels.csv", dtype={"series": str}, keep_default_na=False)
    assert len(again) == 48 and (again["width"] == panels["width"]).all()
    assert json.loads((tmp_path / "panels_summary.json").read_text())["total_files"] == 48
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_plot_panel_boxes(tiny_synthetic):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssuper_lib.data.comics import read_annotations

    ann = read_annotations(tiny_synthetic / "annotations")
    key = next(iter(ann.boxes))
    fig = stats.plot_panel_boxes(tiny_synthetic / "panels", key, ann.boxes[key], truth=[(1, 1, 20, 20)])
    ax = fig.axes[0]
    assert len(ax.patches) == len(ann.boxes[key]) + 1
    assert key in ax.get_title()
    plt.close(fig)
