"""Tests of ssuper_lib.evaluate: a real tiny trained run evaluated offline, context-gain wiring, identity
classifier, results table, reuse of saved rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from ssuper_lib import evaluate as E
from ssuper_lib.data.pixels import to_uint8
from ssuper_lib.evaluate import fid as FID
from ssuper_lib.evaluate import metrics as M


def data_overrides(root: Path) -> list[str]:
    return [
        f"data.panel_path={root}/panels",
        f"data.annot_path={root}/annotations",
        f"data.sequence_path={root}/sequences.json",
        f"data.faces_path={root}/faces",
        f"data.ground_truth_path={root}/ground_truth.csv",
        "data.train_test_ratio=0.5",  # 2 of the 4 tiny series are test series: context can come from another one
        "data.num_workers=0",
        "train.num_workers=0",
    ]


def make_tiny_run(tmp_root: Path, synthetic: Path, steps: int = 20) -> Path:
    """Copy the tiny synthetic set, preprocess it (2 test series), train the ci Plain-SSuperGAN a few steps."""
    from ssuper_lib.config import load_config
    from ssuper_lib.preprocess import run_preprocessing
    from ssuper_lib.train import train

    root = tmp_root / "syn"
    root.mkdir(parents=True)
    for name in ("panels", "annotations"):
        shutil.copytree(synthetic / name, root / name)
    for name in ("ground_truth.csv", "manifest.json"):
        shutil.copy(synthetic / name, root / name)
    ov = data_overrides(root) + [f"train.out_dir={tmp_root / 'runs'}", f"train.max_steps={steps}",
                                 f"train.ckpt_every={steps}", "eval.prior_samples=16", "eval.n_bootstrap=200",
                                 "eval.batch_size=8"]
    cfg = load_config("configs/models/ci_plain_ssupergan.yaml", ov)
    run_preprocessing(cfg.data, progress=False, write_faces=False, workers=1)
    return Path(train(cfg, progress=False).run_dir)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_synthetic) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("eval_run"), tiny_synthetic)


# --------------------------------------------------------------------------------------------------
# A real run, offline
# --------------------------------------------------------------------------------------------------


def test_evaluate_run_offline_reports_unavailable_fid_and_the_rest(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))  # no cached Inception
    monkeypatch.delenv(FID.WEIGHTS_ENV_VAR, raising=False)
    row = E.evaluate_run(tiny_run, seed=0, allow_download=False, identity_epochs=3)
    for key in ("fid", "kid", "fid_prior", "fid_orig"):
        assert FID.is_unavailable(row[key]), f"{key} must be 'unavailable: ...' offline, got {row[key]!r}"
    assert FID.INCEPTION_FILENAME in row["fid"] and str(tmp_path / "empty_hub") in row["fid"]
    assert row["checkpoint_step"] == 20 and row["eval_seed"] == 0
    assert row["n"] > 0 and row["psnr_n"] == row["n"] and row["n_series"] == 2
    assert 5 < row["psnr"] < 40 and row["psnr_lo"] <= row["psnr"] <= row["psnr_hi"]
    assert -1 <= row["ssim"] <= 1 and np.isfinite(row["panel_psnr"]) and row["panel_psnr"] > row["psnr"]
    assert np.isfinite(row["psnr_orig"]) and row["psnr_orig_batch_size"] == 8
    assert np.isfinite(row["gain_psnr"]) and row["gain_psnr_n"] == row["n"]
    assert row["gain_psnr_in_ctx_n"] + row["gain_psnr_not_in_ctx_n"] == row["n"]
    assert 0 <= row["id_acc_ceiling"] <= 1 and row["id_classes"] >= 2
    per = pd.read_csv(row["per_sample_path"])
    assert len(per) == row["n"] and (per["series"] != per["partner"].map(dict(zip(per["index"], per["series"])))).all()
    # the display table shows "unavailable", never a number, under FID
    table = E.results_table([row])
    assert table.loc[0, "FID (kit)"] == "unavailable" and table.loc[0, "Step"] == 20


def test_evaluate_runs_reuses_saved_rows(tiny_run, monkeypatch):
    kw = dict(max_samples=6, allow_download=False, identity=False, prior_samples=0, n_boot=50)
    first = E.evaluate_runs([tiny_run], reuse=True, seed=3, progress=False, **kw)[0]
    assert first["n"] == 6

    def boom(*a, **k):
        raise AssertionError("a saved row with unchanged checkpoint and settings must be reused")

    import ssuper_lib.evaluate.suite

    monkeypatch.setattr(ssuper_lib.evaluate.suite, "evaluate_run", boom)
    again = E.evaluate_runs([tiny_run], reuse=True, seed=3, progress=False, **kw)[0]
    assert again["psnr"] == pytest.approx(first["psnr"])
    with pytest.raises(AssertionError):
        E.evaluate_runs([tiny_run], reuse=True, seed=3, progress=False, **{**kw, "max_samples": 5})


# --------------------------------------------------------------------------------------------------
# Context-gain wiring with stub models
# --------------------------------------------------------------------------------------------------


class _StubModel(nn.Module):
    """encode -> the mean colour of one panel; generate -> a flat face of that colour."""

    refiner = None

    def __init__(self, panel_index: int):
        super().__init__()
        self.panel_index = panel_index
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, panels):  # (B, S, 3, H, W)
        mu = panels[:, self.panel_index].mean(dim=(2, 3))  # (B, 3)
        return mu, torch.zeros_like(mu)

    def generate(self, z):
        return z[:, :, None, None].expand(-1, 3, 64, 64).clone()

    def sample(self, n, generator=None):
        return torch.zeros(n, 3, 64, 64)


def _stub_load_run(tiny_run, panel_index):
    from ssuper_lib.train import load_run

    cfg, _ = load_run(tiny_run)

    def fake(run_dir, device="cpu", **kwargs):
        return cfg, _StubModel(panel_index)

    return fake


def test_context_blind_model_has_exactly_zero_gain(tiny_run, monkeypatch):
    import ssuper_lib.evaluate.run

    monkeypatch.setattr(ssuper_lib.evaluate.run, "load_run", _stub_load_run(tiny_run, panel_index=-1))  # masked panel only
    row = E.evaluate_run(tiny_run, allow_download=False, identity=False, prior_samples=0, n_boot=50)
    assert row["gain_psnr"] == 0.0 and row["gain_psnr_lo"] == 0.0 and row["gain_psnr_hi"] == 0.0


def test_shuffled_context_comes_from_the_partner_sample(tiny_run, monkeypatch):
    import ssuper_lib.evaluate.run
    from ssuper_lib.data.datasets import PanelSequenceDataset

    monkeypatch.setattr(ssuper_lib.evaluate.run, "load_run", _stub_load_run(tiny_run, panel_index=0))  # copies panel 1
    row = E.evaluate_run(tiny_run, allow_download=False, identity=False, prior_samples=0, n_boot=50)
    per = pd.read_csv(row["per_sample_path"])
    cfg, _ = _stub_load_run(tiny_run, 0)(tiny_run)
    ds = PanelSequenceDataset.from_config(cfg.data, split="test")
    for _, r in per.head(4).iterrows():
        partner_p1 = ds[int(r["partner"])]["panels"][0]
        face = ds[int(r["index"])]["face"][None]
        want = M.psnr_per_image(partner_p1.mean(dim=(1, 2))[None, :, None, None].expand(1, 3, 64, 64), face)[0]
        assert r["psnr_shuffled"] == pytest.approx(want, abs=1e-4)
    assert row["gain_psnr"] != 0.0


def test_cached_backbone_features_score_exactly_as_the_panels(tiny_run, monkeypatch):
    """A frozen backbone's features of the split are computed once and reused (shuffled context: the partner's
    context features with this sample's masked panel); every per-sample score equals running the backbone."""
    import ssuper_lib.evaluate.run
    from ssuper_lib.train import load_run

    real = load_run

    def with_cache(flag):
        def fake(run_dir, device="cpu", **kwargs):
            cfg, model = real(run_dir, device=device, **kwargs)
            cfg.train.cache_features = flag
            return cfg, model
        return fake

    rows = {}
    for flag in (False, True):
        monkeypatch.setattr(ssuper_lib.evaluate.run, "load_run", with_cache(flag))
        row = E.evaluate_run(tiny_run, allow_download=False, identity=False, prior_samples=0, n_boot=50)
        rows[flag] = pd.read_csv(row["per_sample_path"])
    assert list(rows[True]["partner"]) == list(rows[False]["partner"])
    for col in ("psnr", "psnr_shuffled", "ssim", "panel_psnr"):
        np.testing.assert_allclose(rows[True][col], rows[False][col], atol=1e-4, err_msg=col)
    assert not np.allclose(rows[True]["psnr"], rows[True]["psnr_shuffled"])  # the context matters to this run


