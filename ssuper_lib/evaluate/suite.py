"""Evaluation of trained runs: kit protocol, original protocol, context gain, identity accuracy, results table.

Implements docs/design.md 7 on a run directory written by ``ssuper_lib.train``:

* **Kit protocol.** On the test split (by series), faces generated from panel context as G(mu) (the
  fine face for the contextual-attention variant): per-image PSNR and SSIM with bootstrap intervals,
  PSNR of the panel with the face pasted back, pooled FID and KID through torch-fidelity (Inception
  weights resolved by :func:`ssuper_lib.evaluate.fid.resolve_inception_weights`, or "unavailable: ..."), and
  the FID of prior samples G(z), z ~ N(0, I), reported separately.
* **Context gain.** The same model scored again with the context panels (p1, p2) taken from a sample of
  another test series (a seeded derangement across series; the masked panel stays). The paired
  difference of per-image PSNR and of identity correctness, with a paired bootstrap interval, overall
  and split by whether the masked character appears in p1 or p2 (synthetic ground truth). A gain that
  exists only when the character is in context is identity transfer.
* **Identity accuracy** (synthetic data). Characters are per series, so a classifier trained on the
  training series cannot name test characters. The classifier is therefore trained on *true* test faces
  by 2-fold cross-fitting: the evaluated samples are split in two folds (seeded); a small CNN trained on
  the true faces of one fold names the characters of the other fold's generated faces (true context and
  shuffled context) and true faces. No evaluated target face is ever in the training set of the
  classifier that scores it. Its accuracy on the held-out true faces is the ceiling. Classifiers are
  cached by a hash of their training data and settings.
* **Original protocol** (docs/original.md 5), labelled as such everywhere: PSNR of batches of 64 averaged
  over batches (G(mu) for the GAN variants, a sampled z for SSuperVAE, batch 1 for the CA fine face as
  the original scripts), and the per-batch FID of prior samples against batch-averaged real statistics.

Every number in a row carries its sample count, the evaluation seed and the checkpoint step.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .baselines import evaluate_baselines
from .fid import resolve_inception_weights
from .portable import portable_row, resolved_row
from .run import evaluate_run, json_default
from .scoring import interval_fields
from .seeds import aggregate_seeds
from ..config import ExperimentConfig, load_config, resolve_path
from ..data.datasets import read_split
from ..identity.label_free import embed, label_free_identity, validate_against_identity
from ..identity.siamese_training import cached_siamese, synthetic_identity_faces
from ..models.siamese import load_original_siamese, load_siamese
from ..preprocess.sequences import split_path
from ..progress import format_seconds, note
from ..runs import checkpoint_step, eval_cache_dir, load_run

__all__ = ["evaluate_all", "evaluate_runs", "results_rows", "baseline_config", "identity_embedder", "add_label_free_identity"]


def evaluate_all(run_dirs: Sequence[str | Path], split: str = "test", seed: int = 0, baselines: bool = True,
                 reuse: bool = True, progress: bool = True, label_free: bool = True, siamese_steps: int | None = None,
                 **kwargs) -> dict[str, Any]:
    """Evaluate runs, the baselines (on the data of the first run's config, same samples and seed) and
    aggregate training seeds. Returns {"runs": one row per run, "baselines": [...], "table": the rows to show
    (multi-seed models aggregated by :func:`aggregate_seeds`, then baselines and oracle)}."""
    run_rows = evaluate_runs(run_dirs, reuse=reuse, split=split, seed=seed, progress=progress, **kwargs)
    base_rows: list[dict] = []
    if baselines and run_dirs:
        cfg = baseline_config(run_dirs)
        keys = ("max_samples", "n_boot", "identity", "identity_epochs", "cache_dir", "context_gain")
        bkw = {k: v for k, v in kwargs.items() if k in keys}
        t0 = time.perf_counter()
        note(f"evaluate baselines and oracle on the {split} split")
        base_rows = evaluate_baselines(cfg, split=split, seed=seed, k_per_panel=cfg.model.exemplar_k, **bkw)
        note(f"evaluate baselines and oracle: done in {format_seconds(time.perf_counter() - t0)}")
    n_boot = kwargs.get("n_boot") or 1000
    lf_text = ""
    if label_free and run_dirs:
        cfg, _ = load_run(run_dirs[0])
        if cfg.eval.label_free:
            note("label-free identity: Siamese face embedding (trained once per data set, then cached)")
            embedder, why = identity_embedder(cfg, kwargs.get("cache_dir"), progress=progress, steps=siamese_steps)
            if embedder is None:
                lf_text = f"label-free identity metric unavailable: {why}"
            else:
                lf_text = add_label_free_identity(run_rows + base_rows, embedder, seed=seed, n_boot=n_boot)["text"]
    table = aggregate_seeds(run_rows, n_boot=n_boot, seed=seed) + base_rows
    if lf_text:
        for r in table:
            r["lf_note"] = lf_text
    return {"runs": run_rows, "baselines": base_rows, "table": table, "label_free": lf_text}


def baseline_config(run_dirs: Sequence[str | Path]) -> ExperimentConfig:
    """The config the baselines are computed with: the first Exemplar-SSuperGAN run's (its candidates per
    panel, ``model.exemplar_k``, and its crop size, ``model.exemplar_ctx_size``, are the baselines' too, so
    the learned selector and the untrained rules see the same candidates), else the first run's."""
    def config_of(rd) -> ExperimentConfig:  # the run's resolved config.yaml; the checkpoint's when it has none
        f = Path(rd) / "config.yaml"
        return load_config(f) if f.is_file() else load_run(rd)[0]

    cfgs = [config_of(rd) for rd in run_dirs]
    return next((c for c in cfgs if c.model.variant == "ssuper_exemplar"), cfgs[0])


