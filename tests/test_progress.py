"""Progress that `make demo` shows: text lines of the kit's bars at a modest rate, stage lines, and the demo's
line per notebook cell with the cells' printed lines and a "still running" line when a cell is quiet."""

from __future__ import annotations

import time

import nbformat
import pytest

from ssuper_lib import demo
from ssuper_lib.progress import ENV_PROGRESS_EVERY, format_seconds, note, progress_bar


def test_line_mode_prints_start_interval_and_end_lines(monkeypatch, capsys):
    monkeypatch.setenv(ENV_PROGRESS_EVERY, "0.05")
    bar = progress_bar(total=6, desc="train x", unit="step", samples_per_step=8)
    for _ in range(6):
        time.sleep(0.03)
        bar.update(1)
        bar.set_postfix({"recon": "0.1"}, refresh=False)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train x: step 0/6 (0%)"
    assert 3 <= len(lines) <= 6, lines  # at most one line per 0.05 s, not one per step
    middle = lines[1]
    assert "step/s (" in middle and "samples/s)" in middle and "ETA" in middle and middle.endswith("recon 0.1")
    assert lines[-1].startswith("train x: step 6/6 (100%)") and "done in" in lines[-1]
    for _ in progress_bar(range(3), desc="quiet", disable=True):
        pass
    assert capsys.readouterr().out == "", "a disabled bar prints nothing"


def test_without_the_variable_bars_are_tqdm_and_notes_are_silent(monkeypatch, capsys):
    monkeypatch.delenv(ENV_PROGRESS_EVERY, raising=False)
    note("a stage")
    for _ in progress_bar(range(3), desc="bar", file=__import__("sys").stderr):
        pass
    out = capsys.readouterr()
    assert out.out == "" and "bar" in out.err
    monkeypatch.setenv(ENV_PROGRESS_EVERY, "15")
    note("a stage")
    assert capsys.readouterr().out == "a stage\n"
    assert (format_seconds(42), format_seconds(365), format_seconds(3720)) == ("42s", "6m05s", "1h02m")


@pytest.mark.slow
def test_demo_shows_each_cell_its_printed_lines_and_a_heartbeat(tmp_path, monkeypatch, capsys):
    """A notebook run the way `make demo` runs one: a line per code cell named by its section, the cells'
    printed lines (the kernel sees the progress variable), a "still running" line in a quiet cell, and no
    warnings (stderr of the kernel stays in the notebook)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 tiny\n## First stage"),
                nbformat.v4.new_code_cell("import os, sys, time, warnings\nprint('env', os.environ['SSUPER_PROGRESS_EVERY'])"),
                nbformat.v4.new_markdown_cell("## Quiet stage"),
                nbformat.v4.new_code_cell("warnings.warn('noisy')\nprint('to stderr', file=sys.stderr)\ntime.sleep(2.5)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "99_tiny.ipynb")
    monkeypatch.setattr(demo, "NOTEBOOKS", tmp_path / "nbs")
    monkeypatch.setattr(demo, "EXECUTED", tmp_path / "executed")
    monkeypatch.setattr(demo, "HEARTBEAT", 1)
    monkeypatch.setenv(ENV_PROGRESS_EVERY, "7")
    demo._execute("99", {})
    out = capsys.readouterr().out
    assert "  99 cell 1/2 · First stage" in out and "      env 7" in out
    assert "  99 cell 2/2 · Quiet stage" in out and "... still running: 99 cell 2/2" in out
    assert "noisy" not in out and "to stderr" not in out
    assert (tmp_path / "executed" / "99_tiny.ipynb").is_file()
