"""Notebook 01 runs headlessly in smoke mode and writes its statistics and figures (to tmp dirs)."""

from __future__ import annotations

import json

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_01_smoke(run_notebook, tmp_path):
    data_root = tmp_path / "synthetic"  # missing: the notebook generates it (smoke size)
    stats_dir, figures_dir = tmp_path / "data_stats", tmp_path / "figures"
    run_notebook(
        "01_dataset_statistics.ipynb",
        {"data_root": str(data_root), "smoke": True, "seed": 1, "stats_dir": str(stats_dir), "figures_dir": str(figures_dir)},
        timeout=300,
    )
    assert (data_root / "manifest.json").is_file(), "the synthetic data is generated when missing"
    summary = json.loads((stats_dir / "panels_summary.json").read_text())
    assert summary["total_files"] == 48 and summary["unreadable"] == 0
    assert len(pd.read_csv(stats_dir / "panels.csv")) == 48
    faces = pd.read_csv(stats_dir / "faces.csv")
    assert len(faces) == sum(1 for f in (data_root / "annotations").glob("*.txt") for ln in f.read_text().splitlines() if ln.strip())
    assert (stats_dir / "faces_summary.json").is_file()
    for name in ("panel_sizes", "width_vs_height", "faces_per_panel", "face_sizes", "confidences", "panel_boxes_example"):
        png = figures_dir / f"01_{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, f"{png} missing or empty"
