"""Every notebook's parameters cell parses cleanly: papermill reads each parameter (``make demo`` prints no
"Unable to parse line" warnings), and the demo silences nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_parses_without_warnings(path, caplog):
    import papermill as pm

    with caplog.at_level(logging.WARNING):
        params = pm.inspect_notebook(str(path))
    bad = [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert not bad, f"{path.name}: papermill cannot parse {bad}"
    assert "smoke" in params, f"{path.name}: every notebook takes the smoke flag"


def test_demo_kernels_use_ipc_and_print_no_tcp_warning(tmp_path):
    """``make demo`` starts its kernels on IPC sockets: ipykernel's "running over TCP without encryption"
    warning, printed once per notebook with the default TCP transport, does not appear."""
    import subprocess
    import sys

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "tiny.ipynb"
    nbformat.write(nb, src)
    code = ("import papermill as pm, sys; from ssuper_lib.demo import IPC_KERNEL_MANAGER as K; "
            "kw = {'kernel_manager_class': K} if sys.argv[1] == 'ipc' else {}; "
            f"pm.execute_notebook({str(src)!r}, {str(tmp_path / 'out.ipynb')!r}, kernel_name='python3', progress_bar=False, **kw)")
    outs = {t: subprocess.run([sys.executable, "-c", code, t], capture_output=True, text=True, timeout=120) for t in ("tcp", "ipc")}
    assert outs["ipc"].returncode == 0, outs["ipc"].stderr[-2000:]
    assert "TCP without encryption" in outs["tcp"].stderr, "the check must see the warning with the default transport"
    assert "TCP without encryption" not in outs["ipc"].stderr + outs["ipc"].stdout