def test_derangement_pairs_other_series_and_is_seeded():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    p = E.derangement_across_groups(groups, seed=1)
    assert all(groups[i] != groups[j] for i, j in enumerate(p))
    assert (p == E.derangement_across_groups(groups, seed=1)).all()
    with pytest.raises(ValueError, match="two series"):
        E.derangement_across_groups(["a", "a"])


# --------------------------------------------------------------------------------------------------
# Identity classifier
# --------------------------------------------------------------------------------------------------


def test_cross_fit_identity_names_distinct_characters_and_caches(tmp_path):
    g = torch.Generator().manual_seed(0)
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    labels = [i % 3 for i in range(48)]
    faces = torch.stack([colours[c][:, None, None] * torch.ones(3, 64, 64) + 0.3 * torch.randn(3, 64, 64, generator=g)
                         for c in labels]).clamp(-1, 1)
    u8 = to_uint8(faces)
    chars = [f"s_{c}" for c in labels]
    chars[0] = None  # unknown identity: never trained on
    wrong = torch.roll(u8, 1, dims=0)  # "generated" faces of the neighbouring sample: other character
    out = E.cross_fit_identity(u8, chars, {"gen": wrong}, seed=0, epochs=8, cache_dir=tmp_path)
    fold = out["fold"]
    assert set(fold) == {0, 1} and out["n_classes"] == 3 and out["cached"] == [False, False]
    acc_true = np.mean([p == c for p, c in zip(out["pred_true"][1:], chars[1:])])
    acc_wrong = np.mean([p == c for p, c in zip(out["pred_gen"][1:], chars[1:])])
    assert acc_true > 0.9 and acc_wrong < 0.2, (acc_true, acc_wrong)
    again = E.cross_fit_identity(u8, chars, {"gen": wrong}, seed=0, epochs=8, cache_dir=tmp_path)
    assert again["cached"] == [True, True] and list(again["pred_true"]) == list(out["pred_true"])


