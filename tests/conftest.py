"""Shared fixtures: a tiny synthetic dataset generated once per session, and a notebook runner.

Torch runs on ``OMP_NUM_THREADS`` threads (1 unless set): the tests' models are tiny, so more threads only
add contention (the more so on a shared machine or under ``pytest -n``), and a float result never depends on
which test files were collected or ran before. Child processes (CLI runs, notebook kernels) inherit it. The
process-wide torch switches a test may flip (thread count, deterministic algorithms, cuDNN flags) are put
back after each test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _torch_process_state():
    """Put back the process-wide torch switches after each test (``train.deterministic`` turns some on)."""
    import torch

    cudnn = torch.backends.cudnn
    state = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.benchmark, cudnn.deterministic)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    threads, det, warn_only, cudnn.benchmark, cudnn.deterministic = state
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


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
