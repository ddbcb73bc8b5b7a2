"""Evaluation of trained runs: kit protocol, original protocol, context gain, identity accuracy, results table.

Implements DESIGN.md 7 on a run directory written by ``ssuper_lib.train``:

* **Kit protocol.** On the test split (by series), faces generated from panel context as G(mu) (the
  fine face for the contextual-attention variant): per-image PSNR and SSIM with bootstrap intervals,
  PSNR of the panel with the face pasted back, pooled FID and KID through torch-fidelity (Inception
  weights resolved by :func:`ssuper_lib.metrics.resolve_inception_weights`, or "unavailable: ..."), and
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
* **Original protocol** (REFERENCE.md 5), labelled as such everywhere: PSNR of batches of 64 averaged
  over batches (G(mu) for the GAN variants, a sampled z for SSuperVAE, batch 1 for the CA fine face as
  the original scripts), and the per-batch FID of prior samples against batch-averaged real statistics.

Every number in a row carries its sample count, the evaluation seed and the checkpoint step.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import metrics as M
from ..config import REPO_ROOT, ExperimentConfig, resolve_path
from ..identity.classifier import IdentityClassifier, cross_fit_identity, train_identity_classifier
from ..data.shuffle import derangement_across_groups, swap_context
from ..runs import checkpoint_step, latest_run, latest_runs, seed_run_name
from ..storage import atomic_torch_save

__all__ = [
    "evaluate_run",
    "evaluate_runs",
    "evaluate_baselines",
    "evaluate_all",
    "aggregate_seeds",
    "results_rows",
    "score_faces",
    "eval_context",
    "results_table",
    "write_results",
    "latest_run",
    "latest_runs",
    "model_label",
    "checkpoint_step",
    "derangement_across_groups",
    "IdentityClassifier",
    "cross_fit_identity",
    "RunBrowser",
    "plot_context_gain",
    "plot_results_table",
]

ORIGINAL_PROTOCOL = "original protocol"
FID_ORIG_BATCH = 256  # per-batch FID batch of the original protocol (REFERENCE.md 5.2: 128-256)

_ENCODER_NAMES = {"plain": "Plain", "lstm": "LSTM", "bilstm": "Bi-LSTM", "convlstm": "ConvLSTM"}
_VARIANT_NAMES = {
    "ssupervae": "SSuperVAE",
    "ssupergan": "SSuperGAN",
    "ssuperglobalgan": "SSuperGlobalGAN",
    "ssupervae_ca": "SSuperVAE with Contextual Attention",
    "ssuper_exemplar": "SSuperGAN with Context Exemplars (beyond the original)",
}


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def model_label(cfg: ExperimentConfig) -> str:
    """The original table's model name, e.g. "Bi-LSTM-SSuperGAN"; "Exemplar-SSuperGAN" for the variant beyond it."""
    if cfg.model.variant == "ssuper_exemplar":
        return "Exemplar-SSuperGAN"
    return f"{_ENCODER_NAMES.get(cfg.model.seq_encoder, cfg.model.seq_encoder)}-{_VARIANT_NAMES.get(cfg.model.variant, cfg.model.variant)}"


# --------------------------------------------------------------------------------------------------
# Context shuffling
# --------------------------------------------------------------------------------------------------


class _PairedSamples(Dataset):
    """Item i: the dataset's sample ``indices[i]`` plus ``panels_shuffled``, the same panels with the context
    panels replaced by those of sample ``partners[i]`` (the masked panel stays)."""

    def __init__(self, base: Dataset, indices: Sequence[int], partners: Sequence[int] | None, masked_pos: int,
                 load_partners: bool = True):
        self.base, self.indices, self.partners, self.masked_pos = base, list(indices), partners, masked_pos
        self.load_partners = load_partners  # False: the shuffled context comes from cached features instead

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[self.indices[i]])
        item["pos"] = i
        if self.partners is not None and self.load_partners:
            other = self.base[self.indices[self.partners[i]]]["panels"]  # (S, 3, H, W)
            item["panels_shuffled"] = swap_context(item["panels"], other, self.masked_pos)
        return item


def _collate(items: list[dict]) -> dict:
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if torch.is_tensor(vals[0]) else vals
    return out


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def context_groups(gt: Sequence[dict], masked: int) -> list[bool | None]:
    """Per sample: True when the target character appears in a context panel, False when it does not, and
    None when the target character itself is unknown (its own group, counted in neither)."""
    out: list[bool | None] = []
    for g in gt:
        target = g["target_character"]
        if target is None:
            out.append(None)
        else:
            out.append(any(target in cs for j, cs in enumerate(g["context_characters"]) if j != masked))
    return out


def original_protocol_samples_z(cfg) -> bool:
    """Whether the original's evaluation of this row generated from a sampled z ~ q(z | panels) (True) or
    from G(mu) (False), REFERENCE.md 5.1 and 0.4: SSuperVAE (``eval_ssupervae.py``) and the CA model
    (``forward`` samples z, PSNR on the fine faces) sampled; so did the ``global-disc`` notebook that
    evaluated Plain-SSuperGlobalGAN. The SSuperGAN scripts and main's global trainer (Bi-LSTM, z = mu)
    used G(mu)."""
    variant, encoder = cfg.model.variant, cfg.model.seq_encoder
    return variant in ("ssupervae", "ssupervae_ca") or (variant == "ssuperglobalgan" and encoder == "plain")