# --------------------------------------------------------------------------------------------------
# Results table
# --------------------------------------------------------------------------------------------------


def _row(**kw):
    base = {"run": "00001-x", "run_dir": "/x", "model": "Plain-SSuperGAN", "latent": 64, "lstm_hidden": None,
            "embed": 128, "psnr": 14.2, "psnr_lo": 14.0, "psnr_hi": 14.4, "psnr_n": 100, "ssim": 0.4,
            "psnr_orig": 13.9, "psnr_orig_n": 100, "fid": "unavailable: no weights; place F at P", "fid_n": 100,
            "kid": "unavailable: no weights; place F at P", "gain_psnr": 1.5, "gain_psnr_lo": 1.3, "gain_psnr_hi": 1.7,
            "gain_psnr_n": 100, "eval_seed": 0, "checkpoint_step": 3000, "ci": 0.95}
    base.update(kw)
    return base


def test_write_results_files(tmp_path):
    rows = [_row(), _row(run="00002-y", model="Bi-LSTM-SSuperGAN", lstm_hidden=128, fid=31.4, kid=0.0123)]
    paths = E.write_results(rows, tmp_path / "stats", tmp_path / "figs")
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 2 and {"psnr", "psnr_orig", "fid", "gain_psnr", "checkpoint_step", "eval_seed"} <= set(csv.columns)
    md = paths["md"].read_text()
    assert "original protocol" in md and "n = 100 test faces" in md, "the counts are stated once, above the tables"
    assert "| 14.20 [14.00, 14.40] |" in md and "| 31.4 |" in md and "(n=100" not in md
    head, full = md.split("Every column")
    assert head.count("| Plain-SSuperGAN |") == 1 and "identity gain pp" in head and "label-free top-1 %" in head
    assert full.count("unavailable (1)") == 2 and md.count("place F at P") == 1, \
        "an unavailable metric is explained once, in a footnote, not per row"
    assert paths["png"].is_file() and paths["png"].name == "05_results_table.png"
    t = E.results_table(rows)
    assert list(t["LSTM hidden"]) == ["-", 128] and t.loc[0, "FID (kit)"] == "unavailable"


