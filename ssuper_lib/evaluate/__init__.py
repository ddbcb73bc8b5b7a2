"""Evaluation of trained runs: ``python -m ssuper_lib.evaluate RUN_DIR ...`` (the feature probe:
``python -m ssuper_lib.evaluate.probe``).

* :mod:`.suite`: :func:`evaluate_all` (runs, baselines, seeds, label-free identity) and :func:`evaluate_runs`;
* :mod:`.run`: :func:`evaluate_run`, one results row of a run;
* :mod:`.generate`: the evaluated samples and the faces a model generates from true and shuffled context;
* :mod:`.scoring`: the row's series-bootstrap intervals (:func:`score_faces`);
* :mod:`.metrics` (PSNR, SSIM, bootstrap), :mod:`.fid` (FID/KID through torch-fidelity);
* :mod:`.baselines`, :mod:`.seeds` (training seeds pooled), :mod:`.table` (headline and full results tables,
  results files), :mod:`.portable` (portable paths in result files),
  :mod:`.browser` (:class:`RunBrowser`), :mod:`.probe` (the frozen-feature readout).
"""

from ..data.shuffle import derangement_across_groups, swap_context
from ..identity.classifier import IdentityClassifier, cross_fit_identity
from ..runs import checkpoint_step, latest_run, latest_runs, seed_run_name
from .baselines import evaluate_baselines, training_faces
from .browser import RunBrowser
from .generate import context_groups, eval_context, generate_faces, original_protocol_samples_z
from .run import ORIGINAL_PROTOCOL, evaluate_run, model_label
from .scoring import FaceScores, interval_fields, score_faces
from .seeds import SEED_METRICS, aggregate_seeds
from .suite import add_label_free_identity, evaluate_all, evaluate_runs, identity_embedder, results_rows
from .portable import portable_row, resolve_result_path, run_dirs_from_results
from .table import (counts_line, headline_markdown, headline_table, plot_context_gain, plot_results_table,
                    read_results, results_table, write_results, write_results_markdown)

__all__ = [
    "evaluate_run",
    "evaluate_runs",
    "evaluate_baselines",
    "evaluate_all",
    "aggregate_seeds",
    "results_rows",
    "score_faces",
    "FaceScores",
    "interval_fields",
    "eval_context",
    "generate_faces",
    "original_protocol_samples_z",
    "context_groups",
    "training_faces",
    "identity_embedder",
    "add_label_free_identity",
    "results_table",
    "headline_table",
    "headline_markdown",
    "counts_line",
    "write_results",
    "write_results_markdown",
    "read_results",
    "run_dirs_from_results",
    "resolve_result_path",
    "portable_row",
    "latest_run",
    "latest_runs",
    "seed_run_name",
    "model_label",
    "checkpoint_step",
    "derangement_across_groups",
    "swap_context",
    "IdentityClassifier",
    "cross_fit_identity",
    "RunBrowser",
    "plot_context_gain",
    "plot_results_table",
    "ORIGINAL_PROTOCOL",
    "SEED_METRICS",
]
