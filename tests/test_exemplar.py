"""Context exemplars, the baselines, and the Exemplar-SSuperGAN variant."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ssuper_lib.evaluate import baselines as B
from ssuper_lib.config import load_config
from ssuper_lib.data.comics import read_annotations, read_sequences
from ssuper_lib.preprocess.exemplars import build_exemplars, candidate_characters, load_or_build_exemplars
from ssuper_lib.models import ORIGINAL_VARIANTS, build_model, count_parameters


def _overrides(root: Path) -> list[str]:
    return [f"data.panel_path={root}/panels", f"data.annot_path={root}/annotations",
            f"data.sequence_path={root}/sequences.json", f"data.faces_path={root}/faces",
            f"data.ground_truth_path={root}/ground_truth.csv", "data.num_workers=0", "train.num_workers=0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_synthetic) -> Path:
    from ssuper_lib.preprocess import run_preprocessing

    root = tmp_path_factory.mktemp("exemplar") / "syn"
    root.mkdir()
    for name in ("panels", "annotations"):
        shutil.copytree(tiny_synthetic / name, root / name)
    shutil.copy(tiny_synthetic / "ground_truth.csv", root / "ground_truth.csv")
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", _overrides(root))
    run_preprocessing(cfg.data, progress=False, write_faces=False, workers=1)
    return root


def test_candidates_are_the_filtered_detections_of_the_context_panels(prepared):
    from ssuper_lib.detect import filter_panel_boxes

    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", _overrides(prepared))
    samples = read_sequences(prepared / "sequences.json")
    ex = build_exemplars(cfg.data, samples, k_per_panel=3, ctx_size=24)
    ann = read_annotations(prepared / "annotations")
    assert ex.cand_face.shape[1:] == (6, 3, 64, 64) and ex.query_ctx.shape[1:] == (3, 24, 24)
    several = 0
    for i, s in enumerate(samples):
        for j in (0, 1):
            kept, _ = filter_panel_boxes(ann.boxes.get(s.panels[j], []), cfg.data.conf_thold, cfg.data.nms_iou,
                                         cfg.data.face_thold)
            got = int(((ex.cand_panel[i] == j) & ex.cand_valid[i]).sum())
            assert got == min(3, len(kept)), f"sample {i} panel {j}: {got} candidates for {len(kept)} kept boxes"
            several += len(kept) > 1
    assert several > 0, "the tiny data must have context panels with several faces (the sequence JSON keeps one)"
    # the masked face is hidden in the query: its centre is the grey fill
    c = ex.query_ctx.shape[-1]
    assert (ex.query_ctx[:, :, int(c * 0.25), int(c * 0.4)] == 128).all()


def test_exemplar_cache_round_trip(prepared):
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", _overrides(prepared))
    samples = read_sequences(prepared / "sequences.json")
    a = load_or_build_exemplars(cfg.data, samples, 2, 16)
    b = load_or_build_exemplars(cfg.data, samples, 2, 16)
    assert a.computed and not b.computed and a.key == b.key
    assert torch.equal(a.cand_face, b.cand_face) and torch.equal(a.query_ctx, b.query_ctx) and a.keys == b.keys
    c = load_or_build_exemplars(cfg.data, samples, 3, 16)
    assert c.key != a.key


def test_baselines_select_by_their_rules(prepared):
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", _overrides(prepared))
    samples = read_sequences(prepared / "sequences.json")
    ex = build_exemplars(cfg.data, samples, 3, 16)
    from ssuper_lib.data.datasets import match_ground_truth

    targets = [g["target_character"] for g in match_ground_truth(samples, prepared / "ground_truth.csv")]
    cc = candidate_characters(ex, samples, prepared / "ground_truth.csv")
    oracle = B.oracle_context_index(cc, targets)
    for i, o in enumerate(oracle):
        has = any(ch == targets[i] for ch in cc[i] if ch is not None)
        assert (o >= 0) == has and (o < 0 or cc[i, o] == targets[i])
    mean = torch.zeros(3, 64, 64)
    near = B.nearest_context_index(ex)
    # the nearest rule picks the candidate of smallest thumbnail distance
    q, c = B._thumb(ex.query_ctx), B._thumb(ex.cand_ctx)
    for i in range(len(samples)):
        d = ((c[i] - q[i]) ** 2).mean(-1)
        d[~ex.cand_valid[i]] = float("inf")
        assert near[i] == int(d.argmin())
    faces = B.baseline_faces("nearest_context_face", ex, mean)
    i = int(np.flatnonzero(near >= 0)[0])
    assert torch.allclose(faces[i], ex.cand_face[i, near[i]].float() / 127.5 - 1)
    assert torch.equal(B.baseline_faces("mean_face", ex, mean), torch.zeros(len(samples), 3, 64, 64))
    r1, r2 = B.random_context_index(ex, 0), B.random_context_index(ex, 0)
    assert (r1 == r2).all() and all(ex.cand_valid[i, r] for i, r in enumerate(r1) if r >= 0)


def _batch(B_=4, C=6, valid=None):
    g = torch.Generator().manual_seed(0)
    v = torch.ones(B_, C, dtype=torch.bool) if valid is None else valid
    return {"cand_face": torch.rand(B_, C, 3, 64, 64, generator=g) * 2 - 1,
            "cand_ctx": torch.rand(B_, C, 3, 32, 32, generator=g) * 2 - 1, "cand_geo": torch.rand(B_, C, 3, generator=g),
            "cand_valid": v, "query_ctx": torch.rand(B_, 3, 32, 32, generator=g) * 2 - 1,
            "query_geo": torch.rand(B_, 3, generator=g)}


def test_exemplar_model_shapes_and_samples_without_context_faces():
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml")
    model = build_model(cfg.model, cfg.data.panel_size).eval()
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[1] = False  # a sample with no context face at all
    valid[2, 3:] = False
    with torch.no_grad():
        out = model.exemplar_forward(torch.zeros(4, cfg.model.latent_dim), _batch(valid=valid))
    assert out["face"].shape == (4, 3, 64, 64) and out["attn"].shape == (4, 7)
    assert torch.isfinite(out["face"]).all() and out["face"].abs().max() <= 1
    assert out["attn"][1, 1:].sum() == 0 and out["attn"][1, 0] == 1, "no candidate: the null slot takes it all"
    assert (out["attn"][2, 4:] == 0).all(), "invalid candidates get no attention"
    # the untrained exemplar generator returns the selected exemplar itself (its last conv starts at zero)
    assert torch.allclose(out["face"], out["exemplar"].clamp(-1, 1))
    zero_c = {k: (v[:, :0] if k.startswith("cand") else v) for k, v in _batch().items()}
    with torch.no_grad():
        assert model.exemplar_forward(torch.zeros(4, cfg.model.latent_dim), zero_c)["face"].shape == (4, 3, 64, 64)


@pytest.mark.parametrize("scorer", ["metric", "metric+mlp"])
def test_hard_selection_copies_the_chosen_candidate_and_passes_gradient_to_attention(scorer):
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", [f"model.exemplar_scorer={scorer}"])
    model = build_model(cfg.model, cfg.data.panel_size)
    b = _batch()
    out = model.exemplar_forward(torch.zeros(4, cfg.model.latent_dim), b)
    pick = out["attn"].argmax(1)
    faces = torch.cat([model.null_face.expand(4, 1, 3, 64, 64), b["cand_face"]], 1)
    assert torch.allclose(out["exemplar"], faces[torch.arange(4), pick], atol=1e-6)
    (out["face"] - 0.5).square().sum().backward()  # not at 0: the null face is grey (zeros) at init
    att = model.attention
    g = att.region_logits.grad if scorer == "metric" else att.score[-1].weight.grad  # MLP: starts at zero, its gradient not
    assert g is not None and g.abs().sum() > 0, f"the straight-through estimator must reach the attention {out['attn']}"
    assert att.prior_weight.grad.abs() > 0
    assert (att.score is None) == (scorer == "metric")


def _character(hair, skin, shirt, dx=0, dy=0):
    """A drawn 64x64 character face: hair band on top, skin oval, shirt collar at the bottom; shifted by (dx, dy)."""
    img = torch.full((3, 64, 64), 0.8)  # light background
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    oval = ((xx - 32 - dx) / 20.0) ** 2 + ((yy - 34 - dy) / 24.0) ** 2 <= 1
    img[:, oval] = torch.tensor(skin)[:, None]
    img[:, (yy < 16 + dy) & (yy >= 4 + dy) & ((xx - 32 - dx).abs() < 24)] = torch.tensor(hair)[:, None]
    img[:, yy >= 58 + dy] = torch.tensor(shirt)[:, None]
    for ex_ in (-9, 9):  # eyes
        img[:, ((xx - 32 - dx - ex_).abs() < 3) & ((yy - 30 - dy).abs() < 3)] = -1.0
    return img


def test_selection_target_is_the_nearest_face():
    from ssuper_lib.models.exemplar import selection_target

    b = _batch(B_=3, C=4)
    face = b["cand_face"][:, 2].clone()
    face[1] = 0.0  # the grey null face itself
    b["cand_valid"][2, 2] = False  # the true candidate is not available: never chosen
    t = selection_target(b["cand_face"], b["cand_valid"], torch.zeros(3, 64, 64), face)
    assert t[0] == 3 and t[1] == 0 and t[2] != 3


def test_selection_target_prefers_the_right_character_to_the_blurry_null_face():
    """A face of the right character in another pose must beat the blurry mean face as the selection target
    (at pixel resolution the blur wins: the selection then learns "not in context" for present characters)."""
    from ssuper_lib.models.exemplar import selection_target

    a = dict(hair=(-0.6, -0.6, 0.9), skin=(-0.2, 0.7, -0.2), shirt=(0.5, -0.8, 0.5))  # blue hair, green skin
    b_ = dict(hair=(0.9, -0.7, -0.7), skin=(0.8, 0.4, 0.1), shirt=(0.9, 0.5, -0.9))  # red hair, tan skin
    c_ = dict(hair=(0.2, 0.9, 0.2), skin=(0.9, 0.7, 0.5), shirt=(-0.9, -0.9, 0.6))  # a third character
    true = torch.stack([_character(**a, dx=3, dy=1), _character(**b_, dx=-3)])  # 3 px pose changes
    cands = torch.stack([torch.stack([_character(**a, dx=-3, dy=-1), _character(**b_, dx=4, dy=2)]),
                         torch.stack([_character(**a), _character(**b_, dx=3, dy=3)])])
    null = torch.stack([_character(**ch, dx=dx, dy=dy)  # the mean face: blurry, between the characters
                        for ch in (a, b_, c_) for dx in range(-6, 7, 3) for dy in (-3, 0, 3)]).mean(0)
    valid = torch.ones(2, 2, dtype=torch.bool)
    pixel = selection_target(cands, valid, null, true, size=64)
    assert (pixel == 0).any(), "the setting must reproduce the failure of pixel MSE (else the test shows nothing)"
    assert selection_target(cands, valid, null, true).tolist() == [1, 2]  # slot 0 is null: candidates are 1-based
    # a character absent from the context (only a and b are there): the null face is the target
    assert selection_target(cands[:1], valid[:1], null, _character(**c_, dx=2)[None]).tolist() == [0]


def test_exemplar_trains_in_the_engine_and_learns_selection(prepared, tmp_path):
    from ssuper_lib.train import load_run, read_metrics, train

    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml",
                      _overrides(prepared) + [f"train.out_dir={tmp_path}", "train.max_steps=80", "train.val_every=20"])
    res = train(cfg, progress=False)
    rows = read_metrics(res.run_dir)
    assert rows[-1]["step"] == 80 and {"select", "select_acc", "recon", "d_local"} <= set(rows[-1])
    sel = [r["select"] for r in rows if "select" in r]
    first, last = float(np.mean(sel[:3])), float(np.mean(sel[-3:]))  # rows are 5-step means of 4 samples: noisy
    assert last < first, f"selection loss must fall on the tiny data: {first:.3f} -> {last:.3f}"
    assert (Path(res.run_dir) / "checkpoints" / "best.pt").is_file()
    cfg2, model = load_run(res.run_dir)
    assert cfg2.model.variant == "ssuper_exemplar" and model.attention is not None


def test_original_variants_are_untouched_by_the_registration():
    assert ORIGINAL_VARIANTS == ("ssupervae", "ssupergan", "ssuperglobalgan", "ssupervae_ca")
    cfg = load_config("configs/models/plain_ssupergan.yaml", ["model.pretrained=false"])
    with torch.device("meta"):
        m = build_model(cfg.model, cfg.data.panel_size)
    assert not hasattr(m, "attention")
    assert count_parameters(m.generator) == 11_146_112 and count_parameters(m.local_disc) == 2_765_568  # the reference's


def _region_task(n, gen):
    """Selection where the clothes (bottom half) tell the character and the background (top half) misleads:
    the query shares its background with a wrong candidate (the same panel), never with the right one."""
    C = 4
    shirts = torch.rand(n, C, 3, generator=gen) * 2 - 1  # one character per candidate
    right = torch.randint(0, C, (n,), generator=gen)
    decoy = (right + 1 + torch.randint(0, C - 1, (n,), generator=gen)) % C
    bg = torch.rand(n, C, 3, generator=gen) * 2 - 1
    cand = torch.empty(n, C, 3, 32, 32)
    cand[..., :16, :] = bg[..., None, None]
    cand[..., 16:, :] = shirts[..., None, None]
    ar = torch.arange(n)
    query = torch.empty(n, 3, 32, 32)
    query[..., :16, :] = bg[ar, decoy][..., None, None]
    query[..., 16:, :] = (shirts[ar, right] + 0.1 * torch.randn(n, 3, generator=gen))[..., None, None]
    return query, cand, right + 1  # slot 0 is the null candidate


def test_metric_scorer_learns_which_regions_identify_the_character():
    from ssuper_lib.models.exemplar import ExemplarAttention

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    att = ExemplarAttention(dim=8, width=4, scorer="metric")
    opt = torch.optim.Adam(att.selector_parameters(), lr=0.05)

    def accuracy(query, cand, target):
        with torch.no_grad():
            logits, _ = att(query, torch.zeros(len(query), 3), cand, torch.zeros(*cand.shape[:2], 3, 64, 64),
                            torch.zeros(*cand.shape[:2], 3), torch.ones(cand.shape[:2], dtype=torch.bool))
        return (logits.argmax(1) == target).float().mean().item()

    held_out = _region_task(256, torch.Generator().manual_seed(1))
    before = accuracy(*held_out)
    for _ in range(150):
        q, c, t = _region_task(64, gen)
        logits, _ = att(q, torch.zeros(64, 3), c, torch.zeros(64, 4, 3, 64, 64), torch.zeros(64, 4, 3),
                        torch.ones(64, 4, dtype=torch.bool))
        loss = torch.nn.functional.cross_entropy(logits, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy(*held_out)
    w = att.region_weights()
    assert before < 0.6, f"the untrained rule (uniform weights) must fall for the shared background: {before:.2f}"
    assert after > 0.9, f"learned region weights must pick the character by its clothes: {before:.2f} -> {after:.2f}"
    assert w[:, 6:, :].mean() > 3 * w[:, :6, :].mean(), "the clothes rows must outweigh the background rows"


def test_selector_has_its_own_optimiser_at_select_lr():
    """train.select_lr must reach the selector (region weights, temperature, null score), and only it: at the
    generator's rate the 434 selector parameters hardly move within a demo run."""
    from ssuper_lib.train import OBJECTIVES, _Dist

    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", ["train.select_lr=0.05", "train.lr=0.001"])
    model = build_model(cfg.model, cfg.data.panel_size)
    obj = OBJECTIVES[cfg.model.variant](model, cfg, torch.device("cpu"), None, _Dist(), total_steps=10)
    selector = {id(p) for p in model.attention.selector_parameters()}
    assert {id(p) for p in obj.params["selector"]} == selector
    assert not selector & {id(p) for p in obj.params["generator"]}, "selector parameters must not be in two optimisers"
    assert obj.opts["selector"].param_groups[0]["lr"] == 0.05 and obj.opts["generator"].param_groups[0]["lr"] == 0.001


def test_copy_output_is_the_selected_exemplar_whatever_the_generator():
    """``model.exemplar_output: copy`` returns the selected context face itself (texture kept), even when the
    residual generator has learned to paint on it."""
    cfg = load_config("configs/models/ci_plain_ssuper_exemplar.yaml", ["model.exemplar_output=copy"])
    model = build_model(cfg.model, cfg.data.panel_size).eval()
    torch.nn.init.normal_(model.exemplar_generator.out.weight, std=0.5)  # a generator that blurs or paints
    b = _batch()
    with torch.no_grad():
        out = model.exemplar_forward(torch.zeros(4, cfg.model.latent_dim), b)
        painted = model.exemplar_generator(out["exemplar"], torch.zeros(4, cfg.model.exemplar_dim + cfg.model.latent_dim))
    assert torch.equal(out["face"], out["exemplar"])
    assert not torch.allclose(painted, out["exemplar"])