def test_headline_table_has_one_interval_per_metric_and_counts_once():
    rows = [_row(psnr_n_series=4, ssim_lo=0.38, ssim_hi=0.42, id_acc=0.5, id_acc_lo=0.4, id_acc_hi=0.6, id_acc_n=98,
                 gain_id=0.1, gain_id_lo=0.0, gain_id_hi=0.2, lf_top1=0.3, lf_top1_lo=0.2, lf_top1_hi=0.4,
                 train_seeds="0,1,2", split="test", id_chance=0.25),
            _row(model="Baseline: mean training face", kind="baseline", psnr_n_series=4, id_acc="unavailable: no labels")]
    t = E.headline_table(rows)
    assert list(t.columns) == ["Model", "PSNR dB", "SSIM", "identity %", "identity gain pp (true − shuffled context)",
                               "context gain dB", "label-free top-1 %"]
    assert list(t.iloc[0]) == ["Plain-SSuperGAN", "14.20 [14.00, 14.40]", "0.400 [0.380, 0.420]", "50.0 [40.0, 60.0]",
                               "10.0 [0.0, 20.0]", "1.50 [1.30, 1.70]", "30.0 [20.0, 40.0]"]
    md = E.headline_markdown(rows)
    first = md.splitlines()[0]
    assert first.startswith("n = 100 test faces from 4 test series (identity: the 98 whose character is known)")
    assert "95% series-bootstrap" in first and "training seeds 0,1,2" in first and "chance identity 25.0%" in first
    assert "| unavailable (1) |" in md and md.rstrip().endswith("(1) identity %: unavailable: no labels")


