"""Notebook 04 runs headlessly in smoke mode: trains, resumes, writes its figures."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.slow
def test_notebook_04_smoke(run_notebook, tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figures"
    run_notebook("04_training.ipynb", {"smoke": True, "runs_dir": str(runs), "figures_dir": str(figs),
                                       "max_steps": 4, "resume_steps": 2}, timeout=300)
    (run_dir,) = [p for p in runs.iterdir() if p.name != "feature_cache"]
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 6, "the resumed run continues the first run to max_steps + resume_steps"
    assert (run_dir / "config.yaml").is_file() and list((run_dir / "samples").glob("recon_*.png"))
    for name in ("04_training_losses", "04_fixed_sample_error", "04_sample_sheets", "04_resumed_losses"):
        assert (figs / f"{name}.png").is_file(), name
