"""The results table: display formatting of rows, results.csv / results.md, and the results figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .fid import FID_ORIG_BATCH, is_unavailable
from ..config import resolve_path
from ..viz import save_figure

__all__ = ["results_table", "write_results", "plot_results_table", "plot_context_gain", "finite"]


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt_ci(row: dict, key: str, digits: int = 2, pct: bool = False, counts: bool = True) -> str:
    """"mean [lo, hi] (n=.., k series)"; for a multi-seed row also "; seeds m +- sd"."""
    v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if is_unavailable(v) else v
    scale = 100.0 if pct else 1.0
    lo, hi, n, k = row.get(f"{key}_lo"), row.get(f"{key}_hi"), row.get(f"{key}_n"), row.get(f"{key}_n_series")
    s = f"{v * scale:.{digits}f}"
    if finite(lo) and finite(hi):
        s += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    if counts and finite(n):
        s += f" (n={int(n)}" + (f", {int(k)} series)" if finite(k) else ")")
    sd = row.get(f"{key}_seed_sd")
    if finite(sd):
        s += f"; seeds {row[f'{key}_seed_mean'] * scale:.{digits}f} +- {sd * scale:.{digits}f}"
    return s


def _fmt_num(v: Any, digits: int = 2, n: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if is_unavailable(v) else v
    s = f"{v:.{digits}f}"
    return s + (f" (n={n})" if n is not None else "")


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _fmt_p(row: dict, key: str, digits: int = 2, pct: bool = False) -> str:
    s = _fmt_ci(row, key, digits, pct, counts=False)
    p = row.get(f"{key}_p")
    return s + (f" p={p:.3f}" if finite(p) else "")


def _int_or_dash(v: Any) -> Any:
    return "-" if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else int(v)


def results_table(rows: Sequence[dict]) -> "pandas.DataFrame":  # noqa: F821
    """Display table like the original's Figure 2 (model, latent, LSTM hidden, embedding, PSNR, FID), with
    both protocols, the context gain and identity accuracy, baselines and the oracle as rows of their own.
    Intervals resample series (n = faces, k series); multi-seed rows add the between-seed mean +- sd.
    Values are formatted strings ("unavailable" where a metric could not be computed)."""
    import pandas as pd

    out = []
    for r in rows:
        out.append({
            "Model": r["model"],
            "Kind": r.get("kind", "model"),
            "Train seeds": r.get("train_seeds", r.get("train_seed", "-")),
            "Latent": _int_or_dash(r.get("latent")),
            "LSTM hidden": _int_or_dash(r.get("lstm_hidden")),
            "Embed": _int_or_dash(r.get("embed")),
            "PSNR (kit)": _fmt_ci(r, "psnr"),
            "SSIM (kit)": _fmt_ci(r, "ssim", 3, counts=False),
            "Panel PSNR (kit)": _fmt_ci(r, "panel_psnr", counts=False),
            "FID (kit)": _fmt_num(r.get("fid"), 1, r.get("fid_n")),
            "KID x1e3 (kit)": _fmt_num(r["kid"] * 1e3, 2, r.get("fid_n")) if isinstance(r.get("kid"), float) else _fmt_num(r.get("kid")),
            "Prior FID (kit)": _fmt_num(r.get("fid_prior"), 1, r.get("fid_prior_n")),
            "PSNR (original protocol)": _fmt_num(r.get("psnr_orig"), 2, r.get("psnr_orig_n")),
            "FID (original protocol)": _fmt_num(r.get("fid_orig"), 1, r.get("fid_prior_n")),
            "Context gain dB": _fmt_ci(r, "gain_psnr", counts=False),
            "Gain, char in context": _fmt_ci(r, "gain_psnr_in_ctx"),
            "Gain, char not in context": _fmt_ci(r, "gain_psnr_not_in_ctx"),
            "Gain in - not in context": _fmt_p(r, "gain_psnr_in_minus_not"),
            "Identity acc % (true ctx)": _fmt_ci(r, "id_acc", 1, pct=True, counts=False),
            "Identity acc % (shuffled ctx)": _fmt_ci(r, "id_acc_shuffled", 1, pct=True, counts=False),
            "Identity gain %": _fmt_ci(r, "gain_id", 1, pct=True, counts=False),
            "Identity acc %, char in context": _fmt_ci(r, "id_acc_in_ctx", 1, pct=True),
            "Identity ceiling % / chance %": _pct(r.get("id_acc_ceiling")) + " / " + _pct(r.get("id_chance")),
            "Label-free top-1 % / MRR (Siamese)": (_pct(r.get("lf_top1")) + " / " + _fmt_num(r.get("lf_mrr"), 3))
            if finite(r.get("lf_top1")) else "-",
            "Eval seed": r.get("eval_seed"),
            "Step": r.get("checkpoint_step", "-") if r.get("kind", "model") == "model" else "-",
        })
    return pd.DataFrame(out)


def write_results(rows: Sequence[dict], stats_dir: str | Path = "data_stats", figures_dir: str | Path = "figures",
                  figure_name: str = "05_results_table", table_rows: Sequence[dict] | None = None) -> dict[str, Path]:
    """data_stats/results.csv (raw rows, numbers and "unavailable: ..." strings), data_stats/results.md
    (the display table of ``table_rows``, default ``rows``, and the notes) and the rendered PNG figures/<figure_name>.png."""
    import pandas as pd

    stats_dir, figures_dir = resolve_path(stats_dir), resolve_path(figures_dir)
    stats_dir.mkdir(parents=True, exist_ok=True)
    raw = pd.DataFrame(list(rows))
    csv = stats_dir / "results.csv"
    raw.to_csv(csv, index=False)
    table = results_table(rows if table_rows is None else table_rows)
    notes = [
        "",
        "Intervals: 95% series bootstrap (whole test series resampled: faces of a series share a cast and "
        "overlapping windows share panels); n = faces, k = series. Multi-seed rows: pooled interval of the "
        "per-sample values averaged over training seeds, then the between-seed mean +- sd.",
        "Baselines and the oracle (kind) are computed by the same code on the same samples; the oracle uses "
        "synthetic ground truth and is never ranked as a model.",
        "Kit protocol: test split by series, G(mu), per-image PSNR/SSIM mean [CI] (n = faces); "
        "FID/KID pooled over all test faces (torch-fidelity Inception, uint8); prior FID on G(z), z ~ N(0, I).",
        "Original protocol (docs/original.md 5): batch-of-64 PSNR averaged over batches; per-batch FID of prior "
        f"samples (batches of {FID_ORIG_BATCH}) against batch-averaged real statistics. Not comparable with "
        "standard FID nor with the original table's numbers (other data).",
        "Context gain: PSNR(true context) - PSNR(context panels from another series), paired bootstrap CI.",
    ]
    lf_notes = {r.get("lf_note") for r in (table_rows or rows) if r.get("lf_note")}
    if lf_notes:
        notes.append("Label-free identity (real COMICS has no character labels): a Siamese face embedding ranks the "
                     "true face against 20 faces of other series (same-series faces may show the same character and "
                     "are never negatives); top-1 = the generated face's nearest is the true face, MRR = mean "
                     "reciprocal rank; chance top-1 = 1/21.")
    notes += sorted(lf_notes)
    seen = set()
    for r in rows:
        for key in ("fid", "fid_prior", "fid_orig"):
            if is_unavailable(r.get(key)) and r[key] not in seen:
                seen.add(r[key])
                notes.append(f"FID {r[key]}")
    md = stats_dir / "results.md"
    md.write_text(_markdown(table) + "\n" + "\n".join(notes) + "\n")
    fig = plot_results_table(table)
    png = save_figure(fig, figure_name, out_dir=figures_dir)[0]
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {"csv": csv, "md": md, "png": png}


def _markdown(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def plot_results_table(table) -> "matplotlib.figure.Figure":  # noqa: F821
    """Render the display table (transposed: one column per model) as a matplotlib figure."""
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
    ax.set_title("Results (kit protocol and original protocol; n = samples)", fontsize=9)
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
