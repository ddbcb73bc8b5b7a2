"""FID and KID of the kit through torch-fidelity, the original protocol's per-batch FID, Inception weights.

* **Kit protocol.** Pooled FID and KID over all test faces computed by ``torch_fidelity.calculate_metrics`` on
  uint8 images with the standard Inception (``inception-v3-compat``), real-face features cached by a name
  derived from the images' bytes (:func:`fid_kid`, :func:`fid_fields`).
* **Original protocol** (docs/original.md 5): FID per batch of prior samples against batch-averaged real
  statistics (:func:`fid_original_protocol`, scipy ``sqrtm`` as the original). Every number from it is
  labelled "original protocol" by the callers.

Differences from the original code (docs/original.md 5 and 8, items 12-13):

* FID is standard: pooled statistics over all test faces, torch-fidelity's Inception on uint8 inputs
  (the original fed [0, 1] images to an Inception that expects [-1, 1]). The original-protocol FID here
  keeps the original's *statistics* (per-batch FID, batch-averaged real statistics, prior samples) but
  not its input-range bug, which cannot be expressed with uint8 inputs; its numbers are therefore close
  to, not identical with, what the original code would print.
* Inception weights are resolved explicitly (:func:`resolve_inception_weights`): a local path (argument,
  ``EvalConfig.fid_weights`` or the environment variable ``SSUPER_INCEPTION_WEIGHTS``), then
  torch-fidelity's cache, then a download verified by its SHA-256 prefix. When none works, the FID and KID
  entries are the string ``"unavailable: <reason>; place <file> at <path>"``; no number computed with
  other features is ever reported under the name FID.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.pixels import to_uint8
from ..storage import CheckpointError, safe_torch_load

__all__ = [
    "INCEPTION_NAME",
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "WEIGHTS_ENV_VAR",
    "FID_ORIG_BATCH",
    "UInt8ImageDataset",
    "images_cache_name",
    "WeightsResolution",
    "inception_cache_path",
    "resolve_inception_weights",
    "unavailable",
    "is_unavailable",
    "fid_kid",
    "fid_kid_or_unavailable",
    "extract_features",
    "cached_features",
    "frechet_distance",
    "fid_original_protocol",
    "fid_fields",
    "PixelPoolExtractor",
    "register_pixel_pool_extractor",
]

INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's standard FID Inception (TF-ported weights)
INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"  # name in torch.hub's checkpoint cache
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub convention: the hex digits after the last '-' of the name
WEIGHTS_ENV_VAR = "SSUPER_INCEPTION_WEIGHTS"
FID_ORIG_BATCH = 256  # per-batch FID batch of the original protocol (docs/original.md 5.2: 128-256)


# --------------------------------------------------------------------------------------------------
# torch-fidelity inputs
# --------------------------------------------------------------------------------------------------


class UInt8ImageDataset(Dataset):
    """Wraps an image tensor (N, 3, H, W), [-1, 1] float or uint8, as torch-fidelity input: item i is uint8 CHW.

    Real and generated faces go through this same conversion (clamp, scale to [0, 255], round), so the
    feature extractor sees identically preprocessed inputs.
    """

    def __init__(self, images: torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(images.shape)}")
        self.images = to_uint8(images.detach().cpu()).contiguous()  # (N, 3, H, W) uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def images_cache_name(images: torch.Tensor, prefix: str = "ssuper-real") -> str:
    """A torch-fidelity cache name derived from the uint8 bytes of ``images`` (same faces -> same name)."""
    u8 = to_uint8(images.detach().cpu()).contiguous()
    digest = hashlib.sha1(u8.numpy().tobytes()).hexdigest()[:16]
    return f"{prefix}-{u8.shape[2]}x{u8.shape[3]}-n{len(u8)}-{digest}"


# --------------------------------------------------------------------------------------------------
# Inception weights
# --------------------------------------------------------------------------------------------------


@dataclass
class WeightsResolution:
    """Where the Inception weights come from: ``path`` (None when unavailable), ``source``
    ("argument" | "config" | "env" | "cache" | "download" | "unavailable") and ``reason`` when unavailable."""

    path: str | None
    source: str
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.path is not None


def inception_cache_path() -> Path:
    """Where torch-fidelity (torch.hub) looks for the downloaded Inception: <hub dir>/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def resolve_inception_weights(
    explicit: str | os.PathLike | None = None, allow_download: bool = True, source_name: str = "argument"
) -> WeightsResolution:
    """Find torch-fidelity's Inception weights: explicit path -> $SSUPER_INCEPTION_WEIGHTS -> torch.hub cache
    -> download (verified by the SHA-256 prefix in the file name) when ``allow_download``.

    An explicit path or environment path that does not exist is an error of the user's and is reported
    as unavailable with that path (not silently skipped to the next source).
    """
    where = (
        f"place {INCEPTION_FILENAME} (from {INCEPTION_URL}) at {inception_cache_path()}, "
        f"or point eval.fid_weights or ${WEIGHTS_ENV_VAR} to it"
    )
    for name, value in ((source_name, explicit), ("env", os.environ.get(WEIGHTS_ENV_VAR) or None)):
        if value is not None:
            p = Path(value).expanduser()
            if p.is_file():
                return WeightsResolution(str(p), name)
            label = "explicit path" if name != "env" else f"${WEIGHTS_ENV_VAR}"
            return WeightsResolution(None, "unavailable", f"{label} {p} does not exist; {where}")
    cached = inception_cache_path()
    if cached.is_file():
        return WeightsResolution(str(cached), "cache")
    if not allow_download:
        return WeightsResolution(None, "unavailable", f"no local Inception weights and downloads are off; {where}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX, progress=False)
    except Exception as exc:  # offline cluster node, proxy, hash mismatch: all mean "not available"
        if cached.exists():
            cached.unlink()
        return WeightsResolution(None, "unavailable", f"download failed ({type(exc).__name__}: {exc}); {where}")
    return WeightsResolution(str(cached), "download")


def unavailable(reason: str) -> str:
    """The table entry of a metric that could not be computed."""
    return f"unavailable: {reason}"


def is_unavailable(value: object) -> bool:
    return isinstance(value, str) and value.startswith("unavailable")


# --------------------------------------------------------------------------------------------------
# FID / KID through torch-fidelity
# --------------------------------------------------------------------------------------------------


def _fidelity_kwargs(batch_size: int, cuda: bool | None, cache_root: str | os.PathLike | None, seed: int) -> dict:
    return dict(
        batch_size=batch_size,
        cuda=torch.cuda.is_available() if cuda is None else bool(cuda),
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes: the inputs are in-memory tensors
        rng_seed=seed,
        cache=cache_root is not None,
        cache_root=None if cache_root is None else str(cache_root),
    )


def fid_kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    feature_extractor: str = INCEPTION_NAME,
    weights_path: str | None = None,
    kid: bool = True,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    batch_size: int = 64,
    cuda: bool | None = None,
    cache_root: str | os.PathLike | None = None,
    real_cache_name: str | None = "auto",
    fake_cache_name: str | None = None,
    seed: int = 0,
) -> dict:
    """Pooled Frechet distance and KID between ``real`` and ``fake`` images via ``torch_fidelity.calculate_metrics``.

    Both image sets ((N, 3, H, W), [-1, 1] or uint8) go through :class:`UInt8ImageDataset`. With
    ``cache_root`` set, the real features are cached under ``real_cache_name`` ("auto": derived from the
    images' bytes by :func:`images_cache_name`, so a changed test set never hits a stale cache).
    ``fake_cache_name`` ("auto" or a name) caches the generated features too (default: not cached).
    ``kid_subset_size`` is capped at the smaller sample count; KID needs at least 2 samples per set.

    Returns {"fid", "kid_mean", "kid_std", "n_real", "n_fake", "kid_subset_size", "feature_extractor"}.
    The value under "fid" is a Frechet *Inception* distance only when ``feature_extractor`` is
    torch-fidelity's Inception; callers label other extractors differently (see :func:`fid_kid_or_unavailable`).
    """
    import torch_fidelity

    n_real, n_fake = len(real), len(fake)
    if n_real < 2 or n_fake < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n_real} real and {n_fake} generated")
    subset = int(min(kid_subset_size, n_real, n_fake))
    do_kid = kid and subset >= 2
    if cache_root is not None and real_cache_name == "auto":
        real_cache_name = images_cache_name(real)
    if cache_root is not None and fake_cache_name == "auto":
        fake_cache_name = images_cache_name(fake, prefix="ssuper-fake")
    kwargs = _fidelity_kwargs(batch_size, cuda, cache_root, seed)
    metrics = torch_fidelity.calculate_metrics(
        input1=UInt8ImageDataset(fake),
        input2=UInt8ImageDataset(real),
        input1_cache_name=fake_cache_name if cache_root is not None else None,
        input2_cache_name=real_cache_name if cache_root is not None else None,
        fid=True,
        kid=do_kid,
        kid_subset_size=max(subset, 2),
        kid_subsets=kid_subsets,
        feature_extractor=feature_extractor,
        feature_extractor_weights_path=weights_path,
        **kwargs,
    )
    return {
        "fid": float(metrics["frechet_inception_distance"]),
        "kid_mean": float(metrics["kernel_inception_distance_mean"]) if do_kid else float("nan"),
        "kid_std": float(metrics["kernel_inception_distance_std"]) if do_kid else float("nan"),
        "n_real": n_real,
        "n_fake": n_fake,
        "kid_subset_size": subset if do_kid else 0,
        "feature_extractor": feature_extractor,
    }


