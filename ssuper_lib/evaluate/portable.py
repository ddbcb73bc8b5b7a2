"""Result files that travel: no absolute path of this machine in ``results.csv``, ``results.md`` or a run's
saved evaluation row.

A path in a row (``run_dir``, ``faces_path``, ``per_sample_path``) is stored relative to the repository when
it lies inside it (``runs/00000-demo_plain_ssupergan``), else relative to the runs root, the folder that
holds the run directories (``00003-bilstm_ssupergan/eval/...``). Text cells lose the repository's prefix and
write the home folder as ``~`` (the FID "unavailable" message names where to place the weights).
:func:`resolve_result_path` finds the file again from any working directory: as given when absolute, else
under the repository, else under the runs root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import REPO_ROOT

__all__ = ["PATH_KEYS", "portable_path", "portable_row", "portable_rows", "resolve_result_path", "resolved_row",
           "run_dirs_from_results"]

PATH_KEYS = ("run_dir", "faces_path", "per_sample_path")  # the path columns of a results row


def _inside(path: Path, root: Path | None) -> bool:
    return root is not None and (path == root or root in path.parents)


def _from_repo(path: str | Path) -> Path:
    """A runs root as given when absolute, else under the repository (as config paths)."""
    return Path(path) if Path(path).is_absolute() else REPO_ROOT / path


def portable_path(path: str | Path | None, runs_root: str | Path | None = None) -> Any:
    """``path`` relative to the repository when inside it, else to ``runs_root`` when inside that; a relative
    path is kept; an empty or missing value is returned as it is. A path outside both is relative to the
    repository too (``../..``), never absolute."""
    if path is None or (isinstance(path, float) and path != path) or str(path) == "":
        return path
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    p = Path(os.path.abspath(p))
    root = Path(os.path.abspath(_from_repo(runs_root))) if runs_root is not None else None
    for base in (REPO_ROOT, root):
        if _inside(p, base):
            return p.relative_to(base).as_posix() or "."
    return Path(os.path.relpath(p, REPO_ROOT)).as_posix()


def _portable_text(text: str) -> str:
    text = text.replace(str(REPO_ROOT) + os.sep, "")
    home = os.path.expanduser("~")
    return text.replace(home + os.sep, "~" + os.sep) if home not in ("", os.sep, "~") else text


def portable_row(row: dict[str, Any], runs_root: str | Path | None = None) -> dict[str, Any]:
    """A copy of ``row`` with portable paths (:func:`portable_path`; relative to ``runs_root`` when the run lies
    in it, else to the folder holding the row's run directory) and text cells without this machine's repository
    and home prefixes."""
    rd = Path(str(row.get("run_dir") or ""))
    if rd.is_absolute() and (runs_root is None or not _inside(Path(os.path.abspath(rd)), _from_repo(runs_root))):
        runs_root = rd.parent
    out = {}
    for key, value in row.items():
        if key in PATH_KEYS:
            out[key] = portable_path(value, runs_root)
        elif isinstance(value, str):
            out[key] = _portable_text(value)
        else:
            out[key] = value
    return out


def resolve_result_path(path: str | Path, runs_root: str | Path | None = None) -> Path:
    """The file or folder a stored path names: as given when absolute; else the first that exists of
    ``<repository>/<path>`` and ``<runs_root>/<path>`` (a relative ``runs_root`` is taken from the repository);
    else ``<repository>/<path>``."""
    p = Path(path)
    if p.is_absolute():
        return p
    bases = [REPO_ROOT] + ([_from_repo(runs_root)] if runs_root is not None else [])
    for base in bases:
        if (base / p).exists():
            return base / p
    return REPO_ROOT / p


def resolved_row(row: dict[str, Any], runs_root: str | Path | None = None) -> dict[str, Any]:
    """A copy of a stored ``row`` with its paths resolved again (:func:`resolve_result_path`)."""
    out = dict(row)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, (str, Path)) and str(value) != "":
            out[key] = str(resolve_result_path(value, runs_root))
    return out


def run_dirs_from_results(rows: Iterable[dict[str, Any]] | str | Path, runs_root: str | Path | None = None) -> list[Path]:
    """The run directories a ``results.csv`` (its path, or its rows) was computed from, resolved again: each
    model's runs and each training seed's (kinds ``model`` and ``seed run``), in order, once each."""
    if isinstance(rows, (str, Path)):
        import pandas as pd

        rows = pd.read_csv(rows).to_dict("records")
    out: list[Path] = []
    for r in rows:
        rd = r.get("run_dir")
        if r.get("kind", "model") in ("model", "seed run") and isinstance(rd, str) and rd:
            p = resolve_result_path(rd, runs_root)
            if p not in out:
                out.append(p)
    return out


def portable_rows(rows: Sequence[dict[str, Any]], runs_root: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`portable_row` of each row."""
    return [portable_row(r, runs_root) for r in rows]