def test_result_files_hold_no_absolute_path_and_resolve_from_elsewhere(tmp_path, monkeypatch):
    """Runs inside the repository are stored relative to it, runs elsewhere relative to the runs root; either
    resolves again from another working directory."""
    import ssuper_lib.evaluate.portable as P

    repo = tmp_path / "repo"
    monkeypatch.setattr(P, "REPO_ROOT", repo)  # a repository-like root in a temporary folder
    inside, outside = repo / "runs" / "00001-x", tmp_path / "scratch" / "runs" / "00002-y"
    for rd in (inside, outside):
        (rd / "eval").mkdir(parents=True)
        (rd / "eval" / "faces_test_seed0.pt").write_bytes(b"")
        (rd / "eval" / "per_sample_test_seed0.csv").write_text("series\n")
    rows = [_row(run=rd.name, run_dir=str(rd), faces_path=str(rd / "eval" / "faces_test_seed0.pt"),
                 per_sample_path=str(rd / "eval" / "per_sample_test_seed0.csv"),
                 fid=f"unavailable: place F at {repo}/weights.pth", kind=kind)
            for rd, kind in ((inside, "model"), (outside, "seed run"))]
    paths = E.write_results(rows, tmp_path / "stats", tmp_path / "figs", table_rows=rows[:1])
    for f in (paths["csv"], paths["md"]):
        assert str(tmp_path) not in f.read_text(), f"{f.name} holds an absolute path"
    csv = pd.read_csv(paths["csv"])
    assert list(csv["run_dir"]) == ["runs/00001-x", "00002-y"]
    assert list(csv["faces_path"]) == ["runs/00001-x/eval/faces_test_seed0.pt", "00002-y/eval/faces_test_seed0.pt"]
    assert "place F at weights.pth" in csv.loc[0, "fid"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    back = E.read_results(paths["csv"], runs_root=outside.parent)
    assert [Path(r["run_dir"]) for r in back] == [inside, outside]
    assert all(Path(r["per_sample_path"]).is_file() and Path(r["faces_path"]).is_file() for r in back)
    assert E.run_dirs_from_results(paths["csv"], runs_root=outside.parent) == [inside, outside]


def test_every_interval_resamples_series(tiny_run):
    row = E.evaluate_run(tiny_run, allow_download=False, identity_epochs=3, prior_samples=0, n_boot=200)
    per = pd.read_csv(row["per_sample_path"], dtype={"series": str})
    assert row["ci_method"] == "series bootstrap" and row["n_series"] == per["series"].nunique()
    for key, values in (("psnr", per["psnr"]), ("gain_psnr", per["psnr"] - per["psnr_shuffled"])):
        s = M.summarize(values.to_numpy(), n_boot=200, seed=0, clusters=per["series"].to_numpy())
        assert (row[f"{key}_lo"], row[f"{key}_hi"]) == (s["lo"], s["hi"]), f"{key}: not a series-bootstrap interval"
        assert row[f"{key}_n_series"] == per["series"].nunique()
    assert "gain_psnr_in_minus_not" in row and "gain_psnr_in_minus_not_p" in row


def test_baselines_are_scored_on_the_same_samples(tiny_run):
    from ssuper_lib.train import load_run

    cfg, _ = load_run(tiny_run)
    model_row = E.evaluate_run(tiny_run, allow_download=False, identity_epochs=3, prior_samples=0, n_boot=100)
    rows = E.evaluate_baselines(cfg, n_boot=100, identity_epochs=3)
    names = [r["variant"] for r in rows]
    assert names == ["mean_face", "random_context_face", "nearest_context_face", "oracle_context_face"]
    for r in rows:
        assert r["n"] == model_row["n"] and r["n_series"] == model_row["n_series"]
        assert np.isfinite(r["psnr"]) and 0 <= r["id_acc"] <= 1
        assert r["kind"] == ("oracle" if r["variant"].startswith("oracle") else "baseline")
    mean_row = rows[0]
    assert "gain_psnr" not in mean_row, "the mean face ignores context: no context gain"
    assert np.isfinite(rows[2]["gain_psnr"])
    table = E.results_table([model_row] + rows)
    assert list(table["Kind"]) == ["model", "baseline", "baseline", "baseline", "oracle"]


def test_command_line_evaluation_writes_the_notebook_outputs(tiny_run, tmp_path):
    import subprocess
    import sys

    out, figs = tmp_path / "stats", tmp_path / "figs"
    cmd = [sys.executable, "-m", "ssuper_lib.evaluate", str(tiny_run), "--out", str(out), "--figures", str(figs),
           "--seed", "0", "--siamese-steps", "2", "--max-samples", "12"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["kind"]) == ["model", "baseline", "baseline", "baseline", "oracle"]
    assert (csv["n"] == 12).all() and "n_series" in csv and "psnr_lo" in csv
    assert (figs / "05_results_table.png").is_file() and (figs / "05_context_gain.png").is_file()
    assert "Plain-SSuperGAN" in p.stdout and (out / "results.md").is_file()
    assert csv.loc[0, "run_dir"] == tiny_run.name, "a run outside the repository: relative to its runs root"
    # again from another working directory, the runs found through results.csv (their saved rows reused)
    again = subprocess.run([sys.executable, "-m", "ssuper_lib.evaluate", "--results", str(out / "results.csv"),
                            "--runs-root", str(tiny_run.parent), "--out", str(tmp_path / "again"), "--figures", str(figs),
                            "--seed", "0", "--max-samples", "12", "--no-baselines", "--no-label-free"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path,
                           env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert pd.read_csv(tmp_path / "again" / "results.csv")["run_dir"].tolist() == [tiny_run.name]
    bad = subprocess.run([sys.executable, "-m", "ssuper_lib.evaluate", str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_seed_aggregation_pools_per_sample_values_and_retests_the_subgroups(tmp_path):
    """Three training seeds of one model: the row's value is the series-pooled mean of the per-sample values
    averaged over seeds, with the between-seed spread beside it; the in-context minus not-in-context test is
    recomputed on the pooled gains (not copied from seed 0)."""
    rng = np.random.default_rng(0)
    n = 60
    series = np.repeat([f"s{k}" for k in range(6)], n // 6)
    in_ctx = np.where(np.arange(n) % 3 == 0, "False", "True")
    rows = []
    gains = []
    for seed in range(3):
        psnr = 11.0 + rng.normal(0, 0.5, n)
        shuf = psnr - np.where(in_ctx == "True", 1.0 + seed, 0.0)  # gain: 1, 2, 3 dB in context, 0 outside
        gains.append(psnr - shuf)
        path = tmp_path / f"per{seed}.csv"
        pd.DataFrame({"series": series, "psnr": psnr, "ssim": 0.2, "psnr_shuffled": shuf,
                      "in_context": in_ctx}).to_csv(path, index=False)
        rows.append({"model": "M", "kind": "model", "run": f"r{seed}", "train_seed": seed, "psnr": float(psnr.mean()),
                     "gain_psnr": float((psnr - shuf).mean()), "gain_psnr_in_minus_not": 1.0 + seed,
                     "per_sample_path": str(path), "checkpoint_step": 10})
    agg = E.aggregate_seeds(rows, n_boot=200)
    assert len(agg) == 1
    a = agg[0]
    assert a["train_seeds"] == "0,1,2" and a["run"] == "r0,r1,r2"
    assert a["gain_psnr"] == pytest.approx(np.mean(gains))
    assert a["gain_psnr_seed_sd"] == pytest.approx(np.std([g.mean() for g in gains], ddof=1))
    assert a["gain_psnr_in_minus_not"] == pytest.approx(2.0)  # pooled over seeds, not seed 0's 1.0
    assert a["gain_psnr_in_ctx"] == pytest.approx(2.0) and a["gain_psnr_not_in_ctx"] == pytest.approx(0.0)
    assert a["gain_psnr_in_minus_not_lo"] <= 2.0 <= a["gain_psnr_in_minus_not_hi"]
