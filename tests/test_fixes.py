"""Fixes of the original's training defects (docs/original.md 8), tested through the real objectives.

Each test here fails when its fix is reverted (tests/reverts/*.patch, ``make check-reverts``). The
objectives run one step on a random batch with tiny models (64 px panels, random backbone weights), so
each test takes about a second; what is compared are trainable parameters and the gradients each optimiser
receives, never buffers (batch-norm running statistics change on any forward pass in train mode).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ssuper_lib.config import load_config
from ssuper_lib.models import build_model
from ssuper_lib.train import OBJECTIVES, _Dist

CI = {
    "ssupergan": "configs/models/ci_plain_ssupergan.yaml",
    "ssuperglobalgan": "configs/models/ci_plain_ssuperglobalgan.yaml",
    "ssupervae_ca": "configs/models/ci_plain_ssupervae_ca.yaml",
}


def make_objective(variant: str, *overrides: str, seed: int = 0):
    """(objective, model, cfg): a ci config with random backbone weights, built and seeded as train() does."""
    cfg = load_config(CI[variant], ["model.pretrained=false", "model.fc_dropout=0.0", "train.grad_clip=0",
                                    "train.lr_decay=none", *overrides])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size))
    model.train()
    obj = OBJECTIVES[cfg.model.variant](model, cfg, torch.device("cpu"), None, _Dist(), total_steps=10)
    return obj, model, cfg


def random_batch(cfg, B: int = 4, seed: int = 1) -> dict:
    """Panels in [-1, 1] in the configured order with a white hole, the true face and the unmasked panel."""
    g = torch.Generator().manual_seed(seed)
    H, W = cfg.data.panel_size
    panels = torch.rand(B, 3, 3, H, W, generator=g) * 2 - 1  # (B, S, 3, H, W), chronological
    face = torch.rand(B, 3, 64, 64, generator=g) * 2 - 1
    coords = torch.tensor([[8 + i, 40 + i, 12, 44] for i in range(B)])  # (y1, y2, x1, x2)
    mask = torch.zeros(B, 1, H, W)
    gt_panel = panels[:, -1].clone()
    for i, (y1, y2, x1, x2) in enumerate(coords.tolist()):
        mask[i, :, y1:y2, x1:x2] = 1
        panels[i, -1, :, y1:y2, x1:x2] = 1.0
    if cfg.data.panel_order == "masked_first":
        panels = torch.cat([panels[:, -1:], panels[:, :-1]], 1)
    return {"panels": panels, "face": face, "mask": mask, "mask_coords": coords, "gt_panel": gt_panel}


def record_grads(obj) -> dict[str, list[torch.Tensor | None]]:
    """Wrap ``obj.opt_step`` to record, per optimiser, the gradients it is about to step with."""
    seen: dict[str, list] = {}
    inner = obj.opt_step

    def opt_step(*names):
        for n in names:
            if n in obj.params:
                seen[n] = [None if p.grad is None else p.grad.detach().clone() for p in obj.params[n]]
        inner(*names)

    obj.opt_step = opt_step
    return seen


def grad_norm(grads) -> float:
    return float(sum((g.double() ** 2).sum() for g in grads if g is not None)) ** 0.5 if grads else 0.0


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["ssupergan", "ssuperglobalgan", "ssupervae_ca"])
def test_every_discriminator_steps(variant):
    """R8.1: one step changes the trainable parameters of every part (local D included); buffers are ignored."""
    obj, model, cfg = make_objective(variant)
    before = trainable_snapshot(model)
    obj.step(random_batch(cfg), 0)
    after = trainable_snapshot(model)
    for part in ("seq_encoder", "generator", "local_disc", "global_disc", "refiner", "local_critic", "global_critic"):
        if getattr(model, part, None) is None:
            continue
        keys = [k for k in before if k.startswith(part + ".")]
        assert keys, f"{variant}: {part} has no trainable parameter"
        changed = [k for k in keys if not torch.equal(before[k], after[k])]
        assert changed, f"{variant}: no trainable parameter of {part} changed in one step (not stepped)"


def test_global_adversarial_term_reaches_generator_in_trainer():
    """R8.2: with only the global adversarial term in G's loss, the generator receives a gradient from the
    trainer's own step (the original pasted ``fake.detach()``, so the term carried no gradient)."""
    obj, model, cfg = make_objective("ssuperglobalgan", "train.adv_weight=0", "train.gen_recon_weight=0",
                                     "train.global_adv_weight=1.0")
    grads = record_grads(obj)
    obj.step(random_batch(cfg), 0)
    assert grad_norm(grads["generator"]) > 0, "the global adversarial term sends no gradient to the generator"
    # and the control: without the global term, G's loss is zero and so is its gradient
    obj, model, cfg = make_objective("ssuperglobalgan", "train.adv_weight=0", "train.gen_recon_weight=0",
                                     "train.global_adv_weight=0")
    grads = record_grads(obj)
    obj.step(random_batch(cfg), 0)
    assert grad_norm(grads["generator"]) == 0


