"""Notebook 02 runs headlessly in smoke mode and writes its table and figures where it is told."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_02_smoke(run_notebook, tmp_path):
    stats, figs = tmp_path / "data_stats", tmp_path / "figures"
    run_notebook("02_face_detection_preprocessing.ipynb",
                 {"smoke": True, "stats_dir": str(stats), "figures_dir": str(figs)}, timeout=300)
    df = pd.read_csv(stats / "detections.csv")
    assert {"conf_thold", "precision", "recall", "ap50"} <= set(df.columns) and len(df) >= 4
    assert df["recall"].between(0, 1).all()
    for name in ("02_detection_confidences", "02_detection_viewer", "02_stage_counts", "02_sequence_preview",
                 "02_split", "02_detection_eval"):
        assert (figs / f"{name}.png").is_file(), name
