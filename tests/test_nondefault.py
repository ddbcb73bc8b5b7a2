"""Settings off the default path that used to give silently wrong results.

Each test failed on the code before its fix; tests/reverts/*.patch put each old behaviour back and
``make check-reverts`` checks that the test notices.
"""

from __future__ import annotations

import torch
import pytest

from ssuper_lib.config import ConfigError, load_config
from ssuper_lib.models import build_model, count_parameters

from test_fixes import make_objective, random_batch

CI_BILSTM = "configs/models/ci_bilstm_ssupergan.yaml"


def test_masked_first_order_is_applied_once():
    """data.panel_order=masked_first with model.masked_first=true would permute twice (the LSTM reading
    [p2, p3, p1]): rejected with an error naming both keys; either key alone gives the original order."""
    with pytest.raises(ConfigError, match=r"(?s)model\.masked_first.*data\.panel_order|data\.panel_order.*model\.masked_first"):
        load_config(CI_BILSTM, ["data.panel_order=masked_first", "model.masked_first=true"])
    by_data = load_config(CI_BILSTM, ["data.panel_order=masked_first", "model.masked_first=false", "model.pretrained=false"])
    by_model = load_config(CI_BILSTM, ["data.panel_order=chronological", "model.masked_first=true", "model.pretrained=false"])
    torch.manual_seed(0)
    model = build_model(by_model.model, panel_size=tuple(by_model.data.panel_size)).eval()
    twin = build_model(by_data.model, panel_size=tuple(by_data.data.panel_size)).eval()
    twin.load_state_dict(model.state_dict())
    chrono = random_batch(by_model)["panels"]
    masked_first = random_batch(by_data)["panels"]
    assert torch.equal(masked_first[:, 0], chrono[:, -1])
    with torch.no_grad():
        assert torch.allclose(model.encode(chrono)[0], twin.encode(masked_first)[0], atol=1e-5)


def test_ca_evaluation_refines_the_masked_panel_under_masked_first():
    """With data.panel_order=masked_first the CA evaluation refines panel 0 (the masked one), not p2."""
    from ssuper_lib.evaluate import generate_faces

    _, model, cfg = make_objective("ssupervae_ca", "data.panel_order=masked_first")
    model.eval()
    batch = random_batch(cfg)
    assert cfg.data.panel_order == "masked_first" and torch.equal(batch["panels"][:, 0], random_batch(
        load_config("configs/models/ci_plain_ssupervae_ca.yaml"))["panels"][:, -1])
    out = generate_faces(model, batch["panels"], batch["mask"], batch["mask_coords"], masked_pos=0)
    with torch.no_grad():
        want = model.refine(batch["panels"][:, 0], out["coarse"], batch["mask"], batch["mask_coords"])["fine_face"]
        wrong = model.refine(batch["panels"][:, -1], out["coarse"], batch["mask"], batch["mask_coords"])["fine_face"]
    assert not torch.allclose(want, wrong)
    assert torch.allclose(out["face"], want), "the CA evaluation refined a context panel, not the masked one"


def test_feature_cache_key_includes_augmentation():
    """Features of jittered panels are not those of the plain panels: data.augment is part of the cache key."""
    from ssuper_lib.data.features import feature_cache_key

    plain = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false"])
    jitter = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false", "data.augment=true"])
    torch.manual_seed(0)
    model = build_model(plain.model, panel_size=tuple(plain.data.panel_size))
    dataset = list(range(5))
    k_plain, _ = feature_cache_key(model, dataset, plain, "train")
    k_jitter, desc = feature_cache_key(model, dataset, jitter, "train")
    assert k_plain != k_jitter, "data.augment does not change the feature cache key"
    assert feature_cache_key(model, dataset, plain, "train")[0] == k_plain


def test_feature_cache_key_follows_the_feature_extractor_not_the_trained_head():
    """Runs with other seeds or training steps share the frozen features (the embedding head is trained after
    them); other extractor weights never do."""
    from ssuper_lib.data.features import feature_cache_key

    cfg = load_config("configs/models/ci_plain_ssupergan.yaml", ["model.pretrained=false"])
    dataset = list(range(5))
    torch.manual_seed(0)
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size))
    key, _ = feature_cache_key(model, dataset, cfg, "test")
    with torch.no_grad():
        for p in model.backbone.head.parameters():
            p.add_(1.0)  # a trained head
    assert feature_cache_key(model, dataset, cfg, "test")[0] == key, "the trained head changed the feature cache key"
    with torch.no_grad():
        next(model.backbone.net.parameters()).add_(1.0)  # another feature extractor
    assert feature_cache_key(model, dataset, cfg, "test")[0] != key