@pytest.mark.parametrize("variant", ["ssupergan", "ssupervae_ca"])
def test_adv_to_encoder_both_settings(variant):
    """R8.4: the encoder's gradient depends on the adversarial weight exactly when ``train.adv_to_encoder``.

    The adversarial gradient that reaches the encoder of these tiny random models is ~1e-8 against an ELBO
    gradient of ~50, below float32 rounding: in the full loss it cannot be told from summation-order noise
    (thread count, kernels). So the "true" half weighs the ELBO (and the CA's L1 term) by zero: the
    encoder's loss is then the adversarial term alone, or nothing."""

    def encoder_grads(adv_to_encoder: bool, adv_weight: float, *overrides: str):
        obj, _, cfg = make_objective(variant, f"train.adv_to_encoder={str(adv_to_encoder).lower()}",
                                     f"train.adv_weight={adv_weight}", *overrides)
        grads = record_grads(obj)
        obj.step(random_batch(cfg), 0)
        return grads["encoder"]

    def same(a, b):
        return all((x is None and y is None) or torch.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(a, b))

    assert same(encoder_grads(False, 1.0), encoder_grads(False, 50.0)), \
        "adv_to_encoder=false: the encoder's gradient changed with the adversarial weight"
    only_adv = ("train.recon_weight=0", "train.kl_weight=0", "train.l1_fine_weight=0")
    assert grad_norm(encoder_grads(False, 50.0, *only_adv)) == 0, \
        "adv_to_encoder=false: the encoder receives an adversarial gradient"
    g1, g50 = encoder_grads(True, 1.0, *only_adv), encoder_grads(True, 50.0, *only_adv)
    assert grad_norm(g1) > 0, "adv_to_encoder=true: the encoder receives no adversarial gradient"
    change = grad_norm([b - a for a, b in zip(g1, g50) if a is not None])
    assert change > grad_norm(g1), \
        f"adv_to_encoder=true: the encoder's gradient hardly changed with the adversarial weight ({change} vs {grad_norm(g1)})"


def test_ca_critics_are_trained_against_the_generator():
    """R8.5: the critics step on their own WGAN-GP loss: they get a gradient in their own optimisers, and the
    step widens the gap between their scores of the truth and of the refined output."""
    obj, model, cfg = make_objective("ssupervae_ca", "train.lr=0.01", "train.global_disc_lr=0.01")
    batch = random_batch(cfg)
    grads = record_grads(obj)

    def gap():
        with torch.no_grad():
            coarse = model.generate(model.encode(batch["panels"])[0])
            ref = model.refine(batch["panels"][:, -1], coarse, batch["mask"], batch["mask_coords"])
            return (float(model.local_critic(batch["face"]).mean() - model.local_critic(ref["fine_face"]).mean()),
                    float(model.global_critic(batch["gt_panel"]).mean() - model.global_critic(ref["fine_panel"]).mean()))

    model.eval()
    g0 = gap()
    model.train()
    obj.step(batch, 0)
    model.eval()
    g1 = gap()
    for name in ("local_critic", "global_critic"):
        assert grad_norm(grads.get(name, [])) > 0, f"{name} received no gradient from its own loss"
    assert g1[0] > g0[0] and g1[1] > g0[1], f"critic score gaps (local, global) {g0} -> {g1} did not widen"


def test_ca_gradient_penalty_real_sample_is_the_true_panel(monkeypatch):
    """R8.5: the global critic's real sample (in its loss and in the gradient penalty) is the unmasked
    ground-truth panel, not the masked input panel."""
    import ssuper_lib.train.objectives as train_mod

    calls = []
    real_gp = train_mod.gradient_penalty

    def spy(critic, real, fake, *a, **kw):
        calls.append((critic, real.detach().clone()))
        return real_gp(critic, real, fake, *a, **kw)

    monkeypatch.setattr(train_mod, "gradient_penalty", spy)
    obj, model, cfg = make_objective("ssupervae_ca")
    batch = random_batch(cfg)
    obj.step(batch, 0)
    global_real = [real for critic, real in calls if critic is model.global_critic]
    assert len(global_real) == 1
    assert torch.equal(global_real[0], batch["gt_panel"]), "the gradient penalty's real panel is not the true panel"
    local_real = [real for critic, real in calls if critic is model.local_critic]
    assert len(local_real) == 1 and torch.equal(local_real[0], batch["face"])


@pytest.mark.parametrize("name,imagenet", [("efficientnet-b0", True), ("efficientnet-lite0", False)])
def test_backbone_input_normalisation(name, imagenet):
    """R8.14: panels in [-1, 1] reach a B-series EfficientNet ImageNet-normalised ((x01 - mean) / std, not
    the identity) and Lite0 as [-1, 1] (its TF-Lite convention)."""
    from ssuper_lib.models.backbone import IMAGENET_MEAN, IMAGENET_STD, PanelEmbedder

    emb = PanelEmbedder(name, 8, 0.0, pretrained=False, freeze=True, panel_size=(64, 64))
    seen = []  # what the network's first layer receives
    emb.net._conv_stem.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    panels = torch.rand(2, 3, 3, 64, 64) * 2 - 1
    emb.backbone_features(panels)
    x = panels.reshape(6, 3, 64, 64)
    if imagenet:
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        want = ((x + 1) / 2 - mean) / std
        assert not torch.allclose(want, x, atol=1e-2), "the test's normalisation must not be the identity"
    else:
        want = x
    assert torch.allclose(seen[0], want, atol=1e-5), f"{name}: the network's input is not normalised as its weights expect"


