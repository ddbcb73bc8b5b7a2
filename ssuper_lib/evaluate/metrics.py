"""Image-quality metrics of the kit: PSNR, SSIM and bootstrap intervals (FID/KID: :mod:`.fid`).

Two protocols are implemented and must never be mixed (docs/design.md 7):

* **Kit protocol (sound).** Per-image PSNR and SSIM on the 64x64 faces (mean with a bootstrap confidence
  interval); PSNR of the whole panel with the generated face pasted back.
* **Original protocol** (docs/original.md 5), only to compare with the original table: PSNR of whole batches
  of 64 averaged over batches (:func:`psnr_original_protocol`). Every number from it is labelled
  "original protocol" by the callers.

Differences from the original code (docs/original.md 5 and 8, items 12-13):

* PSNR is per image and uses G(mu) for every variant (the original averaged batch-level PSNR and mixed
  mu-vs-sampled-z protocols between variants).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..data.pixels import to_unit255
from ..models.discriminator import box_list, paste_faces

__all__ = [
    "psnr_per_image",
    "psnr_original_protocol",
    "ssim_per_image",
    "panel_psnr_per_image",
    "bootstrap_ci",
    "cluster_bootstrap_means",
    "summarize",
    "paired_difference",
    "subgroup_difference",
]


# --------------------------------------------------------------------------------------------------
# PSNR and SSIM
# --------------------------------------------------------------------------------------------------


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"expected image batches (B, C, H, W), got shape {tuple(pred.shape)}")


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB of [-1, 1] image batches (B, C, H, W) -> (B,) float64.

    Both are clamped to [-1, 1] and mapped to [0, 255]; PSNR = 20 log10(255 / sqrt(MSE)) with the MSE of
    each image over its C*H*W elements. Identical images give +inf (the definition, not a cap).
    """
    _check_pair(pred, target)
    mse = ((to_unit255(pred) - to_unit255(target)) ** 2).flatten(1).mean(1).cpu().numpy()  # (B,)
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(255.0 / np.sqrt(mse))


def psnr_original_protocol(pred: torch.Tensor, target: torch.Tensor, batch_size: int = 64) -> dict:
    """The original's PSNR (docs/original.md 5.1), **original protocol**: one PSNR per batch of ``batch_size``
    images in the given order (MSE over every element of the batch), averaged over batches; the partial
    last batch weighs as much as a full one. Returns {"psnr", "n_batches", "n"}.
    """
    _check_pair(pred, target)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mse = ((to_unit255(pred) - to_unit255(target)) ** 2).flatten(1).mean(1).cpu().numpy()  # (B,)
    batch_psnr = []
    for start in range(0, len(mse), batch_size):
        batch_mse = mse[start : start + batch_size].mean()  # equal-size images: mean of means = batch MSE
        with np.errstate(divide="ignore"):
            batch_psnr.append(20.0 * np.log10(255.0 / np.sqrt(batch_mse)))
    return {"psnr": float(np.mean(batch_psnr)) if batch_psnr else float("nan"), "n_batches": len(batch_psnr), "n": len(mse)}


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, **kwargs) -> np.ndarray:
    """Per-image SSIM of [-1, 1] RGB batches (B, 3, H, W) -> (B,), scikit-image's definition.

    The value of ``skimage.metrics.structural_similarity`` on [0, 255] float images (clamped, not rounded)
    with ``data_range=255`` and ``channel_axis=-1`` (mean over channels) and its default 7x7 uniform window
    with sample covariances: computed here for the whole batch at once in float64 (equal to scikit-image's to
    float rounding, tested; scikit-image crops the 3-pixel border its filters pad, so a 7x7 average pool
    without padding gives the same local statistics). Extra keyword arguments (e.g.
    ``gaussian_weights=True``) call scikit-image itself, one image at a time.
    """
    _check_pair(pred, target)
    a, b = to_unit255(pred), to_unit255(target)  # (B, C, H, W) float64
    if kwargs:
        from skimage.metrics import structural_similarity

        a, b = a.permute(0, 2, 3, 1).cpu().numpy(), b.permute(0, 2, 3, 1).cpu().numpy()
        return np.array([structural_similarity(x, y, data_range=255.0, channel_axis=-1, **kwargs)
                         for x, y in zip(a, b)], dtype=np.float64)
    win = 7
    if min(a.shape[-2:]) < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} pixels, got {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    x, y = a.reshape(n * c, 1, *a.shape[-2:]), b.reshape(n * c, 1, *b.shape[-2:])
    stats = torch.nn.functional.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], 1), win, stride=1)
    ux, uy, uxx, uyy, uxy = stats.unbind(1)
    cov_norm = win * win / (win * win - 1.0)  # sample covariance, as scikit-image's default
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(n, c, -1).mean(2).mean(1).cpu().numpy()


