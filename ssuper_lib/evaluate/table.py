"""The results tables: the compact headline table (model or baseline, PSNR, SSIM, identity, identity gain,
context gain, label-free top-1, each with its interval; faces and series stated once above it), the full
table of every column, results.csv / results.md (portable paths, :mod:`.portable`), and the results figures."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from .fid import FID_ORIG_BATCH, is_unavailable
from .portable import portable_rows, resolved_row
from ..config import resolve_path
from ..viz import save_figure

__all__ = ["results_table", "headline_table", "headline_markdown", "counts_line", "common_counts", "results_markdown",
           "write_results", "read_results", "write_results_markdown", "plot_results_table", "plot_context_gain",
           "finite", "HEADLINE"]


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _counts(row: dict, key: str) -> tuple[int, int | None] | None:
    n, k = row.get(f"{key}_n"), row.get(f"{key}_n_series")
    return (int(n), int(k) if finite(k) else None) if finite(n) else None


def _fmt_ci(row: dict, key: str, digits: int = 2, pct: bool = False, counts: bool = True, seeds: bool = True,
            base: tuple | None = None) -> str:
    """"mean [lo, hi]", then "(n=.., k series)" when ``counts`` and they differ from ``base`` (the counts the
    table states once), and for a multi-seed row "; seeds m ± sd" when ``seeds``."""
    v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if is_unavailable(v) else v
    scale = 100.0 if pct else 1.0
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    s = f"{v * scale:.{digits}f}"
    if finite(lo) and finite(hi):
        s += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    nk = _counts(row, key)
    if counts and nk is not None and nk != base:
        s += f" (n={nk[0]}" + (f", {nk[1]} series)" if nk[1] is not None else ")")
    sd = row.get(f"{key}_seed_sd")
    if seeds and finite(sd):
        s += f"; seeds {row[f'{key}_seed_mean'] * scale:.{digits}f} ± {sd * scale:.{digits}f}"
    return s


def _fmt_num(v: Any, digits: int = 2, n: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if is_unavailable(v) else v
    s = f"{v:.{digits}f}"
    return s + (f" (n={int(n)})" if finite(n) else "")


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _fmt_p(row: dict, key: str, digits: int = 2, pct: bool = False) -> str:
    s = _fmt_ci(row, key, digits, pct, counts=False)
    p = row.get(f"{key}_p")
    return s + (f" p={p:.3f}" if finite(p) else "")


def _int_or_dash(v: Any) -> Any:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return int(v) if isinstance(v, (int, float)) else v


def common_counts(rows: Sequence[dict]) -> tuple[int, int | None] | None:
    """(faces, series) of the PSNR interval of most rows: what a table states once, above it."""
    seen = [c for c in (_counts(r, "psnr") for r in rows) if c is not None]
    return max(set(seen), key=seen.count) if seen else None


def counts_line(rows: Sequence[dict]) -> str:
    """The sentence stated once with a table: faces, series, the interval, the training seeds of model rows."""
    nk = common_counts(rows)
    ci = next((r["ci"] for r in rows if finite(r.get("ci"))), 0.95)
    split = next((r["split"] for r in rows if isinstance(r.get("split"), str)), "test")
    parts = []
    if nk is not None:
        s = f"n = {nk[0]:,} {split} faces" + (f" from {nk[1]} {split} series" if nk[1] is not None else "")
        identity = [c[0] for c in (_counts(r, "id_acc") for r in rows) if c is not None]
        if identity and max(identity) != nk[0]:
            s += f" (identity: the {max(identity):,} whose character is known)"
        parts.append(s)
    parts.append(f"[lo, hi]: {int(round(100 * ci))}% series-bootstrap intervals")
    chance = next((r["id_chance"] for r in rows if finite(r.get("id_chance"))), None)
    if chance is not None:
        parts.append(f"chance identity {100 * chance:.1f}%")
    seeds = {str(r["train_seeds"]) for r in rows if r.get("kind", "model") == "model" and isinstance(r.get("train_seeds"), str)}
    if len(seeds) == 1:
        parts.append(f"model rows: per-face values averaged over training seeds {seeds.pop()}")
    return "; ".join(parts) + "."


class _Footnotes:
    """"unavailable (k)" cells with each distinct reason explained once, below the table."""

    def __init__(self):
        self.reasons: dict[str, list[str]] = {}

    def mark(self, df, rows: Sequence[dict], columns: dict[str, str]):
        """Mark the unavailable cells of ``df`` whose raw value (``rows[i][columns[col]]``) gives a reason."""
        for col, key in columns.items():
            for i, r in enumerate(rows):
                reason = r.get(key)
                if col in df.columns and is_unavailable(reason):
                    cols = self.reasons.setdefault(reason, [])
                    if col not in cols:
                        cols.append(col)
                    df.loc[i, col] = f"unavailable ({list(self.reasons).index(reason) + 1})"
        return df

    def lines(self) -> list[str]:
        return [f"({k}) {', '.join(cols)}: {reason}" for k, (reason, cols) in enumerate(self.reasons.items(), 1)]


HEADLINE = (  # (column, row key, digits, percent) of the compact headline table
    ("PSNR dB", "psnr", 2, False),
    ("SSIM", "ssim", 3, False),
    ("identity %", "id_acc", 1, True),
    ("identity gain pp (true − shuffled context)", "gain_id", 1, True),
    ("context gain dB", "gain_psnr", 2, False),
    ("label-free top-1 %", "lf_top1", 1, True),
)


def headline_table(rows: Sequence[dict], footnotes: _Footnotes | None = None) -> "pandas.DataFrame":  # noqa: F821
    """The compact table: model or baseline, then PSNR, SSIM, identity accuracy, identity gain over shuffled
    context, context gain and label-free top-1, each "mean [lo, hi]"; the counts go in :func:`counts_line`."""
    import pandas as pd

    out = [{"Model": r["model"], **{col: _fmt_ci(r, key, digits, pct, counts=False, seeds=False)
                                    for col, key, digits, pct in HEADLINE}} for r in rows]
    df = pd.DataFrame(out, columns=["Model"] + [h[0] for h in HEADLINE])
    return footnotes.mark(df, rows, {col: key for col, key, _, _ in HEADLINE}) if footnotes is not None else df


def headline_markdown(rows: Sequence[dict]) -> str:
    """:func:`headline_table` as markdown, with :func:`counts_line` above it and a footnote per unavailable reason."""
    notes = _Footnotes()
    table = _markdown(headline_table(rows, notes))
    return "\n".join([counts_line(rows), "", table] + ([""] + notes.lines() if notes.reasons else []))


_UNAVAILABLE_COLUMNS = {"FID (kit)": "fid", "KID x1e3 (kit)": "kid", "Prior FID (kit)": "fid_prior",
                        "FID (original protocol)": "fid_orig"}


def results_table(rows: Sequence[dict], footnotes: _Footnotes | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Display table like the original's Figure 2 (model, latent, LSTM hidden, embedding, PSNR, FID), with
    both protocols, the context gain and identity accuracy, baselines and the oracle as rows of their own.
    Intervals resample series; a cell names its counts only where they differ from the table's
    (:func:`common_counts`, e.g. the subgroups); multi-seed rows add the between-seed mean ± sd. Values are
    formatted strings ("unavailable" where a metric could not be computed, "unavailable (k)" with ``footnotes``)."""
    import pandas as pd

    base = common_counts(rows)
    ci = partial(_fmt_ci, base=base)
    out = []
    for r in rows:
        out.append({
            "Model": r["model"],
            "Kind": r.get("kind", "model"),
            "Train seeds": _int_or_dash(r["train_seeds"] if isinstance(r.get("train_seeds"), str) else r.get("train_seed")),
            "Latent": _int_or_dash(r.get("latent")),
            "LSTM hidden": _int_or_dash(r.get("lstm_hidden")),
            "Embed": _int_or_dash(r.get("embed")),
            "PSNR (kit)": ci(r, "psnr"),
            "SSIM (kit)": ci(r, "ssim", 3),
            "Panel PSNR (kit)": ci(r, "panel_psnr"),
            "FID (kit)": _fmt_num(r.get("fid"), 1, r.get("fid_n") if r.get("fid_n") != (base or (None,))[0] else None),
            "KID x1e3 (kit)": _fmt_num(r["kid"] * 1e3, 2) if finite(r.get("kid")) else _fmt_num(r.get("kid")),
            "Prior FID (kit)": _fmt_num(r.get("fid_prior"), 1, r.get("fid_prior_n")),
            "PSNR (original protocol)": _fmt_num(r.get("psnr_orig"), 2),
            "FID (original protocol)": _fmt_num(r.get("fid_orig"), 1, r.get("fid_prior_n")),
            "Context gain dB": ci(r, "gain_psnr"),
            "Gain, char in context": ci(r, "gain_psnr_in_ctx"),
            "Gain, char not in context": ci(r, "gain_psnr_not_in_ctx"),
            "Gain in - not in context": _fmt_p(r, "gain_psnr_in_minus_not"),
            "Identity acc % (true ctx)": ci(r, "id_acc", 1, pct=True, counts=False),
            "Identity acc % (shuffled ctx)": ci(r, "id_acc_shuffled", 1, pct=True, counts=False),
            "Identity gain %": ci(r, "gain_id", 1, pct=True, counts=False),
            "Identity acc %, char in context": ci(r, "id_acc_in_ctx", 1, pct=True),
            "Identity ceiling % / chance %": _pct(r.get("id_acc_ceiling")) + " / " + _pct(r.get("id_chance")),
            "Label-free top-1 % / MRR (Siamese)": (ci(r, "lf_top1", 1, pct=True, counts=False) + " / "
                                                   + _fmt_num(r.get("lf_mrr"), 3)) if finite(r.get("lf_top1")) else "-",
            "Eval seed": _int_or_dash(r.get("eval_seed")),
            "Step": _int_or_dash(r.get("checkpoint_step", "-")) if r.get("kind", "model") == "model" else "-",
        })
    df = pd.DataFrame(out)
    return footnotes.mark(df, rows, _UNAVAILABLE_COLUMNS) if footnotes is not None else df