def fid_kid_or_unavailable(
    real: torch.Tensor,
    fake: torch.Tensor,
    weights: WeightsResolution,
    **kwargs,
) -> dict:
    """:func:`fid_kid` with torch-fidelity's Inception, or "unavailable: ..." entries when ``weights`` is unavailable.

    Keys: fid, kid_mean, kid_std, n_real, n_fake, kid_subset_size, weights_source. Never falls back to
    another feature extractor.
    """
    if not weights.available:
        msg = unavailable(weights.reason)
        return {"fid": msg, "kid_mean": msg, "kid_std": msg, "n_real": len(real), "n_fake": len(fake),
                "kid_subset_size": 0, "weights_source": "unavailable"}
    if "feature_extractor" in kwargs and kwargs["feature_extractor"] != INCEPTION_NAME:
        raise ValueError("fid_kid_or_unavailable only computes FID with torch-fidelity's Inception")
    out = fid_kid(real, fake, feature_extractor=INCEPTION_NAME, weights_path=weights.path, **kwargs)
    out["weights_source"] = weights.source
    return out


def cached_features(cache_root: str | os.PathLike, cache_name: str, feature_extractor: str = INCEPTION_NAME,
                    layer: str = "2048") -> np.ndarray | None:
    """Features torch-fidelity cached for ``cache_name`` (``<cache_root>/<name>-<extractor>-features-<layer>.pt``), or
    None (then they are computed again): the file is a plain tensor, loaded with ``weights_only=True``; a file that
    does not load so (damaged, or holding anything but tensors) is not used."""
    path = Path(cache_root) / f"{cache_name}-{feature_extractor}-features-{layer}.pt"
    if not path.is_file():
        return None
    try:
        feats = safe_torch_load(path)
    except CheckpointError:
        return None
    return feats.double().numpy() if isinstance(feats, torch.Tensor) and feats.ndim == 2 else None


