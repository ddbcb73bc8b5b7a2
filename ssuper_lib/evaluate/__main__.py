"""``python -m ssuper_lib.evaluate RUN_DIR [RUN_DIR ...]``: evaluate runs beside the baselines (notebook 05)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from .portable import resolve_result_path, run_dirs_from_results
from .suite import evaluate_all, results_rows
from .table import headline_markdown, plot_context_gain, write_results
from ..config import resolve_path
from ..data.comics import DataFileError
from ..runs import is_run_dir
from ..storage import CheckpointError
from ..viz import save_figure

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssuper_lib.evaluate RUN_DIR [RUN_DIR ...]``: the rows, tables and figures of notebook 05."""
    ap = argparse.ArgumentParser(prog="python -m ssuper_lib.evaluate",
                                 description="Evaluate trained runs (kit protocol, original protocol, context gain, "
                                             "identity accuracy) beside the baselines; writes results.csv/.md and figures.")
    ap.add_argument("run_dirs", nargs="*", help="run directories runs/<NNNNN>-<name>/ (several seeds of one model are "
                    "aggregated); a relative one is also looked for under the repository and --runs-root")
    ap.add_argument("--results", default=None, help="re-evaluate the runs a results.csv names (its run_dir column)")
    ap.add_argument("--runs-root", default="runs", help="folder of run directories, for relative names (default: runs)")
    ap.add_argument("--split", default="test", choices=["test", "val"], help="evaluated split (val while tuning)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed: subset, context shuffling, bootstrap, classifier")
    ap.add_argument("--fid-weights", default=None, help="torch-fidelity Inception weights file (offline nodes)")
    ap.add_argument("--out", default="data_stats", help="folder of results.csv / results.md")
    ap.add_argument("--figures", default="figures", help="folder of the results and context-gain figures")
    ap.add_argument("--max-samples", type=int, default=None, help="evaluate a seeded subset of this size")
    ap.add_argument("--checkpoint", choices=["best", "latest"], default=None, help="default: each run's eval.checkpoint (best)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the baseline and oracle rows")
    ap.add_argument("--no-reuse", action="store_true", help="recompute rows saved by an earlier evaluation")
    ap.add_argument("--no-label-free", action="store_true", help="skip the label-free (Siamese) identity metric")
    ap.add_argument("--siamese-steps", type=int, default=None,
                    help="training steps of the Siamese model when none is given (default: eval.siamese_steps)")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    args = ap.parse_args(argv)
    dirs = [Path(d) if Path(d).is_dir() else resolve_result_path(d, args.runs_root) for d in args.run_dirs]
    if args.results:
        dirs += run_dirs_from_results(resolve_path(args.results) if not Path(args.results).is_file() else args.results,
                                      args.runs_root)
    missing = [str(d) for d in dirs if not is_run_dir(d)]  # a folder without checkpoints/latest.pt or best.pt
    if missing or not dirs:
        ap.error(f"not a run directory: {', '.join(missing)} (no checkpoints/latest.pt or best.pt in it; pass "
                 f"runs/<NNNNN>-<name>/ of a training run that saved a checkpoint)" if missing
                 else "give run directories or --results")
    kwargs: dict[str, Any] = {"device": args.device, "checkpoint": args.checkpoint}
    if args.fid_weights:
        kwargs["fid_weights"] = args.fid_weights
    if args.max_samples is not None:
        kwargs["max_samples"] = args.max_samples
    try:
        result = evaluate_all(dirs, split=args.split, seed=args.seed, baselines=not args.no_baselines,
                              reuse=not args.no_reuse, progress=True, label_free=not args.no_label_free,
                              siamese_steps=args.siamese_steps, **kwargs)
    except (CheckpointError, DataFileError) as exc:  # a damaged checkpoint or data file: one line naming it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths = write_results(results_rows(result), args.out, args.figures, table_rows=result["table"], runs_root=args.runs_root)
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_context_gain(result["table"])
    paths["gain"] = save_figure(fig, "05_context_gain", out_dir=resolve_path(args.figures))[0]
    print(headline_markdown(result["table"]))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