def _notes(rows: Sequence[dict]) -> list[str]:
    """What the full table's columns mean, stated once below it."""
    notes = [
        "Intervals: 95% series bootstrap (whole test series resampled: faces of a series share a cast and "
        "overlapping windows share panels); counts (n = faces, k series) are named in a cell only where they differ "
        "from the line above the tables. Multi-seed rows: pooled interval of the per-sample values averaged over "
        "training seeds, then the between-seed mean ± sd.",
        "Baselines and the oracle (kind) are computed by the same code on the same samples; the oracle uses "
        "synthetic ground truth and is never ranked as a model.",
        "Kit protocol: test split by series, G(mu), per-image PSNR/SSIM mean [CI]; "
        "FID/KID pooled over all test faces (torch-fidelity Inception, uint8); prior FID on G(z), z ~ N(0, I).",
        "Original protocol (docs/original.md 5): batch-of-64 PSNR averaged over batches; per-batch FID of prior "
        f"samples (batches of {FID_ORIG_BATCH}) against batch-averaged real statistics. Not comparable with "
        "standard FID nor with the original table's numbers (other data).",
        "Context gain: PSNR(true context) - PSNR(context panels from another series), paired bootstrap CI.",
    ]
    lf_notes = {r.get("lf_note") for r in rows if isinstance(r.get("lf_note"), str) and r.get("lf_note")}
    if lf_notes:
        notes.append("Label-free identity (real COMICS has no character labels): a Siamese face embedding ranks the "
                     "true face against 20 faces of other series (same-series faces may show the same character and "
                     "are never negatives); top-1 = the generated face's nearest is the true face, MRR = mean "
                     "reciprocal rank; chance top-1 = 1/21.")
    return notes + sorted(lf_notes)


