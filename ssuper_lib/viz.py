"""Figures: one ``save_figure`` helper (fixed dpi, stripped metadata) and small plotting helpers.

Every figure of the kit goes through :func:`save_figure`, so re-running a notebook on the same
artifacts writes byte-identical PNG files (no timestamps, no software version in the metadata).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from .config import REPO_ROOT

__all__ = ["FIGURE_DPI", "FIGURES_DIR", "save_figure", "plot_losses", "LiveLossPlot"]

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


# --------------------------------------------------------------------------------------------------
# Training curves (training worker, notebook 04)
# --------------------------------------------------------------------------------------------------


def plot_losses(records: list[dict], keys: list[str] | None = None, fig: "plt.Figure | None" = None) -> "plt.Figure":
    """One panel per loss of ``metrics.jsonl`` train records (x = step); ``keys`` picks and orders them."""
    rows = [r for r in records if r.get("kind", "train") == "train"]
    skip = {"kind", "step", "epoch", "time", "samples_per_s", "lr", "kl_weight"}
    if keys is None:
        keys = [k for k in (rows[0] if rows else {}) if k not in skip]
    n = max(1, len(keys))
    ncols = min(4, n)
    nrows = (n + ncols - 1) // ncols
    if fig is None:
        fig = plt.figure(figsize=(3.2 * ncols, 2.4 * nrows))
    fig.clear()
    steps = [r["step"] for r in rows]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(steps, [r.get(key, float("nan")) for r in rows], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


class LiveLossPlot:
    """``train(..., callback=LiveLossPlot())``: redraws the loss curves in a notebook every ``every`` records.

    Keeps the records (``.records``, ``.evals``) so the final figure can be drawn and saved afterwards.
    Outside IPython it only collects.
    """

    def __init__(self, every: int = 1, keys: list[str] | None = None):
        self.every = max(1, int(every))
        self.keys = keys
        self.records: list[dict] = []
        self.evals: list[dict] = []
        self.samples: list[str] = []
        self._handle = None
        self._fig = None

    def __call__(self, record: dict) -> None:
        kind = record.get("kind")
        if kind == "eval":
            self.evals.append(record)
        elif kind == "samples":
            self.samples = list(record.get("paths", []))
        elif kind == "train":
            self.records.append(record)
            if len(self.records) % self.every == 0:
                self.redraw()

    def redraw(self) -> "plt.Figure | None":
        if not self.records:
            return None
        try:
            from IPython.display import display
        except ImportError:  # plain Python: nothing to show
            return None
        if self._fig is None:
            self._fig = plt.figure(figsize=(12, 4))
            plt.close(self._fig)  # shown through display() only, not again at the end of the cell
        plot_losses(self.records, self.keys, self._fig)
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)
        return self._fig

    def figure(self) -> "plt.Figure":
        """A fresh figure of all collected losses (for ``save_figure``)."""
        return plot_losses(self.records, self.keys)
