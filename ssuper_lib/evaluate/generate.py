"""The evaluated samples of a split and the faces a model generates for them, with true and shuffled context.

:func:`eval_context` picks the samples (a seeded subset), their context-shuffling partners (a sample of another
series, :func:`ssuper_lib.data.shuffle.derangement_across_groups`) and their ground-truth characters;
:func:`generate_split` runs a model over them once and keeps what every score of a row needs
(:class:`SplitFaces`).
"""

from __future__ import annotations

import copy

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from . import metrics as M
from ..config import EvalConfig, ExperimentConfig, resolve_path
from ..data.datasets import PanelSequenceDataset, match_ground_truth
from ..data.features import load_or_compute_features
from ..data.pixels import to_uint8
from ..data.shuffle import derangement_across_groups, swap_context
from ..models.sequence import reparameterize
from ..preprocess.exemplars import ExemplarSet, exemplar_fields, load_or_build_exemplars
from ..progress import progress_bar
from ..storage import atomic_torch_save

__all__ = [
    "PairedSamples",
    "collate",
    "context_groups",
    "original_protocol_samples_z",
    "generate_faces",
    "default_max_samples",
    "eval_context",
    "RunInputs",
    "SplitFaces",
    "generate_split",
    "save_faces",
]


# --------------------------------------------------------------------------------------------------
# Context shuffling
# --------------------------------------------------------------------------------------------------


class PairedSamples(Dataset):
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


def collate(items: list[dict]) -> dict:
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
    from G(mu) (False), docs/original.md 5.1 and 0.4: SSuperVAE (``eval_ssupervae.py``) and the CA model
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


def default_max_samples(ecfg: EvalConfig, max_samples: int | None) -> int | None:
    """``max_samples``, else the config's ``eval.max_samples`` (-1 = every sample: None)."""
    if max_samples is None:
        max_samples = ecfg.max_samples if ecfg.max_samples >= 0 else None
    return max_samples


def eval_context(cfg: ExperimentConfig, split: str, max_samples: int | None, seed: int, context_gain: bool,
                  return_gt_panel: bool = True) -> dict[str, Any]:
    """The evaluated samples of ``split``: dataset, indices (seeded subset), series, shuffling partners,
    ground-truth characters and whether the target character is in a context panel (True / False / None =
    unknown target)."""
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
        masked = len(ds.samples[indices[0]].panels) - 1  # the samples' panels (and characters) are chronological
        characters = [g["target_character"] for g in gt]
        in_context = context_groups(gt, masked)  # None: unknown target character, its own group
    return {"ds": ds, "indices": indices, "series": series, "partners": partners, "gain_reason": gain_reason,
            "have_gt": have_gt, "characters": characters, "in_context": in_context}


def save_faces(path: Path, gen_u8: torch.Tensor, true_u8: torch.Tensor, series: Sequence[str]) -> Path:
    """Generated and true uint8 faces of an evaluation with their series (for metrics computed afterwards,
    e.g. the label-free identity metric, without generating again)."""
    return atomic_torch_save({"gen": gen_u8, "true": true_u8, "series": [str(s) for s in series]}, path)


# --------------------------------------------------------------------------------------------------
# A model over the evaluated samples
# --------------------------------------------------------------------------------------------------


@dataclass
class RunInputs:
    """What a run reads besides the panels: the masked panel's index, the context exemplars (exemplar
    variant) and the split's frozen-backbone features (computed once and shared by every run, disk cache)."""

    masked_pos: int
    exemplars: ExemplarSet | None = None
    feats: torch.Tensor | None = None

    @classmethod
    def load(cls, cfg: ExperimentConfig, model: nn.Module, ds: PanelSequenceDataset, split: str,
             dev: torch.device, progress: bool = False) -> "RunInputs":
        exemplars = None
        if cfg.model.variant == "ssuper_exemplar":
            exemplars = load_or_build_exemplars(cfg.data, ds.samples, cfg.model.exemplar_k, cfg.model.exemplar_ctx_size)
        feats = None
        if cfg.model.freeze_backbone and cfg.train.cache_features and getattr(model, "backbone", None) is not None:
            # default batch size, as training: the cached values must not depend on which caller computed them
            feats = load_or_compute_features(model, ds, cfg, split, dev, progress=progress).feats
        return cls(cfg.data.masked_index, exemplars, feats)

    def batch(self, indices: np.ndarray, partners: np.ndarray | None, pos: np.ndarray, dev: torch.device) -> dict:
        """The batch's features and exemplars, for the true context and for the shuffled one (the partner's
        context with this sample's masked panel; for exemplars: the partner's context faces, this query)."""
        feats, exemplars, masked_pos = self.feats, self.exemplars, self.masked_pos
        extra = extra_shuf = None
        f_true = f_shuf = None
        if feats is not None:  # per-panel features: the shuffled context is the partner's, with this masked panel
            f_true = feats[torch.as_tensor(indices[pos])].to(dev)
            if partners is not None:
                f_shuf = swap_context(f_true, feats[torch.as_tensor(indices[partners[pos]])].to(dev), masked_pos, dim=1)
        if exemplars is not None:
            ds_idx = torch.as_tensor(indices[pos])
            extra = {k: v.to(dev) for k, v in exemplar_fields(exemplars, ds_idx).items()}
            if partners is not None:  # shuffled context: the partner's context faces, this sample's query
                sh = {k: v.to(dev) for k, v in exemplar_fields(exemplars, torch.as_tensor(indices[partners[pos]])).items()}
                extra_shuf = {**sh, "query_ctx": extra["query_ctx"], "query_geo": extra["query_geo"]}
        return {"extra": extra, "extra_shuf": extra_shuf, "f_true": f_true, "f_shuf": f_shuf}