def results_markdown(table_rows: Sequence[dict]) -> str:
    """``results.md``: the headline table (counts stated once above it), then every column in a second table,
    each with its unavailable reasons as footnotes, then the notes."""
    full_notes = _Footnotes()
    full = _markdown(results_table(table_rows, full_notes))
    parts = [headline_markdown(table_rows), "", "Every column (`results.csv` has the raw values and each training "
             "seed's own row):", "", full]
    if full_notes.reasons:
        parts += [""] + full_notes.lines()
    return "\n".join(parts + [""] + ["* " + n for n in _notes(table_rows)]) + "\n"


def write_results(rows: Sequence[dict], stats_dir: str | Path = "data_stats", figures_dir: str | Path = "figures",
                  figure_name: str = "05_results_table", table_rows: Sequence[dict] | None = None,
                  runs_root: str | Path | None = None) -> dict[str, Path]:
    """data_stats/results.csv (raw rows, numbers and "unavailable: ..." strings), data_stats/results.md
    (:func:`results_markdown` of ``table_rows``, default ``rows``) and the rendered PNG figures/<figure_name>.png.
    Paths in both files are portable (:func:`.portable.portable_row`: relative to the repository or to
    ``runs_root``); :func:`read_results` resolves them again."""
    import pandas as pd

    stats_dir, figures_dir = resolve_path(stats_dir), resolve_path(figures_dir)
    stats_dir.mkdir(parents=True, exist_ok=True)
    csv = stats_dir / "results.csv"
    pd.DataFrame(portable_rows(rows, runs_root)).to_csv(csv, index=False)
    shown = portable_rows(rows if table_rows is None else table_rows, runs_root)
    md = stats_dir / "results.md"
    md.write_text(results_markdown(shown))
    fig = plot_results_table(results_table(shown), counts_line(shown))
    png = save_figure(fig, figure_name, out_dir=figures_dir)[0]
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {"csv": csv, "md": md, "png": png}


