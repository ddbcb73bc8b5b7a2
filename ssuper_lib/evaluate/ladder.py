"""The realism ladder: one table and one figure of every model and baseline across the realism presets.

``scripts/realism_ladder.sh`` evaluates the demo models beside the baselines on data sets generated with
each realism preset (``python -m ssuper_lib.data.synthetic --realism {clean,real,hard}``) and writes one
``results.csv`` per preset and data seed under ``data_stats/ladder/<preset>-seed<S>/``. This module gathers
them::

    python -m ssuper_lib.evaluate.ladder data_stats/ladder --figure figures/realism_ladder.png

It writes ``ladder.csv`` and ``ladder.md`` beside the per-preset folders (identity accuracy and PSNR with
their series-bootstrap intervals, one row per model or baseline and data seed) and the figure: identity
accuracy and PSNR per model and baseline across the ladder. The clean preset of data seed 0 is the demo's
own data set: when ``data_stats/ladder/clean-seed0/`` is missing, the demo's ``results.csv`` (``--clean``)
stands for it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

__all__ = ["PRESET_ORDER", "collect_ladder", "ladder_markdown", "plot_ladder", "main"]

PRESET_ORDER = ("clean", "real", "hard")
_FOLDER = re.compile(r"^(?P<preset>[a-z]+)-seed(?P<seed>\d+)$")
_KINDS = ("model", "baseline", "oracle")


def collect_ladder(root: str | Path, clean_results: str | Path | None = None) -> "pandas.DataFrame":  # noqa: F821
    """One row per (preset, data seed, model or baseline) from ``<root>/<preset>-seed<S>/results.csv``."""
    import pandas as pd

    root = Path(root)
    tables = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        m = _FOLDER.match(folder.name)
        if m and (folder / "results.csv").is_file():
            tables[(m["preset"], int(m["seed"]))] = folder / "results.csv"
    demo = Path(clean_results) if clean_results is not None and Path(clean_results).is_file() else None
    if ("clean", 0) not in tables and demo is not None:
        tables[("clean", 0)] = demo
    if not tables:
        raise FileNotFoundError(f"no <preset>-seed<S>/results.csv under {root}; run scripts/realism_ladder.sh first")
    cols = ["model", "kind", "n", "n_series", "train_seeds", "psnr", "psnr_lo", "psnr_hi", "id_acc", "id_acc_lo",
            "id_acc_hi", "id_acc_ceiling"]
    rows = []
    for (preset, seed), path in tables.items():
        df = pd.read_csv(path)
        df = df[df["kind"].isin(_KINDS)]
        if (preset, seed) == ("clean", 0) and demo is not None and path != demo:
            # the demo's models (trained on the same data: the clean preset writes the demo's files) join the
            # rows evaluated here, e.g. a variant the demo does not train
            extra = pd.read_csv(demo)
            extra = extra[extra["kind"].isin(_KINDS) & ~extra["model"].isin(set(df["model"]))]
            df = pd.concat([extra, df], ignore_index=True)
        for _, r in df.iterrows():
            row = {"preset": preset, "data_seed": seed, "source": str(path)}
            row.update({c: r.get(c) for c in cols})
            rows.append(row)
    out = pd.DataFrame(rows)
    order = {p: i for i, p in enumerate(PRESET_ORDER)}
    out["_o"] = out["preset"].map(lambda p: order.get(p, len(order)))
    return out.sort_values(["data_seed", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def _cell(v, lo, hi, scale: float = 1.0, digits: int = 1) -> str:
    if v != v:  # NaN
        return "-"
    return f"{v * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def ladder_markdown(df) -> str:
    """Identity accuracy % and PSNR dB per model/baseline (rows) and preset (columns), per data seed."""
    lines = []
    for seed, part in df.groupby("data_seed", sort=True):
        presets = [p for p in PRESET_ORDER if p in set(part["preset"])]
        info = ", ".join(f"{p}: n={int(g['n'].iloc[0])} faces, {int(g['n_series'].iloc[0])} test series"
                         for p, g in part.groupby("preset", sort=False))
        lines.append(f"Data seed {seed} ({info}).")
        lines.append("")
        head = "| Model or baseline | " + " | ".join(f"Identity % ({p})" for p in presets) + " | " + \
            " | ".join(f"PSNR dB ({p})" for p in presets) + " |"
        lines += [head, "|" + "---|" * (1 + 2 * len(presets))]
        for model in dict.fromkeys(part["model"]):
            cells_id, cells_psnr = [], []
            for p in presets:
                r = part[(part["model"] == model) & (part["preset"] == p)]
                if r.empty:
                    cells_id.append("-")
                    cells_psnr.append("-")
                    continue
                r = r.iloc[0]
                cells_id.append(_cell(r["id_acc"], r["id_acc_lo"], r["id_acc_hi"], 100.0))
                cells_psnr.append(_cell(r["psnr"], r["psnr_lo"], r["psnr_hi"], 1.0, 2))
            lines.append(f"| {model} | " + " | ".join(cells_id + cells_psnr) + " |")
        lines.append("")
    lines.append("Intervals: 95% series bootstrap over the test series. The oracle copies a context face of the "
                 "right character by ground truth and is never ranked as a model.")
    return "\n".join(lines) + "\n"


def plot_ladder(df, path: str | Path, data_seed: int = 0) -> Path:
    """Identity accuracy and PSNR across the presets, one line per model and baseline (data seed ``data_seed``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = df[df["data_seed"] == data_seed]
    presets = [p for p in PRESET_ORDER if p in set(part["preset"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, scale, label) in zip(axes, (("id_acc", 100.0, "identity accuracy %"), ("psnr", 1.0, "PSNR dB"))):
        for model in dict.fromkeys(part["model"]):
            xs, ys, lo, hi = [], [], [], []
            for i, p in enumerate(presets):
                r = part[(part["model"] == model) & (part["preset"] == p)]
                if r.empty or r.iloc[0][key] != r.iloc[0][key]:
                    continue
                r = r.iloc[0]
                xs.append(i)
                ys.append(r[key] * scale)
                lo.append((r[key] - r[f"{key}_lo"]) * scale)
                hi.append((r[f"{key}_hi"] - r[key]) * scale)
            kind = part[part["model"] == model]["kind"].iloc[0]
            style = {"model": "-o", "baseline": "--s", "oracle": ":^"}.get(kind, "-")
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=model, lw=1.6 if kind == "model" else 1.0)
        ax.set_xticks(range(len(presets)), presets)
        ax.set_xlabel("realism preset")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"The realism ladder (data seed {data_seed}; 95% series-bootstrap intervals)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssuper_lib.evaluate.ladder", description=__doc__.split("\n")[0])
    ap.add_argument("root", nargs="?", default="data_stats/ladder", help="folder of <preset>-seed<S>/results.csv")
    ap.add_argument("--clean", default="data_stats/results.csv", help="results.csv standing for clean, data seed 0")
    ap.add_argument("--figure", default="figures/realism_ladder.png")
    args = ap.parse_args(argv)
    try:
        df = collect_ladder(args.root, args.clean)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "ladder.csv", index=False)
    (root / "ladder.md").write_text(ladder_markdown(df))
    plot_ladder(df, args.figure)
    print(f"wrote {root / 'ladder.csv'}, {root / 'ladder.md'} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
