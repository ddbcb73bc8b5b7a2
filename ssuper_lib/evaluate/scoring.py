"""The intervals of a results row from per-sample values: PSNR/SSIM, identity accuracy, context gain.

Every interval resamples whole test series (faces of a series are not independent): :func:`interval_fields`
is the one place a summary becomes the row entries ``<key>``, ``<key>_lo``, ``<key>_hi``, ``<key>_n`` and
``<key>_n_series``. Trained models, baselines, seed-pooled rows and the feature probe are all scored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import metrics as M
from ..identity.classifier import cross_fit_identity

__all__ = ["FaceScores", "interval_fields", "subgroup_fields", "score_faces"]


@dataclass
class FaceScores:
    """The per-sample inputs of a results row (aligned with the evaluated samples): uint8 true faces, the
    uint8 faces generated from the true context with their per-image PSNR and SSIM, and, when the context
    gain is measured, the same for the faces generated from shuffled context."""

    true_u8: torch.Tensor
    gen_u8: torch.Tensor
    psnr: np.ndarray
    ssim: np.ndarray
    shuf_u8: torch.Tensor | None = None
    psnr_shuf: np.ndarray | None = None
    ssim_shuf: np.ndarray | None = None


def interval_fields(prefix: str, values: np.ndarray, clusters: Sequence | np.ndarray,
                    sel: np.ndarray | None = None, paired: np.ndarray | None = None, **bs) -> dict[str, Any]:
    """The series-bootstrap summary of ``values`` (minus ``paired`` when given, over the samples where ``sel``
    holds) as row entries: ``<prefix>`` (mean), ``_lo``, ``_hi``, ``_n`` (faces), ``_n_series``.
    ``clusters``: the series of each sample; ``bs``: n_boot, ci, seed of :func:`metrics.summarize`."""
    ser = np.asarray(clusters)
    v = values if paired is None else values - paired
    if sel is not None:
        v, cl = v[sel], ser[sel]
    else:
        cl = ser
    s = M.summarize(v, clusters=cl, **bs)
    return {prefix: s["mean"], f"{prefix}_lo": s["lo"], f"{prefix}_hi": s["hi"], f"{prefix}_n": s["n"],
            f"{prefix}_n_series": s["n_series"]}


def subgroup_fields(key: str, values: np.ndarray, inctx: np.ndarray, notctx: np.ndarray, series: np.ndarray,
                    valid: np.ndarray | None = None, **bs) -> dict[str, Any]:
    """``<key>_in_ctx`` / ``<key>_not_in_ctx`` (series-bootstrap summaries of a per-sample gain where the masked
    character is / is not in the context panels) and ``<key>_in_minus_not`` (their paired difference test,
    :func:`metrics.subgroup_difference`), over the samples where ``valid`` holds."""
    valid = np.ones(len(values), dtype=bool) if valid is None else valid
    out: dict[str, Any] = {}
    for tag, sel in (("in_ctx", inctx), ("not_in_ctx", notctx)):
        out.update(interval_fields(f"{key}_{tag}", values, series, valid & sel, **bs))
    both = valid & (inctx | notctx)
    t = M.subgroup_difference(values[both], inctx[both], series[both], **bs)
    out.update({f"{key}_in_minus_not": t["mean"], f"{key}_in_minus_not_lo": t["lo"],
                f"{key}_in_minus_not_hi": t["hi"], f"{key}_in_minus_not_p": t["p"]})
    return out


def score_faces(faces: FaceScores, samples: Mapping[str, Any], *, n_boot: int = 1000, ci: float = 0.95,
                seed: int = 0, identity: bool = True, identity_epochs: int = 30, cache_dir: str | Path | None = None,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every interval of a results row, from per-sample values, by series bootstrap (faces of a series are not
    independent). ``samples``: the evaluated samples' ``series``, ``characters``, ``in_context`` and
    ``have_gt`` (:func:`ssuper_lib.evaluate.generate.eval_context`). Returns (row fields, per-sample columns).
    Shared by trained models and baselines so that every row of the table is computed by the same code on the
    same samples."""
    bs = dict(n_boot=n_boot, ci=ci, seed=seed)
    series, in_context, have_gt = samples["series"], samples["in_context"], samples["have_gt"]
    ser = np.asarray(series)
    row: dict[str, Any] = {"n_series": len(set(series)), "ci_method": "series bootstrap"}
    per: dict[str, Any] = {}
    row.update(interval_fields("psnr", faces.psnr, ser, **bs))
    row.update(interval_fields("ssim", faces.ssim, ser, **bs))
    inctx = np.array([c is True for c in in_context])
    notctx = np.array([c is False for c in in_context])
    row["n_unknown_character"] = int(sum(c is None for c in in_context)) if have_gt else None
    row["identity_reason"] = ""
    correct = known = None
    if identity and have_gt:
        correct, known = _identity_fields(faces, samples["characters"], ser, inctx, notctx, row, per,
                                          identity_epochs, cache_dir, bs)
    else:
        row["identity_reason"] = "no ground truth (synthetic data only)" if not have_gt else "identity not requested"

    if faces.psnr_shuf is not None:
        psnr, psnr_shuf = faces.psnr, faces.psnr_shuf
        row.update(interval_fields("gain_psnr", psnr, ser, paired=psnr_shuf, **bs))
        row.update(interval_fields("gain_ssim", faces.ssim, ser, paired=faces.ssim_shuf, **bs))
        if have_gt:
            row.update(subgroup_fields("gain_psnr", psnr - psnr_shuf, inctx, notctx, ser, **bs))
            if correct is not None and "shuffled" in correct:
                dc = correct["gen"] - correct["shuffled"]
                row.update(interval_fields("gain_id", dc, ser, known, **bs))
                row.update(subgroup_fields("gain_id", dc, inctx, notctx, ser, valid=known, **bs))
    return row, per


def _identity_fields(faces: FaceScores, characters: Sequence[str | None], ser: np.ndarray, inctx: np.ndarray,
                     notctx: np.ndarray, row: dict, per: dict, identity_epochs: int, cache_dir, bs: dict,
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Identity accuracy by 2-fold cross-fitted classifiers (:func:`cross_fit_identity`): adds the row's
    ``id_*`` entries and the per-sample predictions; returns (correct per face set, known target)."""
    sets = {"gen": faces.gen_u8}
    if faces.shuf_u8 is not None:
        sets["shuffled"] = faces.shuf_u8
    ident = cross_fit_identity(faces.true_u8, list(characters), sets, seed=bs["seed"], epochs=identity_epochs,
                               cache_dir=cache_dir)
    per["fold"] = ident["fold"]
    chars = np.array(characters, dtype=object)
    known = np.array([c is not None for c in characters]) & np.array([p is not None for p in ident["pred_true"]])
    for k in ["true"] + list(sets):
        per[f"id_pred_{k}"] = ident[f"pred_{k}"]
    correct = {k: (ident[f"pred_{k}"] == chars).astype(np.float64) for k in ["true"] + list(sets)}
    for name, key in (("id_acc_ceiling", "true"), ("id_acc", "gen"), ("id_acc_shuffled", "shuffled")):
        if key in correct:
            row.update(interval_fields(name, correct[key], ser, known, **bs))
    for tag, sel in (("in_ctx", inctx), ("not_in_ctx", notctx)):
        row.update(interval_fields(f"id_acc_{tag}", correct["gen"], ser, known & sel, **bs))
    row["id_classes"] = ident["n_classes"]
    row["id_train_n"] = "/".join(map(str, ident["n_train"]))
    row["id_chance"] = 1.0 / max(ident["n_classes"], 1)
    return correct, known