def read_results(path: str | Path = "data_stats/results.csv", runs_root: str | Path | None = "runs") -> list[dict]:
    """The rows of a ``results.csv`` (missing values as None), their paths resolved again from any working
    directory (:func:`.portable.resolved_row`: under the repository, else under ``runs_root``)."""
    import pandas as pd

    df = pd.read_csv(resolve_path(path))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]
    return [resolved_row(r, runs_root) for r in rows]


def write_results_markdown(csv_path: str | Path = "data_stats/results.csv", md_path: str | Path | None = None) -> Path:
    """``results.md`` again from a ``results.csv`` (its rows without the per-seed ones), beside it by default."""
    csv_path = resolve_path(csv_path)
    rows = [r for r in read_results(csv_path, runs_root=None) if r.get("kind") != "seed run"]
    md = Path(md_path) if md_path is not None else csv_path.with_name("results.md")
    md.write_text(results_markdown(portable_rows(rows)))
    return md


def _markdown(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def plot_results_table(table, note: str = "") -> "matplotlib.figure.Figure":  # noqa: F821
    """Render the display table (transposed: one column per model) as a matplotlib figure; ``note`` (e.g.
    :func:`counts_line`) goes under the title."""
    import matplotlib.pyplot as plt

    t = table.set_index("Model").T
    fig_h = 0.32 * (len(t) + 2)
    fig, ax = plt.subplots(figsize=(3.2 + 3.4 * len(t.columns), fig_h))
    ax.axis("off")
    tab = ax.table(cellText=t.values.astype(str), rowLabels=list(t.index), colLabels=list(t.columns),
                   loc="center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1.0, 1.2)
    ax.set_title("Results (kit protocol and original protocol)" + (f"\n{note}" if note else ""), fontsize=9)
    return fig


def plot_context_gain(rows: Sequence[dict]) -> "matplotlib.figure.Figure":  # noqa: F821
    """Context gain in dB per model with its confidence interval: overall, character in context, not in context."""
    import matplotlib.pyplot as plt

    keys = [("gain_psnr", "all"), ("gain_psnr_in_ctx", "char. in context"), ("gain_psnr_not_in_ctx", "char. not in context")]
    rows = [r for r in rows if finite(r.get("gain_psnr")) and r.get("kind") != "seed run"]
    fig, ax = plt.subplots(figsize=(1.5 + 2.2 * max(len(rows), 1), 3.2))
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        xs, ys, errs = [], [], [[], []]
        for i, r in enumerate(rows):
            v = r.get(key)
            if isinstance(v, float) and math.isfinite(v):
                lo, hi = r.get(f"{key}_lo", v), r.get(f"{key}_hi", v)
                lo = v if not (isinstance(lo, float) and math.isfinite(lo)) else lo
                hi = v if not (isinstance(hi, float) and math.isfinite(hi)) else hi
                xs.append(i + (k - 1) * width)
                ys.append(v)
                errs[0].append(v - lo)
                errs[1].append(hi - v)
        ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n(n={r.get('gain_psnr_n', '-')}, step {r.get('checkpoint_step')})" for r in rows], fontsize=7)
    ax.set_ylabel("PSNR gain from true context (dB)")
    ax.set_title(f"Context gain, {int(100 * (rows[0].get('ci') or 0.95)) if rows else 95}% series-bootstrap CI", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