def test_convlstm_feature_maps_get_no_undocumented_dropout():
    """The ConvLSTM reads the backbone's feature maps without dropout (the original's extract_features);
    model.convlstm_dropout (default 0) is the documented switch, and it adds no parameters."""
    base = ["model.pretrained=false", "model.seq_encoder=convlstm", "model.lstm_hidden=8", "model.backbone_dropout=0.4"]
    cfg = load_config("configs/models/ci_plain_ssupergan.yaml", base)
    assert cfg.model.convlstm_dropout == 0.0
    torch.manual_seed(0)
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).train()
    drops = [m.p for m in model.backbone.head.modules() if isinstance(m, torch.nn.Dropout)]
    assert all(p == 0.0 for p in drops), f"dropout {drops} on the ConvLSTM's feature maps"
    maps = torch.randn(2, 3, model.backbone.feature_dim, *model.backbone.feature_hw)
    assert torch.equal(model.backbone.forward_head(maps), maps)
    cfg_on = load_config("configs/models/ci_plain_ssupergan.yaml", base + ["model.convlstm_dropout=0.5"])
    on = build_model(cfg_on.model, panel_size=tuple(cfg_on.data.panel_size)).train()
    assert [m.p for m in on.backbone.head.modules() if isinstance(m, torch.nn.Dropout)] == [0.5]
    assert count_parameters(on) == count_parameters(model)
    shipped = load_config("configs/models/convlstm_ssupergan.yaml")
    assert shipped.model.convlstm_dropout == 0.0


@pytest.mark.parametrize("config,sampled", [
    ("plain_ssupervae", True), ("lstm_ssupervae", True), ("bilstm_ssupervae", True),
    ("plain_ssupergan", False), ("bilstm_ssupergan", False), ("convlstm_ssupergan", False),
    ("bilstm_ssuperglobalgan", False), ("plain_ssuperglobalgan", True), ("plain_ssupervae_ca", True),
])
def test_original_protocol_psnr_latent_follows_the_original_scripts(config, sampled):
    """docs/original.md 5.1: the original scored a sampled z for SSuperVAE, the CA model and the global-disc
    Plain-SSuperGlobalGAN, and G(mu) for the SSuperGAN rows and main's (Bi-LSTM) SSuperGlobalGAN."""
    from ssuper_lib.evaluate import original_protocol_samples_z

    cfg = load_config(f"configs/models/{config}.yaml")
    assert original_protocol_samples_z(cfg) is sampled


def test_unknown_target_character_is_its_own_context_group():
    """A sample whose target character is unknown is neither "in context" nor "not in context"."""
    from ssuper_lib.evaluate import context_groups

    gt = [
        {"target_character": "a", "context_characters": [["a"], ["b"], ["a"]]},  # in a context panel
        {"target_character": "a", "context_characters": [["b"], ["c"], ["a"]]},  # only in the masked panel
        {"target_character": None, "context_characters": [["b"], ["c"], []]},  # unknown
    ]
    assert context_groups(gt, masked=2) == [True, False, None]


def test_global_discriminator_docstring_names_the_branch_it_matches():
    """The capped global D is main's (docs/original.md 1.11); the global-disc branch's was uncapped (1.14)."""
    import ssuper_lib.models.discriminator as D

    doc = D.__doc__
    assert "exactly the original's" not in doc
    assert "main branch" in doc and "global-disc" in doc and "11,156,224" in doc and "44,739,328" in doc
    capped = D.GlobalDiscriminator((256, 256), 64, "batch")
    assert count_parameters(capped) == 11_156_224
    wide = D.GlobalDiscriminator((256, 256), 64, "batch", max_channels=2048)
    convs = [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 128, 256, 512, 1024, 2048, 1]


def test_bilstm_ssuperglobalgan_trains_on_z_mu():
    """The no-KL Bi-LSTM SSuperGlobalGAN row used z = mu (main's global trainer); the kit's config does too."""
    shipped = load_config("configs/models/bilstm_ssuperglobalgan.yaml")
    assert shipped.train.kl_weight == 0 and shipped.train.sample_z is False
    obj, model, cfg = make_objective("ssuperglobalgan", "train.sample_z=false")
    batch = random_batch(cfg)
    torch.manual_seed(5)
    fake = obj.elbo(batch, 0)[0]
    with torch.no_grad():
        want = model.generate(model.encode(batch["panels"])[0])
    assert torch.allclose(fake, want, atol=1e-6), "train.sample_z=false still samples z"
    obj, model, cfg = make_objective("ssuperglobalgan", "train.sample_z=true")
    fake = obj.elbo(batch, 0)[0]
    with torch.no_grad():
        assert not torch.allclose(fake, model.generate(model.encode(batch["panels"])[0]), atol=1e-6)
