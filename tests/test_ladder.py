"""The realism ladder's parts: the selection target's null margin, the baselines' config, the ladder table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch

from ssuper_lib.config import load_config, save_config
from ssuper_lib.evaluate.ladder import collect_ladder, ladder_markdown, main as ladder_main
from ssuper_lib.evaluate.run import model_label
from ssuper_lib.evaluate.suite import baseline_config
from ssuper_lib.models.exemplar import selection_target

REPO = Path(__file__).resolve().parents[1]


def test_null_margin_makes_a_near_candidate_the_target():
    face = torch.zeros(1, 3, 8, 8)
    null = torch.full((3, 8, 8), 0.1)  # error 0.01
    cand = torch.full((1, 1, 3, 8, 8), 0.15)  # error 0.0225: farther than the null face
    valid = torch.ones(1, 1, dtype=torch.bool)
    assert selection_target(cand, valid, null, face, 4).item() == 0  # plain nearest: the null slot
    assert selection_target(cand, valid, null, face, 4, null_margin=3.0).item() == 1  # 0.03 > 0.0225
    assert selection_target(cand, ~valid, null, face, 4, null_margin=3.0).item() == 0  # no valid candidate


def test_robust_exemplar_config_and_label():
    cfg = load_config(REPO / "configs/models/demo_plain_ssuper_exemplar_robust.yaml")
    assert cfg.model.variant == "ssuper_exemplar" and cfg.model.exemplar_scorer == "metric+mlp"
    assert cfg.model.exemplar_null_margin == 2.0
    assert model_label(cfg) == "Robust Exemplar-SSuperGAN"
    assert model_label(load_config(REPO / "configs/models/demo_plain_ssuper_exemplar.yaml")) == "Exemplar-SSuperGAN"


def test_baselines_take_the_exemplar_runs_candidates(tmp_path):
    """The baselines read ``exemplar_k`` and the crop size of the exemplar run, wherever it is in the list."""
    runs = []
    for name, over in (("plain", ["model.exemplar_k=3"]), ("ex", ["model.exemplar_k=2", "model.exemplar_ctx_size=40"])):
        src = "demo_plain_ssupergan" if name == "plain" else "demo_plain_ssuper_exemplar"
        cfg = load_config(REPO / f"configs/models/{src}.yaml", over)
        rd = tmp_path / f"0000{len(runs)}-{name}"
        rd.mkdir()
        save_config(cfg, rd / "config.yaml")
        runs.append(rd)
    cfg = baseline_config(runs)
    assert cfg.model.variant == "ssuper_exemplar"
    assert (cfg.model.exemplar_k, cfg.model.exemplar_ctx_size) == (2, 40)
    assert baseline_config(runs[:1]).model.variant != "ssuper_exemplar"


def _table(path: Path, rows: list[tuple[str, str, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = []
    for model, kind, acc, psnr in rows:
        recs.append({"model": model, "kind": kind, "n": 100, "n_series": 8, "psnr": psnr, "psnr_lo": psnr - 0.3,
                     "psnr_hi": psnr + 0.3, "id_acc": acc, "id_acc_lo": acc - 0.05, "id_acc_hi": acc + 0.05})
    recs.append({"model": "Exemplar-SSuperGAN", "kind": "seed run", "n": 100, "n_series": 8, "psnr": 0.0,
                 "psnr_lo": 0.0, "psnr_hi": 0.0, "id_acc": 0.0, "id_acc_lo": 0.0, "id_acc_hi": 0.0})
    pd.DataFrame(recs).to_csv(path, index=False)


def test_ladder_table_and_figure(tmp_path):
    root = tmp_path / "ladder"
    _table(root / "real-seed0" / "results.csv", [("Exemplar-SSuperGAN", "model", 0.5, 11.0),
                                                 ("Baseline: nearest context face", "baseline", 0.35, 10.0)])
    _table(root / "hard-seed0" / "results.csv", [("Exemplar-SSuperGAN", "model", 0.4, 10.5)])
    _table(tmp_path / "demo" / "results.csv", [("Exemplar-SSuperGAN", "model", 0.76, 12.4),
                                               ("Baseline: nearest context face", "baseline", 0.55, 10.1)])
    df = collect_ladder(root, tmp_path / "demo" / "results.csv")
    assert list(dict.fromkeys(df["preset"])) == ["clean", "real", "hard"]  # ladder order, demo stands for clean
    assert "seed run" not in set(df["kind"])
    md = ladder_markdown(df)
    assert "| Exemplar-SSuperGAN | 76.0 [71.0, 81.0] | 50.0 [45.0, 55.0] | 40.0 [35.0, 45.0] |" in md
    assert "| Baseline: nearest context face | 55.0 [50.0, 60.0] | 35.0 [30.0, 40.0] | - |" in md
    fig = tmp_path / "ladder.png"
    assert ladder_main([str(root), "--clean", str(tmp_path / "demo" / "results.csv"), "--figure", str(fig)]) == 0
    assert fig.stat().st_size > 1000 and (root / "ladder.md").read_text() == md
    _table(root / "clean-seed0" / "results.csv", [("Robust Exemplar-SSuperGAN", "model", 0.8, 12.5),
                                                  ("Baseline: nearest context face", "baseline", 0.55, 10.1)])
    clean = collect_ladder(root, tmp_path / "demo" / "results.csv")
    clean = clean[clean["preset"] == "clean"]
    assert sorted(clean["model"]) == ["Baseline: nearest context face", "Exemplar-SSuperGAN", "Robust Exemplar-SSuperGAN"]
    shutil.rmtree(root)
    assert ladder_main([str(root), "--clean", str(tmp_path / "none.csv"), "--figure", str(fig)]) == 2


def test_extras_are_unknown_characters_in_the_ground_truth_match(tmp_path):
    """An extra (a face of no cast member: empty character in ground_truth.csv) is an unknown target and
    never a context character, so it counts in neither identity accuracy nor the in-context subgroups."""
    from ssuper_lib.data.comics import SequenceSample
    from ssuper_lib.data.datasets import match_ground_truth

    gt = tmp_path / "ground_truth.csv"
    gt.write_text("panel,x1,y1,x2,y2,character,series\n"
                  "0/0_0.jpg,10,10,50,50,0_1,0\n0/0_0.jpg,100,10,140,50,,0\n"
                  "0/0_1.jpg,10,10,50,50,,0\n0/0_2.jpg,10,10,50,50,0_1,0\n0/0_2.jpg,100,10,140,50,,0\n")
    box = [10, 10, 50, 50]
    s_cast = SequenceSample(["0/0_0.jpg", "0/0_1.jpg", "0/0_2.jpg"], [box] * 3, [box] * 3)
    s_extra = SequenceSample(["0/0_0.jpg", "0/0_1.jpg", "0/0_2.jpg"], [box] * 3, [box, box, [100, 10, 140, 50]])
    a, b = match_ground_truth([s_cast, s_extra], gt)
    assert a["target_character"] == "0_1" and b["target_character"] is None
    assert a["context_characters"] == [{"0_1"}, set(), set()]
    assert b["context_characters"] == [{"0_1"}, set(), {"0_1"}]