def extract_features(
    images: torch.Tensor,
    feature_extractor: str = INCEPTION_NAME,
    weights_path: str | None = None,
    layer: str | None = None,
    batch_size: int = 64,
    cuda: bool | None = None,
) -> np.ndarray:
    """Features of ``images`` from a registered torch-fidelity extractor (default: the FID layer) -> (N, D) float64."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    if feature_extractor not in FEATURE_EXTRACTORS_REGISTRY:
        raise KeyError(f"feature extractor {feature_extractor!r} is not registered with torch-fidelity")
    layer = layer or FEATURE_EXTRACTORS_REGISTRY[feature_extractor].get_default_feature_layer_for_metric("fid")
    use_cuda = torch.cuda.is_available() if cuda is None else bool(cuda)
    extractor = create_feature_extractor(
        feature_extractor, [layer], cuda=use_cuda, feature_extractor_weights_path=weights_path, verbose=False
    )
    feats = get_featuresdict_from_dataset(UInt8ImageDataset(images), extractor, batch_size, use_cuda, True, False)
    return feats[layer].double().numpy()


# --------------------------------------------------------------------------------------------------
# Original-protocol FID (numpy/scipy on features)
# --------------------------------------------------------------------------------------------------


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1-mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy ``sqrtm``; retries with eps*I added to both
    covariances when the product is singular (the original's TTUR-style fallback)."""
    from scipy import linalg

    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_original_protocol(
    real_features: np.ndarray, fake_features: np.ndarray, real_batch_size: int = 256, fake_batch_size: int = 256
) -> dict:
    """**Original protocol** FID (docs/original.md 5.2): real statistics are the *average of per-batch means and
    per-batch covariances* of the real features; FID is computed per batch of generated (prior-sample)
    features against them and averaged over batches. Batches with fewer than 2 samples are skipped
    (``np.cov`` is undefined there: the original's "-" for the CA row).

    Returns {"fid", "n_batches", "n_fake", "n_real"}; "fid" is nan when no batch has 2 or more samples.
    """
    real_features = np.asarray(real_features, dtype=np.float64)
    fake_features = np.asarray(fake_features, dtype=np.float64)
    mus, covs = [], []
    for start in range(0, len(real_features), real_batch_size):
        batch = real_features[start : start + real_batch_size]
        if len(batch) >= 2:
            mus.append(batch.mean(0))
            covs.append(np.cov(batch, rowvar=False))
    if not mus:
        raise ValueError(f"original-protocol FID needs at least 2 real samples, got {len(real_features)}")
    mu_r, sigma_r = np.mean(mus, axis=0), np.mean(covs, axis=0)
    fids = []
    for start in range(0, len(fake_features), fake_batch_size):
        batch = fake_features[start : start + fake_batch_size]
        if len(batch) >= 2:
            fids.append(frechet_distance(batch.mean(0), np.cov(batch, rowvar=False), mu_r, sigma_r))
    return {
        "fid": float(np.mean(fids)) if fids else float("nan"),
        "n_batches": len(fids),
        "n_fake": len(fake_features),
        "n_real": len(real_features),
    }