@dataclass
class SplitFaces:
    """Per evaluated sample (positions of the subset): uint8 true, generated and shuffled-context faces,
    PSNR / SSIM / panel PSNR, the attention rows of the exemplar variant, and the faces of the
    original-protocol PSNR (float, order of the dataset)."""

    n: int
    face_size: int
    shuffled: bool
    true_u8: torch.Tensor = field(init=False)
    gen_u8: torch.Tensor = field(init=False)
    shuf_u8: torch.Tensor | None = field(init=False)
    psnr: np.ndarray = field(init=False)
    ssim: np.ndarray = field(init=False)
    panel_psnr: np.ndarray = field(init=False)
    psnr_shuf: np.ndarray = field(init=False)
    ssim_shuf: np.ndarray = field(init=False)
    attn_rows: list = field(default_factory=list)
    orig_gen: list = field(default_factory=list)
    orig_true: list = field(default_factory=list)

    def __post_init__(self):
        n = self.n
        self.true_u8 = torch.zeros(n, 3, self.face_size, self.face_size, dtype=torch.uint8)
        self.gen_u8 = torch.zeros_like(self.true_u8)
        self.shuf_u8 = torch.zeros_like(self.true_u8) if self.shuffled else None
        self.psnr = np.zeros(n)
        self.ssim = np.zeros(n)
        self.panel_psnr = np.zeros(n)
        self.psnr_shuf = np.full(n, np.nan)
        self.ssim_shuf = np.full(n, np.nan)

    def add_true_context(self, pos: np.ndarray, out: dict, face: torch.Tensor, batch: dict) -> torch.Tensor:
        """Scores of the faces generated from the true context; returns them (float, CPU)."""
        pos_t = torch.from_numpy(pos)
        g = out["face"].float().cpu()
        if "attn" in out:
            self.attn_rows.append(out["attn"].float().cpu())
        self.psnr[pos] = M.psnr_per_image(g, face)
        self.ssim[pos] = M.ssim_per_image(g, face)
        self.panel_psnr[pos] = M.panel_psnr_per_image(batch["gt_panel"], g, batch["mask_coords"])
        self.true_u8[pos_t] = to_uint8(face)
        self.gen_u8[pos_t] = to_uint8(g)
        return g

    def add_shuffled_context(self, pos: np.ndarray, gs: torch.Tensor, face: torch.Tensor) -> None:
        self.psnr_shuf[pos] = M.psnr_per_image(gs, face)
        self.ssim_shuf[pos] = M.ssim_per_image(gs, face)
        self.shuf_u8[torch.from_numpy(pos)] = to_uint8(gs)


def generate_split(model: nn.Module, cfg: ExperimentConfig, ctx: dict, inputs: RunInputs, dev: torch.device,
                   seed: int, num_workers: int = 0, progress: bool = False, desc: str = "") -> SplitFaces:
    """Faces of every evaluated sample from its true context, from a sampled z when the original protocol
    did so (:func:`original_protocol_samples_z`, seeded by ``seed``) and from shuffled context."""
    ds, indices, partners, masked_pos = ctx["ds"], ctx["indices"], ctx["partners"], inputs.masked_pos
    if inputs.feats is not None and getattr(ds, "context_panels", False):  # the context comes from the features
        ds = copy.copy(ds)
        ds.context_panels = False
    loader = DataLoader(PairedSamples(ds, indices, partners, masked_pos, load_partners=inputs.feats is None),
                        batch_size=cfg.eval.batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    faces = SplitFaces(len(indices), cfg.data.face_size, partners is not None)
    is_vae = original_protocol_samples_z(cfg)  # the original scripts' choice per variant (docs/original.md 5.1)
    zgen = torch.Generator(device=dev).manual_seed(seed)
    for batch in progress_bar(loader, desc=f"evaluate {desc}: faces", disable=not progress, leave=False, unit="batch"):
        pos = np.asarray(batch["pos"], dtype=np.int64)  # positions in the evaluated subset
        panels = batch["panels"].to(dev)  # (B, S, 3, H, W)
        mask, coords = batch["mask"].to(dev), batch["mask_coords"].to(dev)
        face = batch["face"]  # (B, 3, 64, 64)
        b = inputs.batch(indices, partners, pos, dev)
        out = generate_faces(model, panels, mask, coords, extra=b["extra"], masked_pos=masked_pos, feats=b["f_true"])
        g = faces.add_true_context(pos, out, face, batch)
        # original protocol: G(mu) or a sampled z, as the original's script for this row (docs/original.md 5.1)
        faces.orig_gen.append(generate_faces(model, panels, mask, coords, sample_z=True, generator=zgen,
                                             masked_pos=masked_pos, extra=b["extra"], feats=b["f_true"])["face"].float().cpu()
                              if is_vae else g)
        faces.orig_true.append(face)
        if partners is not None:
            shuffled = batch["panels_shuffled"].to(dev) if b["f_shuf"] is None else panels  # panels: CA refines the masked one
            gs = generate_faces(model, shuffled, mask, coords, masked_pos=masked_pos, extra=b["extra_shuf"],
                                feats=b["f_shuf"])["face"].float().cpu()
            faces.add_shuffled_context(pos, gs, face)
    return faces
