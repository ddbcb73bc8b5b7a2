"""Notebook 03 (model construction) runs headlessly in smoke mode and writes its table and figure."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_03_smoke(run_notebook, tmp_path):
    stats, figures = tmp_path / "stats", tmp_path / "figures"
    run_notebook("03_model_construction.ipynb", {"smoke": True, "stats_dir": str(stats), "figures_dir": str(figures)}, timeout=300)
    table = pd.read_csv(stats / "model_params.csv").set_index("model")
    assert len(table) == 10 and table.index[-1] == "plain_ssuper_exemplar"  # nine table rows, then the one beyond
    assert table.loc["plain_ssupervae_ca", "total"] == 48_623_672
    assert table.loc["plain_ssupergan", "generator"] == 11_146_112
    assert table.loc["convlstm_ssupergan", "total"] > 150_000_000
    assert (figures / "03_parameter_breakdown.png").stat().st_size > 0
