"""Shape, gradient-routing, paste, contextual-attention and weights-resolution tests of ssuper_lib.models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssuper_lib.config import REPO_ROOT, ModelConfig, load_config
from ssuper_lib.models import build_model, kl_normal, parameter_table, reparameterize
from ssuper_lib.models.attention import ContextualAttention, FineGenerator, GlobalCritic, LocalCritic
from ssuper_lib.models.backbone import (WEIGHTS_ENV, PanelEmbedder, build_efficientnet, resolve_backbone_weights, stage_starts,
                                         weights_filename)
from ssuper_lib.models.discriminator import GlobalDiscriminator, LocalDiscriminator, crop_faces, paste_faces
from ssuper_lib.models.generator import DCGANGenerator, IntroVAEDecoder
from ssuper_lib.models.sequence import ConvLSTMCell, LSTMSequenceEncoder

CONFIG_DIR = REPO_ROOT / "configs" / "models"
TABLE_CONFIGS = [
    "plain_ssupervae", "lstm_ssupervae", "bilstm_ssupervae", "plain_ssupergan", "bilstm_ssupergan",
    "convlstm_ssupergan", "bilstm_ssuperglobalgan", "plain_ssuperglobalgan", "plain_ssupervae_ca",
]
DEMO_CONFIGS = ["demo_plain_ssupergan", "demo_bilstm_ssupergan", "demo_plain_ssupervae", "demo_plain_ssuperglobalgan", "demo_plain_ssupervae_ca"]
EXPECTED_VARIANT = {
    "plain_ssupervae": ("ssupervae", "plain", 256), "lstm_ssupervae": ("ssupervae", "lstm", 256),
    "bilstm_ssupervae": ("ssupervae", "bilstm", 512), "plain_ssupergan": ("ssupergan", "plain", 1024),
    "bilstm_ssupergan": ("ssupergan", "bilstm", 512), "convlstm_ssupergan": ("ssupergan", "convlstm", 512),
    "bilstm_ssuperglobalgan": ("ssuperglobalgan", "bilstm", 512), "plain_ssuperglobalgan": ("ssuperglobalgan", "plain", 1024),
    "plain_ssupervae_ca": ("ssupervae_ca", "plain", 256),
}


def _boxes_and_mask(B: int, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    boxes = [(H // 8, H // 2, W // 6, W // 2), (H // 3, H - 2, W // 2, W - 3)]
    coords = torch.tensor([boxes[i % 2] for i in range(B)], dtype=torch.int64)
    mask = torch.zeros(B, 1, H, W)
    for i, (y1, y2, x1, x2) in enumerate(coords.tolist()):
        mask[i, :, y1:y2, x1:x2] = 1.0
    return coords, mask


def _run_variant(model, panels):
    """Forward + one loss touching every part + backward; returns the forward dict."""
    out = model(panels)
    B = panels.shape[0]
    assert out["mu"].shape == (B, model.latent_dim) and out["log_sigma"].shape == (B, model.latent_dim)
    assert out["z"].shape == (B, model.latent_dim)
    assert out["face"].shape == (B, 3, 64, 64)
    loss = F.mse_loss(out["face"], torch.zeros_like(out["face"])) + kl_normal(out["mu"], out["log_sigma"])
    H, W = panels.shape[-2:]
    coords, mask = _boxes_and_mask(B, H, W)
    if model.local_disc is not None:
        logits = model.local_disc(out["face"])
        assert logits.shape == (B,)
        loss = loss + logits.mean()
    if model.global_disc is not None:
        composite = model.paste(panels, out["face"], coords)
        assert composite.shape == (B, 3, H, W)
        logits = model.global_disc(composite)
        assert logits.shape == (B,)
        loss = loss + logits.mean()
    if model.refiner is not None:
        ref = model.refine(panels, out["face"], mask, coords)
        assert ref["fine_panel"].shape == (B, 3, H, W) and ref["fine_face"].shape == (B, 3, 64, 64)
        loss = loss + ref["fine_panel"].mean() + model.local_critic(ref["fine_face"]).mean() + model.global_critic(ref["fine_panel"]).mean()
    loss.backward()
    return out


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", TABLE_CONFIGS)
def test_table_config_forward_backward(name):
    """Every table row builds from its YAML (B5, pretrained off) and trains one step on small panels."""
    cfg = load_config(CONFIG_DIR / f"{name}.yaml", ["model.pretrained=false"])
    variant, encoder, latent = EXPECTED_VARIANT[name]
    assert (cfg.model.variant, cfg.model.seq_encoder, cfg.model.latent_dim) == (variant, encoder, latent)
    assert cfg.model.backbone == "efficientnet-b5"
    assert cfg.data.panel_size in ([300, 300], [256, 256])
    torch.manual_seed(0)
    model = build_model(cfg.model, (48, 64))  # small, non-square panels: B5 at 300 px is slow on CPU
    model.train()
    _run_variant(model, torch.rand(2, 3, 3, 48, 64) * 2 - 1)
    groups = model.parameter_groups()
    for part, params in groups.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), f"{name}: no gradient reached {part}"


@pytest.mark.parametrize("name", DEMO_CONFIGS)
def test_demo_config_forward_backward(name):
    """Demo configs: pretrained (offline) frozen Lite0 at their own panel size; frozen backbone gets no grad."""
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.model.backbone == "efficientnet-lite0" and cfg.model.pretrained is True and cfg.model.freeze_backbone
    assert cfg.data.panel_size in ([96, 96], [160, 160])  # 160: the faithful demo models of `make demo`
    model = build_model(cfg.model, cfg.data.panel_size)
    assert model.backbone.weights_path is not None, "demo backbone should load the packaged ImageNet weights"
    model.train()
    assert not model.backbone.net.training, "frozen backbone must stay in eval mode under model.train()"
    _run_variant(model, torch.rand(4, 3, 3, 96, 96) * 2 - 1)
    assert all(p.grad is None for p in model.backbone.net.parameters())
    assert model.backbone.head.fc.weight.grad is not None
    trainable = {id(p) for ps in model.parameter_groups().values() for p in ps}
    assert not any(id(p) in trainable for p in model.backbone.net.parameters())


def test_ci_configs_load_and_build():
    for path in sorted(CONFIG_DIR.glob("ci_*.yaml")):
        cfg = load_config(path)
        model = build_model(cfg.model, cfg.data.panel_size)
        assert model.generate(torch.zeros(1, cfg.model.latent_dim)).shape == (1, 3, 64, 64), path.name


def test_every_yaml_key_has_a_comment():
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
                assert "  # " in line, f"{path.name}: key without a comment: {line!r}"


def test_features_then_head_equals_encode():
    """Cached pre-head features reproduce encode() exactly (eval mode), pooled and spatial."""
    for encoder, extra in (("plain", {}), ("convlstm", {"lstm_hidden": 8})):
        cfg = ModelConfig(variant="ssupergan", backbone="efficientnet-b0", pretrained=False, embed_dim=16, latent_dim=8,
                          seq_encoder=encoder, **extra)
        model = build_model(cfg, (64, 96)).eval()
        panels = torch.rand(2, 3, 3, 64, 96) * 2 - 1
        with torch.no_grad():
            feats = model.backbone_features(panels)
            mu, ls = model.encode_features(feats)
            mu2, ls2 = model.encode(panels)
        expect = (2, 3, 1280) if encoder == "plain" else (2, 3, 1280, 2, 3)
        assert tuple(feats.shape) == expect
        torch.testing.assert_close(mu, mu2)
        torch.testing.assert_close(ls, ls2)


def test_sample_and_reconstruct():
    cfg = load_config(CONFIG_DIR / "ci_plain_ssupergan.yaml").model
    model = build_model(cfg, (64, 64)).eval()
    with torch.no_grad():
        a = model.sample(3, torch.Generator().manual_seed(1))
        b = model.sample(3, torch.Generator().manual_seed(1))
        rec = model.reconstruct(torch.rand(2, 3, 3, 64, 64) * 2 - 1)
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, b)
    assert rec.shape == (2, 3, 64, 64) and rec.abs().max() <= 1.0


def test_state_dict_names_are_stable():
    cfg = dataclasses.replace(load_config(CONFIG_DIR / "ci_plain_ssupervae_ca.yaml").model, pretrained=False)
    keys = build_model(cfg, (64, 64)).state_dict().keys()
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"backbone", "seq_encoder", "generator", "refiner", "local_critic", "global_critic"}
    assert "backbone.head.fc.weight" in keys and "seq_encoder.head.mu.weight" in keys
    assert not any(k.startswith("backbone.net._fc") for k in keys)


# ------------------------------------------------------------------------------------ sizes
def test_reference_parameter_counts():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(DCGANGenerator(512)) == 6_951_808
    assert n(DCGANGenerator(1024)) == 11_146_112
    assert n(IntroVAEDecoder(256)) == 9_401_027
    assert n(IntroVAEDecoder(512)) == 11_498_179
    assert n(LocalDiscriminator()) == 2_765_568
    assert n(GlobalDiscriminator((300, 300))) == n(GlobalDiscriminator((256, 256))) == 11_156_224
    assert n(FineGenerator(64)) == 8_592_067
    assert n(LocalCritic(32)) == 670_401 and n(GlobalCritic((256, 256), 32)) == 701_121


def test_parameter_table_full_size_without_weights():
    """Counts at full size (meta device, no weights): CA total and ConvLSTM match docs/original.md 1.7/1.15."""
    ca = parameter_table(load_config(CONFIG_DIR / "plain_ssupervae_ca.yaml").model, (256, 256)).set_index("part")["params"]
    assert ca["total"] == 48_623_672
    assert ca["backbone"] + ca["embed_head"] + ca["seq_encoder"] == 29_259_056
    conv = parameter_table(load_config(CONFIG_DIR / "convlstm_ssupergan.yaml").model, (300, 300)).set_index("part")["params"]
    assert conv["seq_encoder"] - 2 * (1024 * 512 + 512) == 113_557_504  # ConvLSTM alone (minus the mu/log_sigma heads)


# --------------------------------------------------------------------------------- gradient routing
def _global_model():
    cfg = dataclasses.replace(load_config(CONFIG_DIR / "ci_plain_ssuperglobalgan.yaml").model, pretrained=False, freeze_backbone=False)
    return build_model(cfg, (64, 80)).train()


def test_global_adversarial_term_reaches_generator_only_through_paste():
    model = _global_model()
    panels = torch.rand(2, 3, 3, 64, 80) * 2 - 1
    coords, _ = _boxes_and_mask(2, 64, 80)
    out = model(panels)
    model.zero_grad()
    loss_g = F.binary_cross_entropy_with_logits(model.global_disc(model.paste(panels, out["face"], coords)), torch.ones(2))
    loss_g.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters() if p.dim() > 1)
    assert model.backbone.head.fc.weight.grad.abs().sum() > 0  # through z into the encoder (if the trainer allows)
    assert all(p.grad is None for p in model.local_disc.parameters())


def test_discriminators_get_gradient_from_their_own_loss_only():
    model = _global_model()
    panels = torch.rand(2, 3, 3, 64, 80) * 2 - 1
    coords, _ = _boxes_and_mask(2, 64, 80)
    face_true = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        fake = model(panels)["face"]
    model.zero_grad()
    real_g, fake_g = model.paste(panels, face_true, coords), model.paste(panels, fake, coords)
    loss_d = F.binary_cross_entropy_with_logits(model.global_disc(real_g), torch.ones(2)) + \
        F.binary_cross_entropy_with_logits(model.global_disc(fake_g), torch.zeros(2)) + \
        F.binary_cross_entropy_with_logits(model.local_disc(face_true), torch.ones(2)) + \
        F.binary_cross_entropy_with_logits(model.local_disc(fake), torch.zeros(2))
    loss_d.backward()
    for part in (model.local_disc, model.global_disc):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters() if p.dim() > 1)
    for part in (model.generator, model.seq_encoder, model.backbone):
        assert all(p.grad is None for p in part.parameters())


def test_frozen_backbone_gets_no_gradient_and_stays_eval():
    emb = PanelEmbedder("efficientnet-b0", 16, 0.2, pretrained=False, freeze=True, panel_size=(64, 64))
    emb.train()
    assert not emb.net.training and emb.head.training
    out = emb(torch.rand(2, 3, 3, 64, 64) * 2 - 1)
    out.sum().backward()
    assert all(p.grad is None for p in emb.net.parameters())
    assert emb.head.fc.weight.grad is not None


@pytest.mark.parametrize("stages,split", [(1, 15), (2, 11), (3, 8)])
def test_train_top_stages_splits_the_network_exactly(stages, split):
    """train_top_stages: frozen layers' maps (what the cache stores) then the trainable top give the full
    network's features exactly; only the top gets gradient; the frozen layers stay in eval mode (their BN
    statistics never move) while the top trains."""
    torch.manual_seed(0)
    # Lite0's ImageNet weights (offline): activations of a realistic size (a random init gives ~1e-13)
    full = PanelEmbedder("efficientnet-lite0", 16, 0.0, pretrained=True, freeze=True, panel_size=(64, 64)).eval()
    top = PanelEmbedder("efficientnet-lite0", 16, 0.0, pretrained=False, freeze=True, panel_size=(64, 64),
                        train_top_stages=stages)
    top.load_state_dict(full.state_dict())
    assert top.split == split
    panels = torch.rand(2, 3, 3, 64, 64) * 2 - 1
    top.eval()
    with torch.no_grad():
        maps = top.backbone_features(panels)
        assert maps.dim() == 5 and maps.shape[:2] == (2, 3)  # (B, S, C, h', w'): below the head
        want = full.backbone_features(panels)  # (B, S, F) pooled over the whole network
        got = F.adaptive_avg_pool2d(top._top(maps.flatten(0, 1)), 1).flatten(1).view_as(want)
        assert want.abs().max() > 1e-3
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
        torch.testing.assert_close(top.forward_head(maps), full(panels), rtol=1e-4, atol=1e-4 * full(panels).abs().max().item())
    top.train()
    bn_trunk = top.net._blocks[split - 1]._bn2.running_mean.clone()
    bn_top = top.net._bn1.running_mean.clone()
    top.forward_head(top.backbone_features(panels)).pow(2).sum().backward()
    assert not maps.requires_grad and top.net._bn0.training is False and top.net._blocks[split - 1].training is False
    assert top.net._blocks[split].training and top.net._conv_head.weight.requires_grad
    assert all(p.grad is None for m in top.frozen_part() for p in m.parameters())
    assert all(p.grad is not None for m in top.net._blocks[split:] for p in m.parameters())
    assert top.net._conv_head.weight.grad is not None and top.head.fc.weight.grad is not None
    assert torch.equal(top.net._blocks[split - 1]._bn2.running_mean, bn_trunk)
    assert not torch.equal(top.net._bn1.running_mean, bn_top)  # the top's BN trains, as the original's


def test_stage_starts_of_efficientnets():
    assert stage_starts(build_efficientnet("efficientnet-b0", (64, 64))) == [0, 1, 3, 5, 8, 11, 15]
    b5 = stage_starts(build_efficientnet("efficientnet-b5", (64, 64)))
    assert len(b5) == 7 and b5[0] == 0 and b5[-1] == 36  # B5: 39 blocks, its last stage 3 blocks


def test_train_top_stages_config_checks_and_parameter_table():
    with pytest.raises(ValueError, match="freeze_backbone"):
        PanelEmbedder("efficientnet-lite0", 16, pretrained=False, freeze=False, panel_size=(64, 64), train_top_stages=1)
    with pytest.raises(ValueError, match="7 stages"):
        PanelEmbedder("efficientnet-lite0", 16, pretrained=False, freeze=True, panel_size=(64, 64), train_top_stages=8)
    cfg = load_config(CONFIG_DIR / "demo_plain_ssupergan.yaml").model
    frozen = parameter_table(cfg, (160, 160)).set_index("part")
    top = parameter_table(dataclasses.replace(cfg, train_top_stages=2), (160, 160)).set_index("part")
    assert (frozen["params"] == top["params"]).all()  # the same architecture
    assert frozen.loc["backbone", "trainable"] == 0
    emb = PanelEmbedder("efficientnet-lite0", 16, pretrained=False, freeze=True, panel_size=(64, 64), train_top_stages=2)
    expect = sum(p.numel() for m in [*emb.net._blocks[11:], emb.net._conv_head, emb.net._bn1] for p in m.parameters())
    assert top.loc["backbone", "trainable"] == expect > 0


# ------------------------------------------------------------------------------------------- paste
def test_paste_no_mutation_non_square_differentiable():
    panels = torch.rand(2, 3, 48, 80) * 2 - 1
    faces = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    coords = torch.tensor([[4, 20, 50, 78], [30, 48, 0, 16]])
    p0, f0 = panels.clone(), faces.detach().clone()
    out = paste_faces(panels, faces, coords)
    assert torch.equal(panels, p0) and torch.equal(faces.detach(), f0), "paste must not mutate its inputs"
    assert out.shape == (2, 3, 48, 80)
    ref = F.interpolate(f0[:1], size=(16, 28), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out[0, :, 4:20, 50:78], ref)
    outside = torch.ones(2, 1, 48, 80, dtype=torch.bool)
    outside[0, :, 4:20, 50:78] = False
    outside[1, :, 30:48, 0:16] = False
    assert torch.equal(out.masked_select(outside), panels.masked_select(outside))
    out.sum().backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0
    assert torch.allclose(faces.grad.sum(dim=(1, 2, 3)), torch.tensor([16.0 * 28 * 3, 18.0 * 16 * 3]), rtol=1e-4)
    crops = crop_faces(out, coords, 32)
    assert crops.shape == (2, 3, 32, 32)


def test_paste_rejects_empty_box():
    with pytest.raises(ValueError, match="empty box"):
        paste_faces(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 8, 8), torch.tensor([[5, 5, 0, 4]]))


def test_global_discriminator_any_aspect():
    for size in ((64, 64), (96, 160), (300, 200), (256, 256)):
        d = GlobalDiscriminator(size, 8)
        assert d(torch.randn(2, 3, *size)).shape == (2,)


# ------------------------------------------------------------------------------- sequence encoders
def test_reparameterize_and_kl_convention():
    mu, ls = torch.zeros(4000, 3) + 1.5, torch.full((4000, 3), -0.7)
    z = reparameterize(mu, ls, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.std(0), torch.full((3,), float(torch.exp(torch.tensor(-0.7)))), atol=0.03, rtol=0)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, ls.exp()), torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(kl_normal(mu, ls), ref)
    assert kl_normal(torch.zeros(2, 5), torch.zeros(2, 5)).item() == 0.0


def test_bilstm_splits_hidden_and_reads_masked_first():
    enc = LSTMSequenceEncoder(8, 12, 4, bidirectional=True, masked_first=True)
    assert enc.rnn.hidden_size == 6 and enc.rnn.bidirectional
    emb = torch.randn(2, 3, 8)
    # the masked-first order [p3, p1, p2] equals an unordered encoder reading that permutation
    plain = LSTMSequenceEncoder(8, 12, 4, bidirectional=True, masked_first=False)
    plain.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(emb)[0], plain(emb[:, [2, 0, 1]])[0])
    with pytest.raises(ValueError, match="even"):
        LSTMSequenceEncoder(8, 7, 4, bidirectional=True)


def test_convlstm_non_square_panels():
    cfg = ModelConfig(variant="ssupergan", backbone="efficientnet-b0", pretrained=False, seq_encoder="convlstm",
                      lstm_hidden=8, latent_dim=8, gen_channels=8, local_disc_channels=8)
    model = build_model(cfg, (64, 160))
    assert model.backbone.feature_hw == (2, 5)
    assert model.seq_encoder.cell.w_ci.shape == (1, 8, 2, 5)
    out = _run_variant(model.train(), torch.rand(2, 3, 3, 64, 160) * 2 - 1)
    assert out["mu"].shape == (2, 8)
    assert model.seq_encoder.cell.w_ci.grad is not None
    cell = ConvLSTMCell(4, 3, 3, (5, 5))
    with pytest.raises(ValueError, match="peepholes"):
        cell(torch.zeros(1, 4, 6, 6), (torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6)))


# ------------------------------------------------------------------------------ contextual attention
def test_contextual_attention_uses_each_samples_own_mask():
    torch.manual_seed(0)
    gen = FineGenerator(8).eval()
    H, W = 64, 96
    x = torch.rand(2, 3, H, W) * 2 - 1
    coords, mask = _boxes_and_mask(2, H, W)
    with torch.no_grad():
        both = gen(x, mask)
        alone = torch.cat([gen(x[i : i + 1], mask[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(both, alone)
    assert both.shape == (2, 3, H, W) and both.abs().max() <= 1.0
    # the attention reads each sample's own mask: no valid background -> nothing copied; swapping masks changes it
    ca = ContextualAttention()
    feats = torch.randn(2, 4, 16, 16)
    m = torch.ones(2, 1, 16, 16)
    with torch.no_grad():
        assert ca(feats, feats, m).abs().max() == 0  # no valid background patch at all -> nothing copied
        small = F.interpolate(mask, size=(16, 16), mode="nearest")
        assert small[0].sum() > 0 and small[1].sum() > 0 and not torch.equal(small[0], small[1])
        swapped = ca(feats, feats, small.flip(0))
        plain = ca(feats, feats, small)
    assert not torch.allclose(swapped, plain), "the attention output must depend on each sample's mask"


def test_refine_composites_context():
    cfg = dataclasses.replace(load_config(CONFIG_DIR / "ci_plain_ssupervae_ca.yaml").model, pretrained=False)
    model = build_model(cfg, (64, 64)).eval()
    panels = torch.rand(2, 3, 3, 64, 64) * 2 - 1
    coords, mask = _boxes_and_mask(2, 64, 64)
    with torch.no_grad():
        out = model.refine(panels, model.reconstruct(panels), mask, coords)
    keep = mask == 0
    assert torch.equal(out["fine_panel"].masked_select(keep.expand_as(out["fine_panel"])),
                       panels[:, -1].masked_select(keep.expand_as(out["fine_panel"])))


# -------------------------------------------------------------------------------- weights resolution
def test_weights_from_path_and_env(tmp_path, monkeypatch):
    torch.manual_seed(3)
    src = build_efficientnet("efficientnet-b0", (64, 64))
    fname = weights_filename("efficientnet-b0")
    assert fname == "efficientnet-b0-355c32eb.pth"
    path = tmp_path / fname
    torch.save(src.state_dict(), path)
    ref = src.state_dict()["_conv_stem.weight"]
    emb = PanelEmbedder("efficientnet-b0", 8, pretrained=str(path), panel_size=(64, 64))
    assert torch.equal(emb.net._conv_stem.weight, ref) and emb.weights_path == path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    for env_value in (str(path), str(tmp_path)):
        monkeypatch.setenv(WEIGHTS_ENV, env_value)
        emb = PanelEmbedder("efficientnet-b0", 8, pretrained=True, panel_size=(64, 64))
        assert torch.equal(emb.net._conv_stem.weight, ref)
    # the torch hub cache is found without a download
    monkeypatch.delenv(WEIGHTS_ENV)
    hub = tmp_path / "hub_home"
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(src.state_dict(), hub / "hub" / "checkpoints" / fname)
    monkeypatch.setenv("TORCH_HOME", str(hub))
    assert resolve_backbone_weights("efficientnet-b0", True) == hub / "hub" / "checkpoints" / fname
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_backbone_weights("efficientnet-b0", str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="not an EfficientNet state dict"):
        PanelEmbedder("efficientnet-b1", 8, pretrained=str(path), panel_size=(64, 64))


def test_offline_error_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError) as info:
        resolve_backbone_weights("efficientnet-b5", True)
    msg = str(info.value)
    assert "efficientnet-b5-b6417697.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints" / "efficientnet-b5-b6417697.pth") in msg
    assert WEIGHTS_ENV in msg and "pretrained=false" in msg


def test_lite0_weights_are_offline():
    path = resolve_backbone_weights("efficientnet-lite0", True)
    assert path is not None and path.is_file() and path.name == "efficientnet-lite0-57934424.pth"
    assert resolve_backbone_weights("efficientnet-lite0", False) is None
