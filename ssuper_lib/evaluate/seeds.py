"""One row per model over its training seeds: :func:`aggregate_seeds` pools the seeds' per-sample values."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .scoring import interval_fields, subgroup_fields
from .table import finite

__all__ = ["SEED_METRICS", "aggregate_seeds"]

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
            vals = [r.get(m) for r in grp if finite(r.get(m))]
            if len(vals) >= 2:
                agg.update({f"{m}_seed_mean": float(np.mean(vals)), f"{m}_seed_sd": float(np.std(vals, ddof=1)),
                            f"{m}_seed_min": float(np.min(vals)), f"{m}_seed_max": float(np.max(vals))})
            cols = [_per_sample_metric(p, m) for p in pers if p is not None]
            if len(cols) == len(grp) and all(c is not None for c in cols) and len({len(c) for c in cols}) == 1:
                pooled = np.nanmean(np.stack(cols), axis=0) if np.isfinite(np.stack(cols)).any() else cols[0]
                agg.update(interval_fields(m, pooled, pers[0]["series"].astype(str).to_numpy(), n_boot=n_boot, ci=ci,
                                           seed=seed))
                if m in ("gain_psnr", "gain_id") and "in_context" in pers[0]:
                    agg.update(_pooled_subgroups(m, pooled, pers[0], n_boot, ci, seed))
        out.append(agg)
    return out


def _pooled_subgroups(key: str, pooled: np.ndarray, per, n_boot: int, ci: float, seed: int) -> dict:
    """The in-context / not-in-context subgroups of a seed-pooled per-sample gain, and their direct paired
    test (:func:`metrics.subgroup_difference`), as :func:`score_faces` reports them for one run."""
    flag = per["in_context"].astype(str).str.lower()
    inctx, notctx = (flag == "true").to_numpy(), (flag == "false").to_numpy()
    return subgroup_fields(key, pooled, inctx, notctx, per["series"].astype(str).to_numpy(),
                           valid=np.isfinite(pooled), n_boot=n_boot, ci=ci, seed=seed)
