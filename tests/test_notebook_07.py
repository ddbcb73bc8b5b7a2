"""Notebook 07 (Siamese model and label-free identity metric) runs headlessly in smoke mode."""

from __future__ import annotations

import json

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_07_smoke(run_notebook, tmp_path):
    stats, figs, runs = tmp_path / "data_stats", tmp_path / "figures", tmp_path / "runs"
    out = run_notebook("07_siamese_identity.ipynb", {"smoke": True, "stats_dir": str(stats), "figures_dir": str(figs),
                                                      "runs_dir": str(runs)}, timeout=300)
    cells = json.loads(out.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    table = pd.read_csv(stats / "identity_metric_validation.csv")
    assert {"generator", "id_acc", "lf_top1", "lf_mrr", "lf_verify", "rho_lf_top1"} <= set(table.columns)
    assert len(table) == 6 and table["id_acc"].between(0, 1).all()
    assert len(list(runs.glob("*-siamese/checkpoints/siamese.pt"))) == 1
    for name in ("07_siamese_loss", "07_siamese_distances", "07_siamese_neighbours", "07_identity_metric_validation"):
        assert (figs / f"{name}.png").is_file(), name
