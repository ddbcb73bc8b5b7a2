"""One results row of a trained run: :func:`evaluate_run` (kit protocol, original protocol, context gain,
identity accuracy, FID/KID), its per-sample CSV and its saved faces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import metrics as M
from .fid import fid_fields
from .generate import (RunInputs, SplitFaces, default_max_samples, eval_context, generate_split,
                       original_protocol_samples_z, save_faces)
from .scoring import FaceScores, interval_fields, score_faces
from ..config import ExperimentConfig, resolve_device, resolve_path
from ..data.pixels import to_uint8
from ..preprocess.exemplars import candidate_characters
from ..runs import checkpoint_step, eval_cache_dir, load_run

__all__ = ["ORIGINAL_PROTOCOL", "model_label", "evaluate_run", "json_default"]

ORIGINAL_PROTOCOL = "original protocol"

_ENCODER_NAMES = {"plain": "Plain", "lstm": "LSTM", "bilstm": "Bi-LSTM", "convlstm": "ConvLSTM"}
_VARIANT_NAMES = {
    "ssupervae": "SSuperVAE",
    "ssupergan": "SSuperGAN",
    "ssuperglobalgan": "SSuperGlobalGAN",
    "ssupervae_ca": "SSuperVAE with Contextual Attention",
    "ssuper_exemplar": "SSuperGAN with Context Exemplars (beyond the original)",
}


def model_label(cfg: ExperimentConfig) -> str:
    """The original table's model name, e.g. "Bi-LSTM-SSuperGAN"; "Exemplar-SSuperGAN" for the variant beyond it."""
    if cfg.model.variant == "ssuper_exemplar":
        # the design chosen on the realism presets: the MLP scorer and a null margin in the selection target
        robust = cfg.model.exemplar_scorer == "metric+mlp" and cfg.model.exemplar_null_margin > 1.0
        name = "Robust Exemplar-SSuperGAN" if robust else "Exemplar-SSuperGAN"
        return name + (" (copied exemplar)" if cfg.model.exemplar_output == "copy" else "")
    return f"{_ENCODER_NAMES.get(cfg.model.seq_encoder, cfg.model.seq_encoder)}-{_VARIANT_NAMES.get(cfg.model.variant, cfg.model.variant)}"


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    max_samples: int | None = None,
    seed: int = 0,
    *,
    device: str | None = None,
    fid: bool | None = None,
    fid_weights: str | None = None,
    allow_download: bool = True,
    prior_samples: int | None = None,
    n_boot: int | None = None,
    identity: bool = True,
    identity_epochs: int = 30,
    context_gain: bool = True,
    num_workers: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint of ``run_dir`` (``checkpoint``: best | latest; default the run's
    ``eval.checkpoint``, best = lowest validation error) on ``split``; returns one flat results row (a dict).

    ``max_samples`` (default ``eval.max_samples`` of the run's config, -1 = all) evaluates a seeded random
    subset. ``fid`` (default ``eval.fid``) turns FID/KID on; the Inception weights come from
    ``fid_weights`` / ``eval.fid_weights`` / $SSUPER_INCEPTION_WEIGHTS / the cache / a download (when
    ``allow_download``), else the FID entries read "unavailable: ...". Per-sample values are written to
    ``<run_dir>/eval/per_sample_<split>_seed<seed>.csv`` (path in the row's ``per_sample_path``).
    Every interval resamples series (:func:`score_faces`).
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg, model = load_run(run_dir, device=str(dev), checkpoint=checkpoint)
    model.eval()
    ecfg = cfg.eval
    fid = ecfg.fid if fid is None else fid
    n_boot = ecfg.n_bootstrap if n_boot is None else n_boot
    prior_samples = ecfg.prior_samples if prior_samples is None else prior_samples
    max_samples = default_max_samples(ecfg, max_samples)
    cache_dir = eval_cache_dir(cfg, cache_dir)

    ctx = eval_context(cfg, split, max_samples, seed, context_gain)
    inputs = RunInputs.load(cfg, model, ctx["ds"], split, dev, progress=progress)
    faces = generate_split(model, cfg, ctx, inputs, dev, seed, num_workers, progress, desc=run_dir.name)

    row = _row_header(run_dir, cfg, checkpoint_step(run_dir, cfg.eval.checkpoint), seed, split, faces.n)
    bs = dict(n_boot=n_boot, ci=ecfg.ci, seed=seed)
    fields, per_cols = score_faces(_face_scores(faces), ctx, identity=identity, identity_epochs=identity_epochs,
                                   cache_dir=cache_dir, **bs)
    row.update(fields)
    row.update(interval_fields("panel_psnr", faces.panel_psnr, ctx["series"], **bs))
    row.update(_original_psnr_fields(cfg, faces))
    prior_u8 = _prior_faces(model, prior_samples, ecfg.batch_size, seed, dev)
    row.update(fid_fields(faces.true_u8, faces.gen_u8, prior_u8, fid, fid_weights or ecfg.fid_weights,
                          allow_download, ecfg, cache_dir, seed))
    row["context_gain_reason"] = ctx["gain_reason"]

    per = _per_sample_table(ctx, faces, per_cols)
    if faces.attn_rows:
        row.update(_attention_columns(per, faces, ctx, inputs, cfg))
    _write_outputs(run_dir / "eval", row, per, faces, ctx["series"], split, seed, n_boot, ecfg.ci, t0)
    return row


def _row_header(run_dir: Path, cfg: ExperimentConfig, step: int | None, seed: int, split: str, n: int) -> dict:
    return {
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "model": model_label(cfg),
        "kind": "model",
        "variant": cfg.model.variant,
        "seq_encoder": cfg.model.seq_encoder,
        "latent": cfg.model.latent_dim,
        "lstm_hidden": cfg.model.lstm_hidden if cfg.model.seq_encoder != "plain" else None,
        "embed": cfg.model.embed_dim,
        "backbone": cfg.model.backbone,
        "train_seed": cfg.seed,
        "checkpoint": cfg.eval.checkpoint,
        "checkpoint_step": step,
        "eval_seed": seed,
        "split": split,
        "n": n,
    }


def _face_scores(faces: SplitFaces) -> FaceScores:
    shuffled = faces.shuf_u8 is not None
    return FaceScores(faces.true_u8, faces.gen_u8, faces.psnr, faces.ssim, faces.shuf_u8,
                      psnr_shuf=faces.psnr_shuf if shuffled else None, ssim_shuf=faces.ssim_shuf if shuffled else None)


def _original_psnr_fields(cfg: ExperimentConfig, faces: SplitFaces) -> dict[str, Any]:
    """The original protocol's PSNR: batches of ``eval.batch_size`` (1 for the CA fine face), averaged."""
    orig_batch = 1 if cfg.model.variant == "ssupervae_ca" else cfg.eval.batch_size
    po = M.psnr_original_protocol(torch.cat(faces.orig_gen), torch.cat(faces.orig_true), batch_size=orig_batch)
    faces.orig_gen, faces.orig_true = [], []  # no longer needed: free them before FID
    return {"psnr_orig": po["psnr"], "psnr_orig_batches": po["n_batches"], "psnr_orig_batch_size": orig_batch,
            "psnr_orig_n": po["n"], "psnr_orig_input": "G(z~q)" if original_protocol_samples_z(cfg) else "G(mu)"}


def _prior_faces(model: nn.Module, prior_samples: int, batch_size: int, seed: int,
                 dev: torch.device) -> torch.Tensor | None:
    """uint8 prior samples G(z), z ~ N(0, I) (seeded by ``seed + 1``), for the prior FID; None when none asked."""
    if not (prior_samples and prior_samples > 0):
        return None
    with torch.no_grad():
        pg = torch.Generator(device=dev).manual_seed(seed + 1)
        chunks = [model.sample(min(batch_size, prior_samples - s), generator=pg).float().cpu()
                  for s in range(0, prior_samples, batch_size)]
    return to_uint8(torch.cat(chunks))


def _per_sample_table(ctx: dict, faces: SplitFaces, per_cols: dict) -> "pandas.DataFrame":  # noqa: F821
    import pandas as pd

    ds, indices, partners = ctx["ds"], ctx["indices"], ctx["partners"]
    per = pd.DataFrame({
        "index": indices, "series": ctx["series"], "panel": [ds.samples[i].panels[-1] for i in indices],
        "face_box": [" ".join(map(str, ds.samples[i].faces[-1])) for i in indices],
        "psnr": faces.psnr, "ssim": faces.ssim, "panel_psnr": faces.panel_psnr, "psnr_shuffled": faces.psnr_shuf,
        "ssim_shuffled": faces.ssim_shuf,
        "partner": (indices[partners] if partners is not None else np.full(faces.n, -1)),
        "character": ctx["characters"], "in_context": ctx["in_context"],
    })
    for k, v in per_cols.items():
        per[k] = v
    return per


def _attention_columns(per, faces: SplitFaces, ctx: dict, inputs: RunInputs, cfg: ExperimentConfig) -> dict:
    """The exemplar variant's choice per sample (columns of ``per``); with ground truth, the row's share of
    samples whose chosen context face shows the right character."""
    attn = torch.cat(faces.attn_rows).numpy()  # (n, 1 + C): slot 0 = null candidate
    per["attn_choice"] = attn.argmax(1) - 1  # -1 = null
    per["attn_max"] = attn.max(1)
    if not ctx["have_gt"]:
        return {}
    ds, indices = ctx["ds"], ctx["indices"]
    cc = candidate_characters(inputs.exemplars.subset(indices), [ds.samples[i] for i in indices],
                              resolve_path(cfg.data.ground_truth_path))
    right = np.array([c >= 0 and cc[i, c] == t for i, (c, t) in enumerate(zip(per["attn_choice"], ctx["characters"]))])
    return {"select_right_character": float(right.mean())}


def _write_outputs(out_dir: Path, row: dict, per, faces: SplitFaces, series, split: str, seed: int, n_boot: int,
                   ci: float, t0: float) -> None:
    """The run's saved faces, per-sample CSV and row JSON (paths and the last entries added to ``row``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    row["faces_path"] = str(save_faces(out_dir / f"faces_{split}_seed{seed}.pt", faces.gen_u8, faces.true_u8, series))
    per_path = out_dir / f"per_sample_{split}_seed{seed}.csv"
    per.to_csv(per_path, index=False)
    row["per_sample_path"] = str(per_path)
    row["ci"] = ci
    row["n_boot"] = n_boot
    row["eval_seconds"] = round(time.perf_counter() - t0, 1)
    with open(out_dir / f"row_{split}_seed{seed}.json", "w") as f:
        json.dump(row, f, indent=1, default=json_default)


def json_default(o: Any) -> Any:
    """JSON of numpy scalars in rows (anything else as its string)."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)