def panel_psnr_per_image(
    gt_panels: torch.Tensor, faces: torch.Tensor, mask_coords: torch.Tensor
) -> np.ndarray:
    """PSNR of whole panels with the generated face pasted back, against the unmasked panel -> (B,).

    ``gt_panels`` (B, 3, H, W) are the true last panels, ``faces`` (B, 3, 64, 64) the generated faces,
    ``mask_coords`` (B, 4) = (y1, y2, x1, x2). The paste is the models' ``paste_faces`` (bilinear resize
    to the box), so the panel outside the box is exact and the number mixes face error with box size.
    """
    H, W = gt_panels.shape[-2:]
    pasted = paste_faces(gt_panels, faces, mask_coords)  # (B, 3, H, W)
    # outside its box a pasted panel equals the true one exactly: square errors summed over the box only
    sse = np.zeros(len(gt_panels))
    for i, (y1, y2, x1, x2) in enumerate(box_list(mask_coords, H, W)):
        cy1, cy2, cx1, cx2 = max(y1, 0), min(y2, H), max(x1, 0), min(x2, W)
        d = to_unit255(pasted[i, :, cy1:cy2, cx1:cx2]) - to_unit255(gt_panels[i, :, cy1:cy2, cx1:cx2])
        sse[i] = float((d * d).sum())
    mse = sse / float(gt_panels[0].numel())
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(255.0 / np.sqrt(mse))


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (resampling items with replacement).

    Seeded (``numpy.random.default_rng(seed)``), so the same inputs give the same interval. Returns
    (nan, nan) for fewer than two finite values or ``n_boot == 0``.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))  # (n_boot, n)
    if statistic is np.mean:
        stats = x[idx].mean(axis=1)
    else:
        stats = np.array([statistic(x[i]) for i in idx])
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def cluster_bootstrap_means(values: np.ndarray, clusters: Sequence | np.ndarray, n_boot: int = 1000, seed: int = 0,
                            ) -> np.ndarray:
    """Bootstrap distribution (n_boot,) of the mean of ``values`` when whole clusters (series) are resampled
    with replacement: each resample draws as many clusters as there are, and the statistic is the mean over
    every item of the drawn clusters (sum of their sums / sum of their counts). Non-finite values are dropped."""
    x = np.asarray(values, dtype=np.float64)
    c = np.asarray([str(v) for v in clusters])
    keep = np.isfinite(x)
    x, c = x[keep], c[keep]
    uniq, inv = np.unique(c, return_inverse=True)
    sums = np.bincount(inv, weights=x, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))  # (n_boot, G)
    return sums[idx].sum(1) / np.maximum(counts[idx].sum(1), 1e-12)