def results_rows(result: dict[str, list[dict]]) -> list[dict]:
    """The rows of ``results.csv``: the table's rows, then each seed's own row of multi-seed models
    (kind "seed run")."""
    shown = {r["run"] for r in result["table"]}
    extra = [{**r, "kind": "seed run"} for r in result["runs"] if r["run"] not in shown]
    return list(result["table"]) + extra


def evaluate_runs(run_dirs: Sequence[str | Path], reuse: bool = True, split: str = "test", seed: int = 0,
                  progress: bool = True, **kwargs) -> list[dict]:
    """:func:`evaluate_run` for several runs. With ``reuse``, a run's saved row
    (``<run>/eval/row_<split>_seed<seed>.json``) is returned instead when it was computed from the same
    checkpoint step with the same settings and the same Inception-weights availability."""
    rows = []
    for i, rd in enumerate(run_dirs, 1):
        rd = Path(rd)
        key = _settings_key(rd, split, seed, kwargs)
        saved = rd / "eval" / f"row_{split}_seed{seed}.json"
        if reuse and saved.is_file():
            row = resolved_row(json.loads(saved.read_text()), rd.parent)  # paths stored portable
            if row.get("settings_key") == key:
                note(f"evaluate {rd.name} ({i}/{len(run_dirs)}): reusing its saved row")
                rows.append(row)
                continue
        note(f"evaluate {rd.name} ({i}/{len(run_dirs)}): faces, PSNR/SSIM, context gain, identity, FID")
        t0 = time.perf_counter()
        row = evaluate_run(rd, split=split, seed=seed, progress=progress, **kwargs)
        note(f"evaluate {rd.name} ({i}/{len(run_dirs)}): done in {format_seconds(time.perf_counter() - t0)}")
        row["settings_key"] = key
        saved.write_text(json.dumps(portable_row(row, rd.parent), indent=1, default=json_default))
        rows.append(row)
    return rows


def _settings_key(run_dir: Path, split: str, seed: int, kwargs: dict) -> str:
    explicit = kwargs.get("fid_weights")
    weights = resolve_inception_weights(explicit, allow_download=False)
    facts = {"step": checkpoint_step(run_dir), "split": split, "seed": seed, "weights": weights.source,
             **{k: v for k, v in sorted(kwargs.items()) if k not in ("progress", "num_workers")}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def identity_embedder(cfg: ExperimentConfig, cache_dir: str | Path | None = None, progress: bool = False,
                      steps: int | None = None):
    """The Siamese embedder of the label-free identity metric: ``eval.siamese_weights`` (a kit checkpoint or
    the original's whole-model pickle, loaded safely), else one trained on the training series' ground-truth
    identities of a synthetic data set (cached). None when neither is possible (reason in the second value)."""
    w = cfg.eval.siamese_weights
    if w:
        path = resolve_path(w)
        try:
            return load_siamese(path), ""
        except Exception:  # noqa: BLE001 - not a kit checkpoint: try the original's pickle format
            return load_original_siamese(path), ""
    gt = cfg.data.ground_truth_path
    if not gt or not resolve_path(gt).is_file():
        return None, "no Siamese weights (eval.siamese_weights) and no synthetic ground truth to train one"
    cache_dir = eval_cache_dir(cfg, cache_dir)
    sp = split_path(cfg.data)
    train_series = read_split(sp)["train"] if sp.is_file() else None
    faces = synthetic_identity_faces(resolve_path(gt).parent, series=train_series)
    steps = cfg.eval.siamese_steps if steps is None else steps
    return cached_siamese(faces, cache_dir, steps=steps, seed=0, progress=progress), ""


def add_label_free_identity(rows: Sequence[dict], embedder, k: int = 20, seed: int = 0, n_boot: int = 1000,
                            ci: float = 0.95) -> dict:
    """Add the label-free identity metric (``lf_top1`` with its series-bootstrap interval, ``lf_mrr``,
    ``lf_verify``, ...) to every row that has saved faces, and return its validation against ground-truth
    identity accuracy (Spearman rho over the rows)."""
    true_emb: dict[str, torch.Tensor] = {}  # the rows of a table share their true faces: embed them once
    for r in rows:
        path = r.get("faces_path")
        if not path or not Path(path).is_file():
            continue
        f = torch.load(path, weights_only=True)
        key = hashlib.sha256(f["true"].numpy().tobytes()).hexdigest()
        if key not in true_emb:
            true_emb[key] = embed(embedder, f["true"])
        lf = label_free_identity(f["gen"], f["true"], f["series"], f["true"], f["series"], embedder, k=k, seed=seed,
                                 true_embeddings=true_emb[key])
        r.update(lf["summary"])
        per = lf["per_sample"]
        r.update(interval_fields("lf_top1", per["top1"].to_numpy(), per["series"].to_numpy(),
                                 sel=per["n_candidates"].to_numpy() > 0, n_boot=n_boot, ci=ci, seed=seed))
    val = validate_against_identity([r for r in rows if r.get("kind") != "seed run"])
    for r in rows:
        r["lf_rho_vs_id_acc"] = val["rho"]
    return val
