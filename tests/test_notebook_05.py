"""Notebook 05 (evaluation) executed headlessly in smoke mode on a tiny trained run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_evaluate import make_tiny_run


@pytest.mark.slow
def test_notebook_05_smoke(run_notebook, tiny_synthetic, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb05")
    run_dir = make_tiny_run(tmp, tiny_synthetic)
    out = run_notebook(
        "05_fid_evaluation.ipynb",
        {"run_dirs": [str(run_dir)], "stats_dir": str(tmp / "stats"), "figures_dir": str(tmp / "figs"),
         "smoke": True, "seed": 0},
    )
    csv = pd.read_csv(tmp / "stats" / "results.csv")
    assert len(csv) == 1 and csv.loc[0, "model"] == "Plain-SSuperGAN" and csv.loc[0, "n"] == 16
    assert str(csv.loc[0, "fid"]).startswith("unavailable") or float(csv.loc[0, "fid"]) >= 0
    assert "original protocol" in (tmp / "stats" / "results.md").read_text()
    for name in ("05_results_table", "05_context_gain", "05_test_sequence_ci_plain_ssupergan"):
        assert (tmp / "figs" / f"{name}.png").is_file(), f"figure {name}.png missing"
    cells = json.loads(out.read_text())["cells"]
    assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
