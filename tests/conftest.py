"""Shared fixtures: a tiny synthetic dataset generated once per session, and a notebook runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A tiny synthetic COMICS-layout dataset (4 series x 12 panels), generated once per test session."""
    from ssuper_lib.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(root, n_series=4, seed=0, panels_per_series=12)
    return root


@pytest.fixture(scope="session")
def run_notebook(tmp_path_factory):
    """Execute ``notebooks/<name>`` headlessly with papermill; returns the executed notebook's path.

    The notebook runs with cwd = notebooks/ and kernel python3; ``parameters`` overrides the cell
    tagged ``parameters``. A failing cell raises papermill's PapermillExecutionError with the traceback.
    """
    import papermill as pm

    out_dir = tmp_path_factory.mktemp("executed_notebooks")

    def _run(name: str, parameters: dict | None = None, timeout: int = 600) -> Path:
        src = NOTEBOOKS / name
        assert src.is_file(), f"notebook {src} is missing"
        out = out_dir / name
        env_backup = os.environ.get("MPLBACKEND")
        os.environ["MPLBACKEND"] = "Agg"
        try:
            pm.execute_notebook(
                str(src),
                str(out),
                parameters=parameters or {},
                kernel_name="python3",
                cwd=str(NOTEBOOKS),
                progress_bar=False,
                execution_timeout=timeout,
                kernel_manager_class="ssuper_lib.demo.IPCKernelManager",  # no TCP-without-encryption warning
            )
        finally:
            if env_backup is None:
                os.environ.pop("MPLBACKEND", None)
            else:
                os.environ["MPLBACKEND"] = env_backup
        return out

    return _run


@pytest.fixture
def one_thread():
    """torch on one thread for the test (restored after): small models are faster and steadier so."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
