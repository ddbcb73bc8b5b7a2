"""Tests of ssuper_lib.evaluate.metrics and .fid: PSNR/SSIM definitions, both protocols, bootstrap, FID/KID through torch-fidelity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssuper_lib.data.pixels import to_uint8
from ssuper_lib.evaluate import fid as FID
from ssuper_lib.evaluate import metrics as M


# --------------------------------------------------------------------------------------------------
# A small feature extractor the tests register with torch-fidelity themselves
# --------------------------------------------------------------------------------------------------


def _register_test_extractor():
    """Features = 4x4 average-pooled pixels (48-d) times a weight matrix loaded from the weights file."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    name = "test-pool4-linear"
    if name in FEATURE_EXTRACTORS_REGISTRY:
        return name, FEATURE_EXTRACTORS_REGISTRY[name]

    class Pool4Linear(FeatureExtractorBase):
        loaded_paths: list = []

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            weight = torch.eye(48)
            if feature_extractor_weights_path is not None:
                weight = torch.load(feature_extractor_weights_path, weights_only=True)["weight"]
                Pool4Linear.loaded_paths.append(feature_extractor_weights_path)
            self.register_buffer("weight", weight.double())

        @staticmethod
        def get_provided_features_list():
            return ("feat",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "feat"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

        def forward(self, x):
            assert x.dtype == torch.uint8, "torch-fidelity inputs must be uint8"
            f = F.adaptive_avg_pool2d(x.double() / 255.0, 4).flatten(1)  # (B, 48)
            return (f @ self.weight.T,)

    register_feature_extractor(name, Pool4Linear)
    return name, Pool4Linear


def _pool4_features(images: torch.Tensor) -> np.ndarray:
    u8 = to_uint8(images)
    return F.adaptive_avg_pool2d(u8.double() / 255.0, 4).flatten(1).numpy()


def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent Frechet distance: numpy statistics + scipy.linalg.sqrtm."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _images(n: int, seed: int, shift: float = 0.0, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 2 - 1 + shift).clamp(-1, 1)


# --------------------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------------------


def test_psnr_constant_offset_is_analytic():
    target = torch.zeros(3, 3, 8, 8)
    # offsets in [-1,1] units map to d*127.5 in [0,255]: PSNR = 20 log10(255 / (127.5 d)) = 20 log10(2 / d)
    offsets = torch.tensor([0.1, 0.2, 0.5])
    pred = target + offsets.view(3, 1, 1, 1)
    got = M.psnr_per_image(pred, target)
    want = 20 * np.log10(2 / offsets.double().numpy())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_psnr_clamps_to_unit_range():
    target = torch.ones(1, 3, 4, 4)
    assert np.isinf(M.psnr_per_image(target * 5, target)[0]), "values above 1 must be clamped to 1 before PSNR"


def test_ssim_identical_is_one_and_drops_with_noise():
    x = _images(4, 0, size=32)
    np.testing.assert_allclose(M.ssim_per_image(x, x), 1.0, atol=1e-12)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    s = M.ssim_per_image(noisy, x)
    assert s.shape == (4,) and (s < 0.9).all(), f"SSIM of noisy images should drop well below 1, got {s}"


def test_ssim_matches_skimage_on_uint8_range():
    from skimage.metrics import structural_similarity

    x, y = _images(2, 0, size=32), _images(2, 1, size=32)
    a = ((x[1].permute(1, 2, 0).double() + 1) * 127.5).numpy()
    b = ((y[1].permute(1, 2, 0).double() + 1) * 127.5).numpy()
    want = structural_similarity(a, b, data_range=255.0, channel_axis=-1)
    assert M.ssim_per_image(x, y)[1] == pytest.approx(want, abs=1e-12)


def test_batched_ssim_equals_skimage_per_image():
    """The batched SSIM is scikit-image's, image by image: faces, out-of-range values, an odd small size."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(3)
    for shape in ((5, 3, 64, 64), (2, 3, 9, 13)):
        x = torch.rand(shape, generator=g) * 2.4 - 1.2  # some values outside [-1, 1]: clamped first
        y = (x + 0.2 * torch.randn(shape, generator=g)).clamp(-1, 1)
        a = ((x.clamp(-1, 1).double() + 1) * 127.5).permute(0, 2, 3, 1).numpy()
        b = ((y.double() + 1) * 127.5).permute(0, 2, 3, 1).numpy()
        want = [structural_similarity(p, q, data_range=255.0, channel_axis=-1) for p, q in zip(a, b)]
        np.testing.assert_allclose(M.ssim_per_image(x, y), want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 7x7"):
        M.ssim_per_image(torch.zeros(1, 3, 6, 8), torch.zeros(1, 3, 6, 8))


def test_original_protocol_psnr_differs_from_per_image_mean_as_defined():
    # Batch 1 holds two images with squared errors e1, e2 (constant offsets), batch 2 one image with e3.
    target = torch.zeros(3, 3, 4, 4)
    d = torch.tensor([0.1, 0.4, 0.2])  # offsets in [-1, 1] units
    pred = target + d.view(3, 1, 1, 1)
    mse = (d.double().numpy() * 127.5) ** 2
    per_image = 10 * np.log10(255.0**2 / mse)
    orig = M.psnr_original_protocol(pred, target, batch_size=2)
    batch1 = 10 * np.log10(255.0**2 / mse[:2].mean())
    batch2 = per_image[2]
    assert orig["n_batches"] == 2 and orig["n"] == 3
    assert orig["psnr"] == pytest.approx((batch1 + batch2) / 2, abs=1e-9)
    # the difference is exactly the Jensen gap within batch 1, halved by the averaging over 2 batches,
    # plus the re-weighting of the partial batch (1/2 instead of 1/3)
    per_image_mean = M.psnr_per_image(pred, target).mean()
    want_gap = (batch1 + batch2) / 2 - per_image.mean()
    assert orig["psnr"] - per_image_mean == pytest.approx(want_gap, abs=1e-9)
    assert orig["psnr"] < per_image_mean, "the batch MSE PSNR is below the mean of per-image PSNRs (Jensen)"
    # with one image per batch both protocols agree
    assert M.psnr_original_protocol(pred, target, batch_size=1)["psnr"] == pytest.approx(per_image.mean(), abs=1e-9)


def test_panel_psnr_outside_box_is_exact():
    pytest.importorskip("ssuper_lib.models.discriminator")
    panels = _images(2, 0, size=32)
    faces = _images(2, 1, size=8)
    coords = torch.tensor([[4, 12, 8, 16], [0, 32, 0, 32]])
    got = M.panel_psnr_per_image(panels, faces, coords)
    assert got[0] > got[1], "a small pasted box changes less of the panel than a full-panel box"
    # the box-only sum is the whole panel's PSNR, also for a box that crosses the border
    coords = torch.tensor([[4, 12, 8, 16], [-3, 9, 25, 40]])
    from ssuper_lib.models.discriminator import paste_faces

    want = M.psnr_per_image(paste_faces(panels, faces, coords), panels)
    np.testing.assert_allclose(M.panel_psnr_per_image(panels, faces, coords), want, rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(0).normal(3.0, 1.0, size=200)
    lo, hi = M.bootstrap_ci(x, n_boot=500, seed=1)
    assert (lo, hi) == M.bootstrap_ci(x, n_boot=500, seed=1)
    assert lo < x.mean() < hi and hi - lo < 0.5
    s = M.summarize(np.append(x, np.inf))
    assert s["n"] == 200 and s["n_nonfinite"] == 1
    d = M.paired_difference(x + 1.0, x, n_boot=200)
    assert d["mean"] == pytest.approx(1.0) and d["lo"] == pytest.approx(1.0) and d["hi"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# FID / KID through torch-fidelity
# --------------------------------------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero():
    name, _ = _register_test_extractor()
    x = _images(64, 0)
    out = FID.fid_kid(x, x.clone(), feature_extractor=name, kid_subset_size=1000, kid_subsets=10)
    assert abs(out["fid"]) < 1e-6, f"FID(x, x) should be ~0, got {out['fid']}"
    assert abs(out["kid_mean"]) < 1e-3


def test_kit_fid_equals_independent_scipy_frechet_distance():
    name, _ = _register_test_extractor()
    real, fake = _images(80, 0), _images(60, 1, shift=0.3)
    out = FID.fid_kid(real, fake, feature_extractor=name, kid=False)
    want = _scipy_fid(_pool4_features(fake), _pool4_features(real))
    assert out["fid"] == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert out["fid"] > 0.01
    # the kit's own scipy Frechet distance (original protocol) agrees on one batch too
    f_r, f_f = _pool4_features(real), _pool4_features(fake)
    mine = FID.frechet_distance(f_f.mean(0), np.cov(f_f, rowvar=False), f_r.mean(0), np.cov(f_r, rowvar=False))
    assert mine == pytest.approx(want, rel=1e-6)


def test_kid_with_fewer_than_1000_samples():
    name, _ = _register_test_extractor()
    real, fake = _images(40, 0), _images(30, 1, shift=0.5)
    out = FID.fid_kid(real, fake, feature_extractor=name, kid_subset_size=1000, kid_subsets=20)
    assert out["kid_subset_size"] == 30, "the KID subset must be capped at the smaller sample count"
    assert np.isfinite(out["kid_mean"]) and out["kid_mean"] > 0


def test_real_features_are_cached_by_content(tmp_path):
    name, _ = _register_test_extractor()
    real, fake = _images(20, 0), _images(20, 1)
    a = FID.fid_kid(real, fake, feature_extractor=name, kid=False, cache_root=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and all(f.startswith(FID.images_cache_name(real)) for f in files), files
    b = FID.fid_kid(real, fake, feature_extractor=name, kid=False, cache_root=tmp_path)
    assert a["fid"] == pytest.approx(b["fid"])
    c = FID.fid_kid(_images(20, 2), fake, feature_extractor=name, kid=False, cache_root=tmp_path)
    assert c["fid"] != pytest.approx(a["fid"]), "other real images must not hit the first set's cache"


def test_original_protocol_fid_uses_batch_statistics():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 3))
    fake = rng.normal(size=(30, 3)) + 1.0
    out = FID.fid_original_protocol(real, fake, real_batch_size=20, fake_batch_size=10)
    assert out["n_batches"] == 3
    mu_r = (real[:20].mean(0) + real[20:].mean(0)) / 2
    s_r = (np.cov(real[:20], rowvar=False) + np.cov(real[20:], rowvar=False)) / 2
    want = np.mean([
        FID.frechet_distance(b.mean(0), np.cov(b, rowvar=False), mu_r, s_r) for b in (fake[:10], fake[10:20], fake[20:])
    ])
    assert out["fid"] == pytest.approx(want)
    # pooled statistics differ from per-batch ones (small batches bias FID upward)
    pooled = FID.frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), real.mean(0), np.cov(real, rowvar=False))
    assert out["fid"] > pooled


# --------------------------------------------------------------------------------------------------
# Inception weights
# --------------------------------------------------------------------------------------------------


def test_weights_resolution_order(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.delenv(FID.WEIGHTS_ENV_VAR, raising=False)
    # nothing anywhere and downloads off -> unavailable, with the file and the place to put it
    r = FID.resolve_inception_weights(None, allow_download=False)
    assert not r.available and FID.INCEPTION_FILENAME in r.reason and str(hub / "checkpoints") in r.reason
    # cache
    cached = hub / "checkpoints" / FID.INCEPTION_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    r = FID.resolve_inception_weights(None, allow_download=False)
    assert (r.path, r.source) == (str(cached), "cache")
    # env beats cache
    env_file = tmp_path / "env.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv(FID.WEIGHTS_ENV_VAR, str(env_file))
    assert FID.resolve_inception_weights(None, allow_download=False).source == "env"
    # explicit beats env
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"x")
    r = FID.resolve_inception_weights(explicit, allow_download=False, source_name="config")
    assert (r.path, r.source) == (str(explicit), "config")
    # a wrong explicit path is reported, not skipped
    r = FID.resolve_inception_weights(tmp_path / "missing.pth", allow_download=False)
    assert not r.available and "missing.pth" in r.reason


def test_weights_path_reaches_the_feature_extractor(tmp_path):
    """calculate_metrics receives feature_extractor_weights_path; the extractor loads the test's file."""
    name, cls = _register_test_extractor()
    w = torch.randn(48, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    path = tmp_path / "weights.pth"
    torch.save({"weight": w}, path)
    real, fake = _images(50, 0), _images(50, 1, shift=0.2)
    out = FID.fid_kid(real, fake, feature_extractor=name, weights_path=str(path), kid=False)
    assert str(path) in cls.loaded_paths
    f_r, f_f = _pool4_features(real) @ w.numpy().T, _pool4_features(fake) @ w.numpy().T
    assert out["fid"] == pytest.approx(_scipy_fid(f_f, f_r), rel=1e-6)


def test_inception_fid_with_a_weights_file_written_by_the_test(tmp_path, monkeypatch):
    """The real FID path (torch-fidelity's Inception class) with a weights file the test writes itself
    (random weights of the right shapes): the resolver finds it via the env variable and FID is computed."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc

    # build the architecture without its weights to get a state dict of the right shapes
    monkeypatch.setattr(inc, "load_state_dict_from_url", lambda *a, **k: {})
    monkeypatch.setattr(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    torch.manual_seed(0)
    net = inc.FeatureExtractorInceptionV3(FID.INCEPTION_NAME, ["2048"])
    monkeypatch.undo()
    path = tmp_path / "my-inception.pth"
    torch.save(net.state_dict(), path)
    del net
    monkeypatch.setenv(FID.WEIGHTS_ENV_VAR, str(path))
    weights = FID.resolve_inception_weights(None, allow_download=False)
    assert weights.source == "env"
    real, fake = _images(4, 0, size=16), _images(3, 1, size=16)
    out = FID.fid_kid_or_unavailable(real, fake, weights, batch_size=4, kid_subset_size=1000, kid_subsets=5, cuda=False)
    assert math.isfinite(out["fid"]) and out["kid_subset_size"] == 3 and out["weights_source"] == "env"


def test_offline_gives_unavailable_entries():
    w = FID.WeightsResolution(None, "unavailable", "no file; place X at Y")
    out = FID.fid_kid_or_unavailable(_images(4, 0), _images(4, 1), w)
    assert FID.is_unavailable(out["fid"]) and "place X at Y" in out["fid"]
    assert FID.is_unavailable(out["kid_mean"])


# --------------------------------------------------------------------------------------------------
# Series-level (cluster) bootstrap
# --------------------------------------------------------------------------------------------------


def test_series_bootstrap_is_wider_than_item_bootstrap_for_clustered_faces():
    rng = np.random.default_rng(0)
    clusters = np.repeat([f"s{i}" for i in range(8)], 50)  # 8 series of 50 faces
    x = np.repeat(rng.normal(size=8), 50) + 0.1 * rng.normal(size=400)  # series effects dominate
    item = M.summarize(x, n_boot=500, seed=1)
    ser = M.summarize(x, n_boot=500, seed=1, clusters=clusters)
    assert ser["mean"] == item["mean"] and ser["n"] == 400 and ser["n_series"] == 8
    assert ser["ci_method"] == "series bootstrap" and item["ci_method"] == "bootstrap over items"
    assert ser["hi"] - ser["lo"] > 3 * (item["hi"] - item["lo"]), "independent-face intervals overstate precision"
    assert M.summarize(x, n_boot=500, seed=1, clusters=clusters) == ser  # seeded
    one = M.summarize(x[:50], n_boot=200, clusters=clusters[:50])
    assert np.isnan(one["lo"]) and np.isnan(one["hi"]) and one["n_series"] == 1, "one series gives no interval"


def test_subgroup_difference_is_a_paired_series_test():
    rng = np.random.default_rng(2)
    clusters = np.repeat([f"s{i}" for i in range(10)], 40)
    in_group = np.tile(np.r_[np.ones(25, bool), np.zeros(15, bool)], 10)
    gain = np.where(in_group, 1.0, 0.0) + np.repeat(rng.normal(0, 0.3, 10), 40) + 0.2 * rng.normal(size=400)
    t = M.subgroup_difference(gain, in_group, clusters, n_boot=500)
    assert 0.8 < t["mean"] < 1.2 and t["lo"] > 0 and t["p"] < 0.01 and (t["n_in"], t["n_out"]) == (250, 150)
    null = M.subgroup_difference(np.repeat(rng.normal(0, 1, 10), 40), in_group, clusters, n_boot=500)
    assert null["lo"] < 0 < null["hi"] and null["p"] > 0.05