def test_static_same_padding_follows_the_panel_size():
    """"Same" padding is computed for the actual panel size (the original's static padding assumed 456 px):
    a stride-2 3x3 stem on a 65 px panel pads one pixel on each side, as TensorFlow's "same" would."""
    from ssuper_lib.models.backbone import PanelEmbedder

    emb = PanelEmbedder("efficientnet-b0", 8, 0.0, pretrained=False, panel_size=(65, 97))
    stem = emb.net._conv_stem
    sp = stem.static_padding
    # (left, right, top, bottom): a ZeroPad2d, or symmetric padding folded into the convolution itself
    pad = tuple(sp.padding) if hasattr(sp, "padding") else (stem.padding[1], stem.padding[1], stem.padding[0], stem.padding[0])
    assert pad == (1, 1, 1, 1), f"stem padding {pad} is not 'same' for a 65 x 97 panel"
    with torch.no_grad():
        assert stem(torch.zeros(1, 3, 65, 97)).shape[-2:] == (33, 49)


def test_vae_decoder_output_is_bounded_by_default():
    """The SSuperVAE decoder ends in tanh unless model.vae_output=none (the original's unbounded output)."""
    from ssuper_lib.config import ModelConfig
    from ssuper_lib.models.generator import IntroVAEDecoder

    assert ModelConfig().vae_output == "tanh"
    torch.manual_seed(0)
    z = torch.randn(4, 8) * 100
    bounded = IntroVAEDecoder(8, [8, 8, 8, 8], 64).eval()
    raw = IntroVAEDecoder(8, [8, 8, 8, 8], 64, output="none").eval()
    raw.load_state_dict(bounded.state_dict())
    with torch.no_grad():
        out, unbounded = bounded(z), raw(z)
    assert out.abs().max() <= 1.0 and unbounded.abs().max() > 1.0
    torch.testing.assert_close(out, torch.tanh(unbounded))


def test_no_cuda_only_calls_in_the_library():
    """R8.19: no ``.cuda()``, ``torch.cuda.FloatTensor`` or ``get_device()``: the kit runs on CPU and any GPU."""
    import re
    from pathlib import Path

    import ssuper_lib

    bad = re.compile(r"(?<!`)(\.cuda\(|torch\.cuda\.\w*Tensor|\.get_device\()")  # ``.cuda()`` in prose is fine
    hits = [f"{p.name}:{i}: {line.strip()}" for p in Path(ssuper_lib.__file__).parent.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert not hits, "CUDA-only calls: " + "; ".join(hits)


def test_no_loss_threshold_skips_a_discriminator_step(monkeypatch):
    """R8.7: the discriminators step every iteration, however small their loss (the original skipped the
    D update while its loss was below -ln 0.8)."""
    import ssuper_lib.train.objectives as train_mod

    inner = train_mod.gan_d_loss
    monkeypatch.setattr(train_mod, "gan_d_loss", lambda r, f, kind="bce": inner(r, f, kind) * 1e-3)  # a tiny loss
    obj, model, cfg = make_objective("ssuperglobalgan")
    before = trainable_snapshot(model)
    out = obj.step(random_batch(cfg), 0)
    assert out["d_local"] < 0.1
    after = trainable_snapshot(model)
    for part in ("local_disc", "global_disc"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part + ".")), f"{part} skipped its step"


def test_global_discriminator_uses_adam_and_learning_rates_decay_per_step():
    """Adam at train.global_disc_lr for the global D (the original: SGD at 0.005), and every learning rate
    decays linearly to 0 over the run, step by step (the original stepped its LambdaLR once per epoch)."""
    obj, model, cfg = make_objective("ssuperglobalgan", "train.lr_decay=linear", "train.lr=0.001",
                                     "train.global_disc_lr=0.0003")
    opt = obj.opts["global_disc"]
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == pytest.approx(3e-4)
    batch = random_batch(cfg)
    for k in range(1, 4):
        obj.step(batch, k - 1)
        assert obj.opts["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - k / 10))
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 * (1 - k / 10))


def test_evaluation_scores_g_of_mu():
    """R8.13: the kit's PSNR/SSIM/FID are computed on the deterministic G(mu), not on a sampled z."""
    from ssuper_lib.evaluate import generate_faces

    _, model, cfg = make_objective("ssupergan")
    model.eval()
    batch = random_batch(cfg)
    out = generate_faces(model, batch["panels"], batch["mask"], batch["mask_coords"])
    with torch.no_grad():
        mu = model.encode(batch["panels"])[0]
        assert torch.allclose(out["face"], model.generate(mu), atol=1e-6), "the evaluated face is not G(mu)"