def summarize(values: Sequence[float] | np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
              clusters: Sequence | np.ndarray | None = None) -> dict:
    """Mean of the finite values with its bootstrap interval and counts: {mean, lo, hi, n, n_series, n_nonfinite, ci_method}.

    With ``clusters`` (one label per value, e.g. the series of each test face) the interval resamples whole
    clusters (:func:`cluster_bootstrap_means`): faces of one series are not independent (a cast recurs, and
    overlapping windows share panels), so this is the kit's default. Without, items are resampled.
    A single cluster gives no interval (nan).
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    out = {"mean": float(x[finite].mean()) if finite.any() else float("nan"), "n": int(finite.sum()),
           "n_nonfinite": int(len(x) - finite.sum())}
    alpha = (1.0 - ci) / 2.0
    if clusters is None:
        lo, hi = bootstrap_ci(x[finite], n_boot=n_boot, ci=ci, seed=seed)
        out.update(lo=lo, hi=hi, n_series=None, ci_method="bootstrap over items")
        return out
    c = np.asarray([str(v) for v in clusters])
    if len(c) != len(x):
        raise ValueError(f"clusters: expected one label per value ({len(x)}), got {len(c)}")
    n_series = len(np.unique(c[finite]))
    if n_series < 2 or n_boot <= 0:
        lo = hi = float("nan")
    else:
        stats = cluster_bootstrap_means(x, c, n_boot=n_boot, seed=seed)
        lo, hi = (float(v) for v in np.quantile(stats, [alpha, 1.0 - alpha]))
    out.update(lo=lo, hi=hi, n_series=n_series, ci_method="series bootstrap")
    return out


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
    clusters: Sequence | np.ndarray | None = None,
) -> dict:
    """Mean of the paired differences a - b with a paired bootstrap interval (pairs resampled together; by
    cluster when ``clusters`` is given, see :func:`summarize`)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    return summarize(a - b, n_boot=n_boot, ci=ci, seed=seed, clusters=clusters)


def subgroup_difference(values: np.ndarray, in_group: np.ndarray, clusters: Sequence | np.ndarray, n_boot: int = 1000,
                        ci: float = 0.95, seed: int = 0) -> dict:
    """Direct test of "mean of ``values`` where ``in_group`` minus mean where not": the difference of the two
    subgroup means with a series-bootstrap interval (both subgroups drawn from the same resampled series,
    so their dependence is kept) and a two-sided bootstrap p-value (twice the share of resamples on the
    other side of 0). {mean, lo, hi, p, n_in, n_out, n_series}."""
    x = np.asarray(values, dtype=np.float64)
    g = np.asarray(in_group, dtype=bool)
    c = np.asarray([str(v) for v in clusters])
    keep = np.isfinite(x)
    x, g, c = x[keep], g[keep], c[keep]
    out = {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan"),
           "n_in": int(g.sum()), "n_out": int((~g).sum()), "n_series": int(len(np.unique(c)))}
    if not g.any() or g.all():
        return out
    out["mean"] = float(x[g].mean() - x[~g].mean())
    uniq, inv = np.unique(c, return_inverse=True)
    if len(uniq) < 2 or n_boot <= 0:
        return out
    G = len(uniq)
    s_in = np.bincount(inv, weights=np.where(g, x, 0.0), minlength=G)
    n_in = np.bincount(inv, weights=g.astype(float), minlength=G)
    s_out = np.bincount(inv, weights=np.where(~g, x, 0.0), minlength=G)
    n_out = np.bincount(inv, weights=(~g).astype(float), minlength=G)
    idx = np.random.default_rng(seed).integers(0, G, size=(n_boot, G))
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = s_in[idx].sum(1) / n_in[idx].sum(1) - s_out[idx].sum(1) / n_out[idx].sum(1)
    stats = stats[np.isfinite(stats)]
    if len(stats):
        alpha = (1.0 - ci) / 2.0
        out["lo"], out["hi"] = (float(v) for v in np.quantile(stats, [alpha, 1.0 - alpha]))
        out["p"] = float(min(1.0, 2.0 * min((stats <= 0).mean(), (stats >= 0).mean())))
    return out

