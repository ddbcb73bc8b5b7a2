"""The frozen-feature probe: a closed-form ridge readout scored like a model (ssuper_lib.evaluate.probe)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssuper_lib.evaluate import probe as P


def test_ridge_readouts_recover_a_linear_map_and_both_forms_agree():
    g = torch.Generator().manual_seed(0)
    # primal form (D < N): a noisy linear map is recovered on held-out rows
    x = torch.randn(200, 12, generator=g) * 3 + 5
    w = torch.randn(12, 4, generator=g)
    y = x @ w + 0.01 * torch.randn(200, 4, generator=g)
    predict = P.ridge_readouts(x[:150], y[:150], [1e-3])[1e-3]
    err = (predict(x[150:]) - y[150:]).pow(2).mean() / y[150:].var()
    assert err < 1e-3
    # dual form (D > N) equals the primal solution computed here by hand
    x, y = torch.randn(30, 80, generator=g), torch.randn(30, 5, generator=g)
    lam = 7.0
    mu, sd = x.double().mean(0), x.double().std(0)
    xs = (x.double() - mu) / sd
    w_ref = torch.linalg.solve(xs.T @ xs + lam * torch.eye(80, dtype=torch.float64), xs.T @ (y.double() - y.double().mean(0)))
    xn = torch.randn(6, 80, generator=g)
    ref = ((xn.double() - mu) / sd) @ w_ref + y.double().mean(0)
    fits = P.ridge_readouts(x, y, [lam, 1e9])
    assert torch.allclose(fits[lam](xn).double(), ref, atol=1e-4)
    assert torch.allclose(fits[1e9](xn).double(), y.double().mean(0).expand(6, 5), atol=1e-4)  # all shrunk: the mean
    # the primal form on the same data (rows repeated so that D <= N) matches its own hand computation too
    x2, y2 = x.repeat(3, 1), y.repeat(3, 1)
    mu2, sd2 = x2.double().mean(0), x2.double().std(0)
    xs2 = (x2.double() - mu2) / sd2
    w2 = torch.linalg.solve(xs2.T @ xs2 + lam * torch.eye(80, dtype=torch.float64), xs2.T @ (y2.double() - y2.double().mean(0)))
    ref2 = ((xn.double() - mu2) / sd2) @ w2 + y2.double().mean(0)
    assert torch.allclose(P.ridge_readouts(x2, y2, [lam])[lam](xn).double(), ref2, atol=1e-4)
    with pytest.raises(ValueError, match="lam"):
        P.ridge_readouts(x, y, [1.0, 0.0])
    with pytest.raises(ValueError, match="expected x"):
        P.ridge_readouts(x, y[:3], [1.0])


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory, tiny_synthetic):
    from test_evaluate import data_overrides

    from ssuper_lib.config import load_config
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("probe") / "syn"
    root.mkdir(parents=True)
    for name in ("panels", "annotations"):
        shutil.copytree(tiny_synthetic / name, root / name)
    shutil.copy(tiny_synthetic / "ground_truth.csv", root / "ground_truth.csv")
    cfg = load_config("configs/models/ci_plain_ssupervae.yaml",
                      data_overrides(root) + ["model.freeze_backbone=true", "eval.n_bootstrap=100"])
    run_preprocessing(cfg.data, progress=False, write_faces=False, workers=1)
    return cfg


@pytest.mark.parametrize("slot", ["context", "masked"])
def test_feature_probe_shuffles_the_context_panels_and_keeps_the_masked_one(tiny_cfg, monkeypatch, slot):
    """Features that hold the target face in one panel slot, zeros in the others: the readout copies it. When the
    face sits in a context slot, shuffling the context must cost PSNR; in the masked slot, shuffling (which keeps
    the masked panel) must change nothing."""
    from ssuper_lib.data.datasets import PanelSequenceDataset

    def fake_features(cfg, model, split, spatial, device):
        ds = PanelSequenceDataset.from_config(cfg.data, split=split, augment=False)
        faces = torch.stack([ds.masked_panel(i)[1] for i in range(len(ds))])
        feats = torch.zeros(len(ds), 3, 48)
        k = 2 if slot == "masked" else 0  # chronological order: the masked panel is last
        feats[:, k] = F.adaptive_avg_pool2d(faces, 4).flatten(1)
        return ds, feats, faces

    monkeypatch.setattr(P, "_features", fake_features)
    df = P.feature_probe(tiny_cfg, split="test", lams=[1e-2])
    r = df.iloc[0]
    assert r["n"] > 0 and r["n_series"] == 2 and r["features"] == "pooled" and r["dims"] == 3 * 48
    assert r["panel_size"] == "x".join(map(str, tiny_cfg.data.panel_size))
    assert np.isfinite(r["psnr"]) and r["psnr_lo"] <= r["psnr"] <= r["psnr_hi"]
    assert "gain_id" in r and "id_acc_shuffled" in r
    if slot == "masked":
        assert r["gain_psnr"] == 0.0 and r["gain_id"] == 0.0
    else:
        assert r["gain_psnr"] > 0.2  # measured 0.48 on the tiny set (a handful of training samples)


def test_feature_probe_refuses_a_trainable_backbone(tiny_cfg):
    import dataclasses

    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, freeze_backbone=False))
    with pytest.raises(ValueError, match="freeze_backbone"):
        P.feature_probe(cfg)