@torch.no_grad()
def generate_faces(model: nn.Module, panels: torch.Tensor, mask: torch.Tensor, mask_coords: torch.Tensor,
                   sample_z: bool = False, generator: torch.Generator | None = None,
                   extra: dict[str, torch.Tensor] | None = None, masked_pos: int = -1,
                   feats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Faces from panel context: {"mu", "face"} with face = G(mu) (or G(z), z ~ q(z|panels), when
    ``sample_z``); for the contextual-attention variant "face" is the refined fine face and "coarse" G(mu).
    ``extra``: the context exemplars of the batch for the exemplar variant (adds "attn", "exemplar").
    ``masked_pos``: index of the masked panel along S (-1 chronological, 0 for data.panel_order=masked_first).
    ``feats``: the panels' frozen-backbone features (B, S, F[, h, w]) when known; the backbone is then skipped."""
    from ..models.sequence import reparameterize

    mu, log_sigma = model.encode(panels) if feats is None else model.encode_features(feats)  # (B, latent) each
    z = reparameterize(mu, log_sigma, generator=generator) if sample_z else mu
    out = {"mu": mu}
    if extra is not None and hasattr(model, "exemplar_forward"):
        ex = model.exemplar_forward(z, extra)
        face = ex["face"]
        out.update(attn=ex["attn"], exemplar=ex["exemplar"])
    else:
        face = model.generate(z)  # (B, 3, 64, 64)
    out["face"] = face
    if getattr(model, "refiner", None) is not None:
        refined = model.refine(panels[:, masked_pos], face, mask, mask_coords)  # (B, 3, H, W): the masked panel
        out["coarse"] = face
        out["face"] = refined["fine_face"]
    return out


# --------------------------------------------------------------------------------------------------
# evaluate_run
# --------------------------------------------------------------------------------------------------


def _device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def eval_context(cfg: ExperimentConfig, split: str, max_samples: int | None, seed: int, context_gain: bool,
                  return_gt_panel: bool = True) -> dict[str, Any]:
    """The evaluated samples of ``split``: dataset, indices (seeded subset), series, shuffling partners,
    ground-truth characters and whether the target character is in a context panel (True / False / None =
    unknown target)."""
    from ..data.datasets import PanelSequenceDataset, match_ground_truth

    ds = PanelSequenceDataset.from_config(cfg.data, split=split, return_gt_panel=return_gt_panel, augment=False)
    if len(ds) == 0:
        raise ValueError(f"the {split} split of {cfg.data.sequence_path} holds no samples")
    indices = np.arange(len(ds))
    if max_samples is not None and max_samples < len(ds):
        indices = np.sort(np.random.default_rng([seed, 31337]).choice(len(ds), size=max_samples, replace=False))
    series = [ds.samples[i].series for i in indices]
    gain_reason, partners = "", None
    if context_gain:
        try:
            partners = derangement_across_groups(series, seed=seed)
        except ValueError as exc:
            gain_reason = str(exc)
    else:
        gain_reason = "context gain not requested"
    gt_csv = cfg.data.ground_truth_path
    have_gt = bool(gt_csv) and resolve_path(gt_csv).is_file()
    characters: list[str | None] = [None] * len(indices)
    in_context: list[bool | None] = [None] * len(indices)
    if have_gt:
        gt = match_ground_truth([ds.samples[i] for i in indices], resolve_path(gt_csv))
        masked = len(ds.samples[indices[0]].panels) - 1
        characters = [g["target_character"] for g in gt]
        in_context = context_groups(gt, masked)  # None: unknown target character, its own group
    return {"ds": ds, "indices": indices, "series": series, "partners": partners, "gain_reason": gain_reason,
            "have_gt": have_gt, "characters": characters, "in_context": in_context}


def score_faces(true_u8: torch.Tensor, gen_u8: torch.Tensor, shuf_u8: torch.Tensor | None, series: Sequence[str],
                characters: Sequence[str | None], in_context: Sequence[bool | None], *, have_gt: bool,
                psnr: np.ndarray, ssim: np.ndarray, psnr_shuf: np.ndarray | None = None,
                ssim_shuf: np.ndarray | None = None, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                identity: bool = True, identity_epochs: int = 30, cache_dir: str | Path | None = None,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every interval of a results row, from per-sample values, by series bootstrap (faces of a series are not
    independent). Returns (row fields, per-sample columns). Shared by trained models and baselines so that
    every row of the table is computed by the same code on the same samples."""
    bs = dict(n_boot=n_boot, ci=ci, seed=seed)
    ser = np.asarray(series)
    row: dict[str, Any] = {"n_series": len(set(series)), "ci_method": "series bootstrap"}
    per: dict[str, Any] = {}

    def ci_fields(prefix: str, values: np.ndarray, sel: np.ndarray | None = None, paired: np.ndarray | None = None):
        v = values if paired is None else values - paired
        if sel is not None:
            v, cl = v[sel], ser[sel]
        else:
            cl = ser
        s = M.summarize(v, clusters=cl, **bs)
        return {prefix: s["mean"], f"{prefix}_lo": s["lo"], f"{prefix}_hi": s["hi"], f"{prefix}_n": s["n"],
                f"{prefix}_n_series": s["n_series"]}

    row.update(ci_fields("psnr", psnr))
    row.update(ci_fields("ssim", ssim))
    inctx = np.array([c is True for c in in_context])
    notctx = np.array([c is False for c in in_context])
    row["n_unknown_character"] = int(sum(c is None for c in in_context)) if have_gt else None
    row["identity_reason"] = ""
    correct = None
    if identity and have_gt:
        sets = {"gen": gen_u8}
        if shuf_u8 is not None:
            sets["shuffled"] = shuf_u8
        ident = cross_fit_identity(true_u8, list(characters), sets, seed=seed, epochs=identity_epochs, cache_dir=cache_dir)
        per["fold"] = ident["fold"]
        chars = np.array(characters, dtype=object)
        known = np.array([c is not None for c in characters]) & np.array([p is not None for p in ident["pred_true"]])
        for k in ["true"] + list(sets):
            per[f"id_pred_{k}"] = ident[f"pred_{k}"]
        correct = {k: (ident[f"pred_{k}"] == chars).astype(np.float64) for k in ["true"] + list(sets)}
        for name, key in (("id_acc_ceiling", "true"), ("id_acc", "gen"), ("id_acc_shuffled", "shuffled")):
            if key in correct:
                row.update(ci_fields(name, correct[key], known))
        for tag, sel in (("in_ctx", inctx), ("not_in_ctx", notctx)):
            row.update(ci_fields(f"id_acc_{tag}", correct["gen"], known & sel))
        row["id_classes"] = ident["n_classes"]
        row["id_train_n"] = "/".join(map(str, ident["n_train"]))
        row["id_chance"] = 1.0 / max(ident["n_classes"], 1)
    else:
        row["identity_reason"] = "no ground truth (synthetic data only)" if not have_gt else "identity not requested"

    if psnr_shuf is not None:
        row.update(ci_fields("gain_psnr", psnr, paired=psnr_shuf))
        row.update(ci_fields("gain_ssim", ssim, paired=ssim_shuf))
        if have_gt:
            row.update(_subgroup_fields("gain_psnr", psnr - psnr_shuf, inctx, notctx, ser, **bs))
            if correct is not None and "shuffled" in correct:
                dc = correct["gen"] - correct["shuffled"]
                row.update(ci_fields("gain_id", dc, known))
                row.update(_subgroup_fields("gain_id", dc, inctx, notctx, ser, valid=known, **bs))
    return row, per


def _subgroup_fields(key: str, values: np.ndarray, inctx: np.ndarray, notctx: np.ndarray, series: np.ndarray,
                     valid: np.ndarray | None = None, **bs) -> dict[str, Any]:
    """``<key>_in_ctx`` / ``<key>_not_in_ctx`` (series-bootstrap summaries of a per-sample gain where the masked
    character is / is not in the context panels) and ``<key>_in_minus_not`` (their paired difference test,
    :func:`metrics.subgroup_difference`), over the samples where ``valid`` holds."""
    valid = np.ones(len(values), dtype=bool) if valid is None else valid
    out: dict[str, Any] = {}
    for tag, sel in (("in_ctx", inctx), ("not_in_ctx", notctx)):
        m = valid & sel
        s = M.summarize(values[m], clusters=series[m], **bs)
        out.update({f"{key}_{tag}": s["mean"], f"{key}_{tag}_lo": s["lo"], f"{key}_{tag}_hi": s["hi"],
                    f"{key}_{tag}_n": s["n"], f"{key}_{tag}_n_series": s["n_series"]})
    both = valid & (inctx | notctx)
    t = M.subgroup_difference(values[both], inctx[both], series[both], **bs)
    out.update({f"{key}_in_minus_not": t["mean"], f"{key}_in_minus_not_lo": t["lo"],
                f"{key}_in_minus_not_hi": t["hi"], f"{key}_in_minus_not_p": t["p"]})
    return out


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
    import pandas as pd

    from ..runs import load_run

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    dev = _device(device)
    cfg, model = load_run(run_dir, device=str(dev), checkpoint=checkpoint)
    model.eval()
    ecfg = cfg.eval
    fid = ecfg.fid if fid is None else fid
    n_boot = ecfg.n_bootstrap if n_boot is None else n_boot
    prior_samples = ecfg.prior_samples if prior_samples is None else prior_samples
    if max_samples is None:
        max_samples = ecfg.max_samples if ecfg.max_samples >= 0 else None
    data_root = resolve_path(cfg.data.sequence_path).parent
    cache_dir = Path(cache_dir) if cache_dir is not None else data_root / "eval_cache"
    step = checkpoint_step(run_dir, cfg.eval.checkpoint)

    ctx = eval_context(cfg, split, max_samples, seed, context_gain)
    ds, indices, series, partners = ctx["ds"], ctx["indices"], ctx["series"], ctx["partners"]
    masked_pos = -1 if cfg.data.panel_order == "chronological" else 0
    exemplars = None
    if cfg.model.variant == "ssuper_exemplar":
        from ..preprocess.exemplars import load_or_build_exemplars

        exemplars = load_or_build_exemplars(cfg.data, ds.samples, cfg.model.exemplar_k, cfg.model.exemplar_ctx_size)
    feats = None  # frozen backbone: its features of the split, computed once and shared by every run (disk cache)
    if cfg.model.freeze_backbone and cfg.train.cache_features and getattr(model, "backbone", None) is not None:
        from ..data.features import load_or_compute_features

        # default batch size, as training: the cached values must not depend on which caller computed them
        feats = load_or_compute_features(model, ds, cfg, split, dev, progress=progress).feats
    loader = DataLoader(_PairedSamples(ds, indices, partners, masked_pos, load_partners=feats is None),
                        batch_size=ecfg.batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    n = len(indices)
    true_u8 = torch.zeros(n, 3, cfg.data.face_size, cfg.data.face_size, dtype=torch.uint8)
    gen_u8 = torch.zeros_like(true_u8)
    shuf_u8 = torch.zeros_like(true_u8) if partners is not None else None
    psnr = np.zeros(n)
    ssim = np.zeros(n)
    panel_psnr = np.zeros(n)
    psnr_shuf = np.full(n, np.nan)
    ssim_shuf = np.full(n, np.nan)
    attn_rows = []
    orig_gen = []  # faces for the original-protocol PSNR (float, order of the dataset)
    orig_true = []
    is_vae = original_protocol_samples_z(cfg)  # the original scripts' choice per variant (REFERENCE.md 5.1)
    zgen = torch.Generator(device=dev).manual_seed(seed)
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=f"evaluate {run_dir.name}", leave=False)
    for batch in it:
        pos = np.asarray(batch["pos"], dtype=np.int64)  # positions in the evaluated subset
        pos_t = torch.from_numpy(pos)
        panels = batch["panels"].to(dev)  # (B, S, 3, H, W)
        mask, coords = batch["mask"].to(dev), batch["mask_coords"].to(dev)
        face = batch["face"]  # (B, 3, 64, 64)
        extra = extra_shuf = None
        f_true = f_shuf = None
        if feats is not None:  # per-panel features: the shuffled context is the partner's, with this masked panel
            f_true = feats[torch.as_tensor(indices[pos])].to(dev)
            if partners is not None:
                f_shuf = swap_context(f_true, feats[torch.as_tensor(indices[partners[pos]])].to(dev), masked_pos, dim=1)
        if exemplars is not None:
            from ..preprocess.exemplars import exemplar_fields

            ds_idx = torch.as_tensor(indices[pos])
            extra = {k: v.to(dev) for k, v in exemplar_fields(exemplars, ds_idx).items()}
            if partners is not None:  # shuffled context: the partner's context faces, this sample's query
                sh = {k: v.to(dev) for k, v in exemplar_fields(exemplars, torch.as_tensor(indices[partners[pos]])).items()}
                extra_shuf = {**sh, "query_ctx": extra["query_ctx"], "query_geo": extra["query_geo"]}
        out = generate_faces(model, panels, mask, coords, extra=extra, masked_pos=masked_pos, feats=f_true)
        g = out["face"].float().cpu()
        if "attn" in out:
            attn_rows.append(out["attn"].float().cpu())
        psnr[pos] = M.psnr_per_image(g, face)
        ssim[pos] = M.ssim_per_image(g, face)
        panel_psnr[pos] = M.panel_psnr_per_image(batch["gt_panel"], g, batch["mask_coords"])
        true_u8[pos_t] = M.to_uint8(face)
        gen_u8[pos_t] = M.to_uint8(g)
        # original protocol: G(mu) or a sampled z, as the original's script for this row (REFERENCE.md 5.1)
        orig_gen.append(generate_faces(model, panels, mask, coords, sample_z=True, generator=zgen,
                                       masked_pos=masked_pos, extra=extra, feats=f_true)["face"].float().cpu()
                        if is_vae else g)
        orig_true.append(face)
        if partners is not None:
            shuffled = batch["panels_shuffled"].to(dev) if f_shuf is None else panels  # panels: CA refines the masked one
            gs = generate_faces(model, shuffled, mask, coords, masked_pos=masked_pos, extra=extra_shuf,
                                feats=f_shuf)["face"].float().cpu()
            psnr_shuf[pos] = M.psnr_per_image(gs, face)
            ssim_shuf[pos] = M.ssim_per_image(gs, face)
            shuf_u8[pos_t] = M.to_uint8(gs)

    row: dict[str, Any] = {
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
    bs = dict(n_boot=n_boot, ci=ecfg.ci, seed=seed)
    fields, per_cols = score_faces(
        true_u8, gen_u8, shuf_u8, series, ctx["characters"], ctx["in_context"], have_gt=ctx["have_gt"], psnr=psnr,
        ssim=ssim, psnr_shuf=psnr_shuf if partners is not None else None,
        ssim_shuf=ssim_shuf if partners is not None else None, identity=identity, identity_epochs=identity_epochs,
        cache_dir=cache_dir, **bs)
    row.update(fields)
    s = M.summarize(panel_psnr, clusters=np.asarray(series), **bs)
    row.update({"panel_psnr": s["mean"], "panel_psnr_lo": s["lo"], "panel_psnr_hi": s["hi"], "panel_psnr_n": s["n"],
                "panel_psnr_n_series": s["n_series"]})

    # ---- original protocol PSNR
    orig_batch = 1 if cfg.model.variant == "ssupervae_ca" else ecfg.batch_size
    po = M.psnr_original_protocol(torch.cat(orig_gen), torch.cat(orig_true), batch_size=orig_batch)
    row.update({"psnr_orig": po["psnr"], "psnr_orig_batches": po["n_batches"], "psnr_orig_batch_size": orig_batch,
                "psnr_orig_n": po["n"], "psnr_orig_input": "G(z~q)" if is_vae else "G(mu)"})
    del orig_gen, orig_true

    # ---- FID / KID (kit) and prior FID; original-protocol FID
    prior_u8 = None
    if prior_samples and prior_samples > 0:
        with torch.no_grad():
            pg = torch.Generator(device=dev).manual_seed(seed + 1)
            chunks = [model.sample(min(ecfg.batch_size, prior_samples - s), generator=pg).float().cpu()
                      for s in range(0, prior_samples, ecfg.batch_size)]
        prior_u8 = M.to_uint8(torch.cat(chunks))
    row.update(_fid_fields(true_u8, gen_u8, prior_u8, fid, fid_weights or ecfg.fid_weights, allow_download,
                           ecfg, cache_dir, seed))
    row["context_gain_reason"] = ctx["gain_reason"]

    per = pd.DataFrame({
        "index": indices, "series": series, "panel": [ds.samples[i].panels[-1] for i in indices],
        "face_box": [" ".join(map(str, ds.samples[i].faces[-1])) for i in indices],
        "psnr": psnr, "ssim": ssim, "panel_psnr": panel_psnr, "psnr_shuffled": psnr_shuf, "ssim_shuffled": ssim_shuf,
        "partner": (indices[partners] if partners is not None else np.full(n, -1)),
        "character": ctx["characters"], "in_context": ctx["in_context"],
    })
    for k, v in per_cols.items():
        per[k] = v
    if attn_rows:
        attn = torch.cat(attn_rows).numpy()  # (n, 1 + C): slot 0 = null candidate
        per["attn_choice"] = attn.argmax(1) - 1  # -1 = null
        per["attn_max"] = attn.max(1)
        if ctx["have_gt"]:
            from ..preprocess.exemplars import candidate_characters

            cc = candidate_characters(exemplars.subset(indices), [ds.samples[i] for i in indices],
                                      resolve_path(cfg.data.ground_truth_path))
            right = np.array([c >= 0 and cc[i, c] == t for i, (c, t) in enumerate(zip(per["attn_choice"], ctx["characters"]))])
            row["select_right_character"] = float(right.mean())
    out_dir = run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    row["faces_path"] = str(_save_faces(out_dir / f"faces_{split}_seed{seed}.pt", gen_u8, true_u8, series))
    per_path = out_dir / f"per_sample_{split}_seed{seed}.csv"
    per.to_csv(per_path, index=False)
    row["per_sample_path"] = str(per_path)
    row["ci"] = ecfg.ci
    row["n_boot"] = n_boot
    row["eval_seconds"] = round(time.perf_counter() - t0, 1)
    with open(out_dir / f"row_{split}_seed{seed}.json", "w") as f:
        json.dump(row, f, indent=1, default=_json_default)
    return row


def evaluate_baselines(cfg: ExperimentConfig, split: str = "test", seed: int = 0, *, max_samples: int | None = None,
                       names: Sequence[str] | None = None, k_per_panel: int = 3, n_boot: int | None = None,
                       identity: bool = True, identity_epochs: int = 30, cache_dir: str | Path | None = None,
                       context_gain: bool = True) -> list[dict[str, Any]]:
    """Rows of the trivial baselines (:mod:`ssuper_lib.baselines`) on the same samples and with the same
    scoring as :func:`evaluate_run` (same seed -> same subset, same context partners, same identity
    classifiers). The oracle needs synthetic ground truth and is skipped without it."""
    from . import baselines as B
    from ..preprocess.exemplars import candidate_characters, load_or_build_exemplars

    t0 = time.perf_counter()
    ecfg = cfg.eval
    n_boot = ecfg.n_bootstrap if n_boot is None else n_boot
    if max_samples is None:
        max_samples = ecfg.max_samples if ecfg.max_samples >= 0 else None
    data_root = resolve_path(cfg.data.sequence_path).parent
    cache_dir = Path(cache_dir) if cache_dir is not None else data_root / "eval_cache"
    ctx = eval_context(cfg, split, max_samples, seed, context_gain, return_gt_panel=False)
    ds, indices, series, partners = ctx["ds"], ctx["indices"], ctx["series"], ctx["partners"]
    ex_all = load_or_build_exemplars(cfg.data, ds.samples, k_per_panel, cfg.model.exemplar_ctx_size)
    ex = ex_all.subset(indices)
    true = torch.stack([ds[int(i)]["face"] for i in indices])  # (n, 3, F, F) in [-1, 1]
    true_u8 = M.to_uint8(true)
    from ..data.datasets import PanelSequenceDataset

    train_faces = _training_faces(PanelSequenceDataset.from_config(cfg.data, split="train", augment=False), cache_dir)
    mean_face = B.mean_training_face(train_faces)
    cand_chars = None
    if ctx["have_gt"]:
        cand_chars = candidate_characters(ex, [ds.samples[i] for i in indices], resolve_path(cfg.data.ground_truth_path))
    names = list(names) if names is not None else [k for k in B.BASELINES if ctx["have_gt"] or k != "oracle_context_face"]
    rows = []
    for name in names:
        kw = dict(seed=seed, cand_chars=cand_chars, target_chars=ctx["characters"])
        gen = B.baseline_faces(name, ex, mean_face, **kw)
        shuf = None
        if partners is not None and name != "mean_face":
            # the same rule applied to the context faces of a sample of another series (query stays)
            ex_sh = ex.subset(partners)
            ex_sh.query_ctx, ex_sh.query_geo = ex.query_ctx, ex.query_geo
            shuf = B.baseline_faces(name, ex_sh, mean_face, **{**kw, "cand_chars": None if cand_chars is None else cand_chars[partners]})
        psnr, ssim = M.psnr_per_image(gen, true), M.ssim_per_image(gen, true)
        fields, _ = score_faces(
            true_u8, M.to_uint8(gen), None if shuf is None else M.to_uint8(shuf), series, ctx["characters"],
            ctx["in_context"], have_gt=ctx["have_gt"], psnr=psnr, ssim=ssim,
            psnr_shuf=None if shuf is None else M.psnr_per_image(shuf, true),
            ssim_shuf=None if shuf is None else M.ssim_per_image(shuf, true), n_boot=n_boot, ci=ecfg.ci, seed=seed,
            identity=identity, identity_epochs=identity_epochs, cache_dir=cache_dir)
        fpath = _save_faces(cache_dir / f"baseline_{name}_{ex.key}_{split}_seed{seed}.pt", M.to_uint8(gen), true_u8, series)
        rows.append({"run": name, "run_dir": "", "model": B.BASELINES[name], "faces_path": str(fpath),
                     "kind": "oracle" if name.startswith("oracle") else "baseline", "variant": name,
                     "eval_seed": seed, "split": split, "n": len(indices), **fields,
                     "ci": ecfg.ci, "n_boot": n_boot, "eval_seconds": round(time.perf_counter() - t0, 1)})
    return rows


def _save_faces(path: Path, gen_u8: torch.Tensor, true_u8: torch.Tensor, series: Sequence[str]) -> Path:
    """Generated and true uint8 faces of an evaluation with their series (for metrics computed afterwards,
    e.g. the label-free identity metric, without generating again)."""
    return atomic_torch_save({"gen": gen_u8, "true": true_u8, "series": [str(s) for s in series]}, path)


def identity_embedder(cfg: ExperimentConfig, cache_dir: str | Path | None = None, progress: bool = False,
                      steps: int | None = None):
    """The Siamese embedder of the label-free identity metric: ``eval.siamese_weights`` (a kit checkpoint or
    the original's whole-model pickle, loaded safely), else one trained on the training series' ground-truth
    identities of a synthetic data set (cached). None when neither is possible (reason in the second value)."""
    from ..models.siamese import load_original_siamese, load_siamese

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
    from ..data.datasets import read_split
    from ..preprocess.sequences import split_path
    from ..identity.siamese_training import cached_siamese, synthetic_identity_faces

    data_root = resolve_path(cfg.data.sequence_path).parent
    cache_dir = Path(cache_dir) if cache_dir is not None else data_root / "eval_cache"
    sp = split_path(cfg.data)
    train_series = read_split(sp)["train"] if sp.is_file() else None
    faces = synthetic_identity_faces(resolve_path(gt).parent, series=train_series)
    steps = cfg.eval.siamese_steps if steps is None else steps
    return cached_siamese(faces, cache_dir, steps=steps, seed=0, progress=progress), ""


def add_label_free_identity(rows: Sequence[dict], embedder, k: int = 20, seed: int = 0) -> dict:
    """Add the label-free identity metric (``lf_top1``, ``lf_mrr``, ``lf_verify``, ...) to every row that has
    saved faces, and return its validation against ground-truth identity accuracy (Spearman rho over the rows)."""
    from ..identity.label_free import embed, label_free_identity, validate_against_identity

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
    val = validate_against_identity([r for r in rows if r.get("kind") != "seed run"])
    for r in rows:
        r["lf_rho_vs_id_acc"] = val["rho"]
    return val


def _training_faces(train_ds, cache_dir: Path) -> torch.Tensor:
    """uint8 target faces of the training split (cached by the split's sample list), for the mean face."""
    h = hashlib.sha256(json.dumps([s.to_original() for s in train_ds.samples]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"train_faces_{h}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    # only the face: the last panel is decoded, not the context panels (``train_ds[i]["face"]`` without augmentation)
    faces = M.to_uint8(torch.stack([train_ds.masked_panel(i)[1] for i in range(len(train_ds))]))
    atomic_torch_save(faces, path)
    return faces


def evaluate_runs(run_dirs: Sequence[str | Path], reuse: bool = True, split: str = "test", seed: int = 0,
                  progress: bool = True, **kwargs) -> list[dict]:
    """:func:`evaluate_run` for several runs. With ``reuse``, a run's saved row
    (``<run>/eval/row_<split>_seed<seed>.json``) is returned instead when it was computed from the same
    checkpoint step with the same settings and the same Inception-weights availability."""
    rows = []
    for rd in run_dirs:
        rd = Path(rd)
        key = _settings_key(rd, split, seed, kwargs)
        saved = rd / "eval" / f"row_{split}_seed{seed}.json"
        if reuse and saved.is_file():
            row = json.loads(saved.read_text())
            if row.get("settings_key") == key:
                rows.append(row)
                continue
        row = evaluate_run(rd, split=split, seed=seed, progress=progress, **kwargs)
        row["settings_key"] = key
        saved.write_text(json.dumps(row, indent=1, default=_json_default))
        rows.append(row)
    return rows


def _settings_key(run_dir: Path, split: str, seed: int, kwargs: dict) -> str:
    explicit = kwargs.get("fid_weights")
    weights = M.resolve_inception_weights(explicit, allow_download=False)
    facts = {"step": checkpoint_step(run_dir), "split": split, "seed": seed, "weights": weights.source,
             **{k: v for k, v in sorted(kwargs.items()) if k not in ("progress", "num_workers")}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _fid_fields(true_u8, gen_u8, prior_u8, fid, weights_path, allow_download, ecfg, cache_dir, seed) -> dict:
    """FID/KID entries of a row (kit: pooled; original protocol: per-batch on prior samples)."""
    n_prior = 0 if prior_u8 is None else len(prior_u8)
    out: dict[str, Any] = {"fid_n": len(gen_u8), "fid_real_n": len(true_u8), "fid_prior_n": n_prior}
    if not fid:
        msg = M.unavailable("FID/KID turned off (eval.fid = false)")
        out.update({"fid": msg, "kid": msg, "kid_std": msg, "fid_prior": msg, "fid_orig": msg, "fid_weights": ""})
        return out
    weights = M.resolve_inception_weights(weights_path, allow_download=allow_download, source_name="config")
    out["fid_weights"] = weights.source
    common = dict(kid_subset_size=ecfg.kid_subset_size, batch_size=ecfg.batch_size,
                  cache_root=Path(cache_dir) / "fidelity", seed=seed)
    if len(true_u8) < 2:
        msg = M.unavailable(f"FID needs at least 2 samples, got {len(true_u8)}")
        out.update({"fid": msg, "kid": msg, "kid_std": msg, "fid_prior": msg, "fid_orig": msg})
        return out
    r = M.fid_kid_or_unavailable(true_u8, gen_u8, weights, **common)
    out.update({"fid": r["fid"], "kid": r["kid_mean"], "kid_std": r["kid_std"], "kid_subset_size": r["kid_subset_size"]})
    if prior_u8 is None or n_prior < 2:
        msg = M.unavailable("no prior samples requested (eval.prior_samples = 0)")
        out.update({"fid_prior": msg, "fid_orig": msg})
        return out
    rp = M.fid_kid_or_unavailable(true_u8, prior_u8, weights, kid=False, fake_cache_name="auto", **common)
    out["fid_prior"] = rp["fid"]
    if not weights.available:
        out["fid_orig"] = M.unavailable(weights.reason)
        return out
    # the original protocol reuses the Inception features torch-fidelity just cached (same images, same net)
    f_real = M.cached_features(common["cache_root"], M.images_cache_name(true_u8))
    f_prior = M.cached_features(common["cache_root"], M.images_cache_name(prior_u8, prefix="ssuper-fake"))
    if f_real is None:
        f_real = M.extract_features(true_u8, weights_path=weights.path, batch_size=ecfg.batch_size)
    if f_prior is None:
        f_prior = M.extract_features(prior_u8, weights_path=weights.path, batch_size=ecfg.batch_size)
    fo = M.fid_original_protocol(f_real, f_prior, real_batch_size=FID_ORIG_BATCH, fake_batch_size=FID_ORIG_BATCH)
    out.update({"fid_orig": fo["fid"], "fid_orig_batches": fo["n_batches"], "fid_orig_batch_size": FID_ORIG_BATCH})
    return out


# --------------------------------------------------------------------------------------------------
# Results table
# --------------------------------------------------------------------------------------------------


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt_ci(row: dict, key: str, digits: int = 2, pct: bool = False, counts: bool = True) -> str:
    """"mean [lo, hi] (n=.., k series)"; for a multi-seed row also "; seeds m +- sd"."""
    v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if M.is_unavailable(v) else v
    scale = 100.0 if pct else 1.0
    lo, hi, n, k = row.get(f"{key}_lo"), row.get(f"{key}_hi"), row.get(f"{key}_n"), row.get(f"{key}_n_series")
    s = f"{v * scale:.{digits}f}"
    if _finite(lo) and _finite(hi):
        s += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    if counts and _finite(n):
        s += f" (n={int(n)}" + (f", {int(k)} series)" if _finite(k) else ")")
    sd = row.get(f"{key}_seed_sd")
    if _finite(sd):
        s += f"; seeds {row[f'{key}_seed_mean'] * scale:.{digits}f} +- {sd * scale:.{digits}f}"
    return s


def _fmt_num(v: Any, digits: int = 2, n: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return "unavailable" if M.is_unavailable(v) else v
    s = f"{v:.{digits}f}"
    return s + (f" (n={n})" if n is not None else "")


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _fmt_p(row: dict, key: str, digits: int = 2, pct: bool = False) -> str:
    s = _fmt_ci(row, key, digits, pct, counts=False)
    p = row.get(f"{key}_p")
    return s + (f" p={p:.3f}" if _finite(p) else "")


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
            if _finite(r.get("lf_top1")) else "-",
            "Eval seed": r.get("eval_seed"),
            "Step": r.get("checkpoint_step", "-") if r.get("kind", "model") == "model" else "-",
        })
    return pd.DataFrame(out)


# metrics aggregated over training seeds: (row key, per-sample column(s) the pooled interval is built from)
SEED_METRICS = ("psnr", "ssim", "gain_psnr", "id_acc", "id_acc_shuffled", "gain_id")


def _per_sample_metric(per, key: str) -> np.ndarray | None:
    """Per-sample values of a row metric from a per-sample CSV (None when the CSV lacks them)."""
    if key in ("psnr", "ssim"):
        return per[key].to_numpy(np.float64)
    if key == "gain_psnr":
        return (per["psnr"] - per["psnr_shuffled"]).to_numpy(np.float64)
    if "id_pred_gen" not in per or "character" not in per:
        return None
    known = per["character"].notna() & per["id_pred_true"].notna()
    gen = (per["id_pred_gen"] == per["character"]).astype(float).where(known)
    shuf = (per["id_pred_shuffled"] == per["character"]).astype(float).where(known) if "id_pred_shuffled" in per else None
    if key == "id_acc":
        return gen.to_numpy(np.float64)
    if shuf is None:
        return None
    return (shuf if key == "id_acc_shuffled" else gen - shuf).to_numpy(np.float64)


def aggregate_seeds(rows: Sequence[dict], n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> list[dict]:
    """One row per model over its training seeds (rows of the same model label and sizes, ``kind`` model).

    For each metric of :data:`SEED_METRICS`: the mean over seeds of the per-seed means and the between-seed
    standard deviation (``<key>_seed_mean``, ``<key>_seed_sd``, ``<key>_seed_min/max``), and, as the row's
    value and interval, the pooled series-bootstrap interval of the per-sample values averaged over seeds
    (the same test samples for every seed). Models with one seed are returned unchanged."""
    import pandas as pd

    groups: dict[tuple, list[dict]] = {}
    order = []
    for r in rows:
        key = (r["model"], r.get("latent"), r.get("lstm_hidden"), r.get("embed"), r.get("kind", "model"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(r)
    out = []
    for key in order:
        grp = groups[key]
        if len(grp) == 1 or key[-1] != "model":
            out.extend(grp)
            continue
        agg = dict(grp[0])
        agg["train_seeds"] = ",".join(str(r.get("train_seed")) for r in grp)
        agg["run"] = ",".join(r["run"] for r in grp)
        agg["checkpoint_step"] = ",".join(str(r.get("checkpoint_step")) for r in grp)
        pers = []
        for r in grp:
            path = r.get("per_sample_path")
            pers.append(pd.read_csv(path) if path and Path(path).is_file() else None)
        for m in SEED_METRICS:
            vals = [r.get(m) for r in grp if _finite(r.get(m))]
            if len(vals) >= 2:
                agg.update({f"{m}_seed_mean": float(np.mean(vals)), f"{m}_seed_sd": float(np.std(vals, ddof=1)),
                            f"{m}_seed_min": float(np.min(vals)), f"{m}_seed_max": float(np.max(vals))})
            cols = [_per_sample_metric(p, m) for p in pers if p is not None]
            if len(cols) == len(grp) and all(c is not None for c in cols) and len({len(c) for c in cols}) == 1:
                pooled = np.nanmean(np.stack(cols), axis=0) if np.isfinite(np.stack(cols)).any() else cols[0]
                sm = M.summarize(pooled, n_boot=n_boot, ci=ci, seed=seed, clusters=pers[0]["series"].astype(str).to_numpy())
                agg.update({m: sm["mean"], f"{m}_lo": sm["lo"], f"{m}_hi": sm["hi"], f"{m}_n": sm["n"],
                            f"{m}_n_series": sm["n_series"]})
                if m in ("gain_psnr", "gain_id") and "in_context" in pers[0]:
                    agg.update(_pooled_subgroups(m, pooled, pers[0], n_boot, ci, seed))
        out.append(agg)
    return out


def _pooled_subgroups(key: str, pooled: np.ndarray, per, n_boot: int, ci: float, seed: int) -> dict:
    """The in-context / not-in-context subgroups of a seed-pooled per-sample gain, and their direct paired
    test (:func:`metrics.subgroup_difference`), as :func:`score_faces` reports them for one run."""
    flag = per["in_context"].astype(str).str.lower()
    inctx, notctx = (flag == "true").to_numpy(), (flag == "false").to_numpy()
    return _subgroup_fields(key, pooled, inctx, notctx, per["series"].astype(str).to_numpy(),
                            valid=np.isfinite(pooled), n_boot=n_boot, ci=ci, seed=seed)


def write_results(rows: Sequence[dict], stats_dir: str | Path = "data_stats", figures_dir: str | Path = "figures",
                  figure_name: str = "05_results_table", table_rows: Sequence[dict] | None = None) -> dict[str, Path]:
    """data_stats/results.csv (raw rows, numbers and "unavailable: ..." strings), data_stats/results.md
    (the display table of ``table_rows``, default ``rows``, and the notes) and the rendered PNG figures/<figure_name>.png."""
    import pandas as pd

    from ..viz import save_figure

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
        "Original protocol (REFERENCE.md 5): batch-of-64 PSNR averaged over batches; per-batch FID of prior "
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
            if M.is_unavailable(r.get(key)) and r[key] not in seen:
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
    rows = [r for r in rows if _finite(r.get("gain_psnr")) and r.get("kind") != "seed run"]
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


# --------------------------------------------------------------------------------------------------
# Browsing test sequences (notebook widget)
# --------------------------------------------------------------------------------------------------


@dataclass
class RunBrowser:
    """A loaded run and its test split, for looking at single sequences: panels, true face, generated face,
    face pasted into the panel. ``view(i)`` returns the images, ``figure(i)`` draws them."""

    run_dir: Path
    split: str = "test"
    device: str | None = None
    cfg: Any = field(init=False)
    model: Any = field(init=False)
    dataset: Any = field(init=False)

    def __post_init__(self):
        from ..data.datasets import PanelSequenceDataset
        from ..runs import load_run

        self.run_dir = Path(self.run_dir)
        self.cfg, self.model = load_run(self.run_dir, device=str(_device(self.device)))
        self.model.eval()
        self.dataset = PanelSequenceDataset.from_config(self.cfg.data, split=self.split, return_gt_panel=True)
        self.exemplars = None
        if self.cfg.model.variant == "ssuper_exemplar":
            from ..preprocess.exemplars import load_or_build_exemplars

            self.exemplars = load_or_build_exemplars(self.cfg.data, self.dataset.samples, self.cfg.model.exemplar_k,
                                                     self.cfg.model.exemplar_ctx_size)

    def __len__(self) -> int:
        return len(self.dataset)

    @torch.no_grad()
    def view(self, index: int) -> dict:
        from ..models.discriminator import paste_faces

        item = self.dataset[index]
        dev = next(self.model.parameters()).device
        panels = item["panels"][None].to(dev)
        extra = None
        if self.exemplars is not None:
            from ..preprocess.exemplars import exemplar_fields

            extra = {k: v.to(dev) for k, v in exemplar_fields(self.exemplars, torch.tensor([index])).items()}
        out = generate_faces(self.model, panels, item["mask"][None].to(dev), item["mask_coords"][None].to(dev), extra=extra,
                             masked_pos=-1 if self.cfg.data.panel_order == "chronological" else 0)
        g = out["face"].float().cpu()
        pasted = paste_faces(item["gt_panel"][None], g, item["mask_coords"][None])[0]
        view = {"panels": item["panels"], "gt_panel": item["gt_panel"], "face": item["face"], "generated": g[0],
                "pasted": pasted, "psnr": float(M.psnr_per_image(g, item["face"][None])[0]),
                "series": item["series"], "index": index}
        if extra is not None:  # the candidates and their attention weights (slot 0 = the null candidate)
            view.update(cand_face=extra["cand_face"][0].cpu(), cand_valid=extra["cand_valid"][0].cpu(),
                        attn=out["attn"][0].float().cpu())
        return view

    def figure(self, index: int, title: str | None = None):
        import matplotlib.pyplot as plt

        v = self.view(index)
        img = lambda t: ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()  # noqa: E731
        S = v["panels"].shape[0]
        if "attn" in v:  # second row: the context faces with their attention weights
            C = v["cand_face"].shape[0]
            fig = plt.figure(figsize=(2.0 * (S + 3), 4.2))
            top = fig.subfigures(2, 1, height_ratios=[2.4, 1.6])
            axes = top[0].subplots(1, S + 3, gridspec_kw={"width_ratios": [1] * S + [0.6, 0.6, 1]})
            cax = top[1].subplots(1, C + 1)
            pick = int(v["attn"].argmax()) - 1
            for c in range(C):
                cax[c].axis("off")
                if bool(v["cand_valid"][c]):
                    cax[c].imshow(img(v["cand_face"][c]))
                    cax[c].set_title(("chosen " if c == pick else "") + f"{float(v['attn'][c + 1]):.2f}", fontsize=8,
                                     color="red" if c == pick else "black")
            cax[C].axis("off")
            cax[C].set_title(f"null {float(v['attn'][0]):.2f}", fontsize=8, color="red" if pick < 0 else "black")
        else:
            fig, axes = plt.subplots(1, S + 3, figsize=(2.0 * (S + 3), 2.4),
                                     gridspec_kw={"width_ratios": [1] * S + [0.6, 0.6, 1]})
        for j in range(S):
            axes[j].imshow(img(v["panels"][j]))
            axes[j].set_title(f"panel {j + 1}" + (" (masked)" if j == (S - 1 if self.cfg.data.panel_order == "chronological" else 0) else ""), fontsize=8)
        axes[S].imshow(img(v["face"]))
        axes[S].set_title("true face", fontsize=8)
        axes[S + 1].imshow(img(v["generated"]))
        axes[S + 1].set_title(f"generated\n{v['psnr']:.1f} dB", fontsize=8)
        axes[S + 2].imshow(img(v["pasted"]))
        axes[S + 2].set_title("pasted", fontsize=8)
        for a in axes:
            a.axis("off")
        fig.suptitle(title or f"{model_label(self.cfg)} ({self.run_dir.name}) - test sample {index}, series {v['series']}", fontsize=9)
        if "attn" not in v:
            fig.tight_layout()
        return fig


# --------------------------------------------------------------------------------------------------
# Everything at once: runs, baselines, seeds (notebook 05 and the command line)
# --------------------------------------------------------------------------------------------------


def evaluate_all(run_dirs: Sequence[str | Path], split: str = "test", seed: int = 0, baselines: bool = True,
                 reuse: bool = True, progress: bool = True, label_free: bool = True, siamese_steps: int | None = None,
                 **kwargs) -> dict[str, Any]:
    """Evaluate runs, the baselines (on the data of the first run's config, same samples and seed) and
    aggregate training seeds. Returns {"runs": one row per run, "baselines": [...], "table": the rows to show
    (multi-seed models aggregated by :func:`aggregate_seeds`, then baselines and oracle)}."""
    from ..runs import load_run

    run_rows = evaluate_runs(run_dirs, reuse=reuse, split=split, seed=seed, progress=progress, **kwargs)
    base_rows: list[dict] = []
    if baselines and run_dirs:
        cfg, _ = load_run(run_dirs[0])
        keys = ("max_samples", "n_boot", "identity", "identity_epochs", "cache_dir", "context_gain")
        bkw = {k: v for k, v in kwargs.items() if k in keys}
        base_rows = evaluate_baselines(cfg, split=split, seed=seed, **bkw)
    n_boot = kwargs.get("n_boot") or 1000
    lf_text = ""
    if label_free and run_dirs:
        cfg, _ = load_run(run_dirs[0])
        if cfg.eval.label_free:
            embedder, why = identity_embedder(cfg, kwargs.get("cache_dir"), progress=progress, steps=siamese_steps)
            if embedder is None:
                lf_text = f"label-free identity metric unavailable: {why}"
            else:
                lf_text = add_label_free_identity(run_rows + base_rows, embedder, seed=seed)["text"]
    table = aggregate_seeds(run_rows, n_boot=n_boot, seed=seed) + base_rows
    if lf_text:
        for r in table:
            r["lf_note"] = lf_text
    return {"runs": run_rows, "baselines": base_rows, "table": table, "label_free": lf_text}


def results_rows(result: dict[str, list[dict]]) -> list[dict]:
    """The rows of ``results.csv``: the table's rows, then each seed's own row of multi-seed models
    (kind "seed run")."""
    shown = {r["run"] for r in result["table"]}
    extra = [{**r, "kind": "seed run"} for r in result["runs"] if r["run"] not in shown]
    return list(result["table"]) + extra


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssuper_lib.evaluate RUN_DIR [RUN_DIR ...]``: the rows, tables and figures of notebook 05."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ssuper_lib.evaluate",
                                 description="Evaluate trained runs (kit protocol, original protocol, context gain, "
                                             "identity accuracy) beside the baselines; writes results.csv/.md and figures.")
    ap.add_argument("run_dirs", nargs="+", help="run directories runs/<NNNNN>-<name>/ (several seeds of one model are aggregated)")
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
    missing = [d for d in args.run_dirs if not Path(d).is_dir()]
    if missing:
        ap.error(f"not a run directory: {', '.join(missing)}")
    kwargs: dict[str, Any] = {"device": args.device, "checkpoint": args.checkpoint}
    if args.fid_weights:
        kwargs["fid_weights"] = args.fid_weights
    if args.max_samples is not None:
        kwargs["max_samples"] = args.max_samples
    dirs = [Path(d) for d in args.run_dirs]
    result = evaluate_all(dirs, split=args.split, seed=args.seed, baselines=not args.no_baselines,
                          reuse=not args.no_reuse, progress=True, label_free=not args.no_label_free,
                          siamese_steps=args.siamese_steps, **kwargs)
    paths = write_results(results_rows(result), args.out, args.figures, table_rows=result["table"])
    import matplotlib

    matplotlib.use("Agg")
    from ..viz import save_figure

    fig = plot_context_gain(result["table"])
    paths["gain"] = save_figure(fig, "05_context_gain", out_dir=resolve_path(args.figures))[0]
    print(results_table(result["table"]).to_string(index=False))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
