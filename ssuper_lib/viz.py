"""Figures: one ``save_figure`` helper (fixed dpi, stripped metadata) and small plotting helpers.

Every figure of the kit goes through :func:`save_figure`, so re-running a notebook on the same
artifacts writes byte-identical PNG files (no timestamps, no software version in the metadata).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from .config import REPO_ROOT

__all__ = ["FIGURE_DPI", "FIGURES_DIR", "save_figure"]

FIGURE_DPI = 120
FIGURES_DIR = REPO_ROOT / "figures"


def save_figure(fig: "plt.Figure", name: str, out_dir: str | Path | None = None, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>.<fmt>`` with fixed dpi and no metadata; returns the paths.

    PNG metadata (Software) and PDF metadata (CreationDate, Producer) are stripped so that the same
    figure always gives the same bytes.
    """
    out = Path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        meta = {"Software": None} if fmt == "png" else {"Creator": None, "Producer": None, "CreationDate": None}
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, dpi=FIGURE_DPI, format=fmt, metadata=meta, bbox_inches="tight", pad_inches=0.1)
        os.replace(tmp, path)
        paths.append(path)
    return paths