def fid_fields(true_u8, gen_u8, prior_u8, fid, weights_path, allow_download, ecfg, cache_dir, seed) -> dict:
    """FID/KID entries of a row (kit: pooled; original protocol: per-batch on prior samples)."""
    n_prior = 0 if prior_u8 is None else len(prior_u8)
    out: dict[str, Any] = {"fid_n": len(gen_u8), "fid_real_n": len(true_u8), "fid_prior_n": n_prior}
    if not fid:
        msg = unavailable("FID/KID turned off (eval.fid = false)")
        out.update({"fid": msg, "kid": msg, "kid_std": msg, "fid_prior": msg, "fid_orig": msg, "fid_weights": ""})
        return out
    weights = resolve_inception_weights(weights_path, allow_download=allow_download, source_name="config")
    out["fid_weights"] = weights.source
    common = dict(kid_subset_size=ecfg.kid_subset_size, batch_size=ecfg.batch_size,
                  cache_root=Path(cache_dir) / "fidelity", seed=seed)
    if len(true_u8) < 2:
        msg = unavailable(f"FID needs at least 2 samples, got {len(true_u8)}")
        out.update({"fid": msg, "kid": msg, "kid_std": msg, "fid_prior": msg, "fid_orig": msg})
        return out
    r = fid_kid_or_unavailable(true_u8, gen_u8, weights, **common)
    out.update({"fid": r["fid"], "kid": r["kid_mean"], "kid_std": r["kid_std"], "kid_subset_size": r["kid_subset_size"]})
    if prior_u8 is None or n_prior < 2:
        msg = unavailable("no prior samples requested (eval.prior_samples = 0)")
        out.update({"fid_prior": msg, "fid_orig": msg})
        return out
    rp = fid_kid_or_unavailable(true_u8, prior_u8, weights, kid=False, fake_cache_name="auto", **common)
    out["fid_prior"] = rp["fid"]
    if not weights.available:
        out["fid_orig"] = unavailable(weights.reason)
        return out
    # the original protocol reuses the Inception features torch-fidelity just cached (same images, same net)
    f_real = cached_features(common["cache_root"], images_cache_name(true_u8))
    f_prior = cached_features(common["cache_root"], images_cache_name(prior_u8, prefix="ssuper-fake"))
    if f_real is None:
        f_real = extract_features(true_u8, weights_path=weights.path, batch_size=ecfg.batch_size)
    if f_prior is None:
        f_prior = extract_features(prior_u8, weights_path=weights.path, batch_size=ecfg.batch_size)
    fo = fid_original_protocol(f_real, f_prior, real_batch_size=FID_ORIG_BATCH, fake_batch_size=FID_ORIG_BATCH)
    out.update({"fid_orig": fo["fid"], "fid_orig_batches": fo["n_batches"], "fid_orig_batch_size": FID_ORIG_BATCH})
    return out


# --------------------------------------------------------------------------------------------------
# A tiny registered extractor (benchmarks, tests of the plumbing; never reported as FID)
# --------------------------------------------------------------------------------------------------


def _pixel_pool_base():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class PixelPoolExtractor(FeatureExtractorBase):
        """Features = the image average-pooled to 8x8, flattened (192-d). Cheap plumbing stand-in for the
        Inception when its weights are absent; its Frechet distance is labelled ``FD[pixpool8]``, never FID."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return ("pool8",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "pool8"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)

        def forward(self, x):
            x = x.float() / 255.0  # (B, 3, H, W)
            return (F.adaptive_avg_pool2d(x, 8).flatten(1),)  # (B, 192)

    return PixelPoolExtractor


PixelPoolExtractor = None  # set by register_pixel_pool_extractor (torch-fidelity imported lazily)
PIXEL_POOL_NAME = "ssuper-pixpool8"


def register_pixel_pool_extractor() -> str:
    """Register :class:`PixelPoolExtractor` with torch-fidelity once; returns its registry name."""
    global PixelPoolExtractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if PIXEL_POOL_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        PixelPoolExtractor = _pixel_pool_base()
        register_feature_extractor(PIXEL_POOL_NAME, PixelPoolExtractor)
    else:
        PixelPoolExtractor = FEATURE_EXTRACTORS_REGISTRY[PIXEL_POOL_NAME]
    return PIXEL_POOL_NAME
