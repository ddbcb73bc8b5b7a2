"""The training objectives (docs/original.md 2; one class each, ``step()`` reads top to bottom).

* ``ssupervae`` (:class:`VAEObjective`): ELBO = recon + KL (optional linear KL warm-up); one Adam over all
  trainable parameters; linear learning-rate decay; gradient clipping.
* ``ssupergan`` (:class:`GANObjective`): per step (1) discriminator step on the true face vs ``G(z)``,
  (2) generator step ``adv_weight * adversarial + gen_recon_weight * recon`` against the *updated* D,
  (3) encoder step on the ELBO (plus the adversarial term when ``train.adv_to_encoder``). Loss ``bce``
  (with logits, as the original) or ``hinge``.
* ``ssuperglobalgan``: as SSuperGAN plus a global discriminator on the masked last panel with the face
  pasted back in (real: the true face pasted the same way); its term reaches the generator.
* ``ssupervae_ca`` (:class:`CAObjective`): ELBO on the coarse face + ``l1_fine_weight`` * L1 on the refined
  face + WGAN-GP local (64x64 faces) and global (panels) critics, trained against the generator.
* ``ssuper_exemplar`` (:class:`ExemplarObjective`): the SSuperGAN losses on the face drawn from the
  attended context exemplar, plus a selection loss.

:data:`OBJECTIVES` maps each ``model.variant`` to its objective.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import ExperimentConfig
from ..models.exemplar import selection_target
from .engine import _allreduce_grads, _Dist
from .losses import (
    gan_d_loss,
    gan_g_loss,
    gradient_penalty,
    kl_anneal_weight,
    kl_normal,
    l1_loss,
    reconstruction_loss,
    reparameterize,
    wgan_critic_loss,
    wgan_g_loss,
)

__all__ = ["NonFiniteLossError", "Objective", "VAEObjective", "GANObjective", "CAObjective", "ExemplarObjective",
           "OBJECTIVES"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss, the step and the last good checkpoint."""


class Objective:
    """Optimisers, schedulers, precision and the shared encode/backward/step helpers of an objective.

    Subclasses define ``optimizer_specs()`` -> {name: (params, lr, betas)} and ``step(batch, step)`` -> the
    loss values of that step (floats, averaged over ranks).
    """

    def __init__(self, model: torch.nn.Module, cfg: ExperimentConfig, device: torch.device,
                 amp_dtype: torch.dtype | None, dist_info: _Dist, total_steps: int):
        self.model = model
        self.cfg = cfg
        self.tc = cfg.train
        self.device = device
        self.amp_dtype = amp_dtype
        self.dist = dist_info
        self.groups = model.parameter_groups()
        self.params: dict[str, list[torch.nn.Parameter]] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        for name, (params, lr, betas) in self.optimizer_specs().items():
            if not params:
                continue
            self.params[name] = params
            # foreach: one multi-tensor kernel per update instead of a Python loop over parameters (the CPU
            # default is the loop); the same arithmetic
            self.opts[name] = torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=self.tc.weight_decay,
                                               foreach=True)
        total = max(1, total_steps)
        linear = self.tc.lr_decay == "linear"
        self.scheds = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, (lambda s: max(0.0, 1.0 - s / total)) if linear else (lambda s: 1.0))
            for name, opt in self.opts.items()
        }
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.mi = cfg.data.masked_index

    # -- to override
    def optimizer_specs(self) -> dict[str, tuple[list, float, list[float]]]:
        raise NotImplementedError

    def step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        raise NotImplementedError

    # -- helpers
    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_sigma) (B, latent) from cached features when present, else from the panels."""
        if "feats" in batch:
            mu, log_sigma = self.model.encode_features(batch["feats"])
        else:
            mu, log_sigma = self.model.encode(batch["panels"])  # panels (B, S, 3, H, W)
        return mu.float(), log_sigma.float()

    def elbo(self, batch: dict[str, Any], step: int, sample_z: bool | None = None,
             generate: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """Sample z ~ q(z | panels) (z = mu with ``train.sample_z: false``), generate, and the ELBO parts:
        (fake, loss, recon, kl, kl_weight). ``sample_z`` (when given) overrides ``train.sample_z``;
        ``generate(z)`` makes the face (default ``model.generate``)."""
        mu, log_sigma = self.encode(batch)
        if sample_z is None:
            sample_z = self.tc.sample_z
        z = reparameterize(mu, log_sigma) if sample_z else mu  # (B, latent)
        fake = (generate or self.model.generate)(z)  # (B, 3, 64, 64)
        recon = reconstruction_loss(fake, batch["face"], self.tc.recon_loss)
        if self.tc.inject_nan_at == step + 1:  # test aid: the step that would become `inject_nan_at`
            recon = recon * float("nan")
        kl = kl_normal(mu, log_sigma)
        kl_w = kl_anneal_weight(step, self.tc.kl_weight, self.tc.kl_anneal_steps)
        return fake, self.tc.recon_weight * recon + kl_w * kl, recon, kl, kl_w

    def check(self, step: int, **losses: torch.Tensor) -> dict[str, float]:
        """Average the loss values over ranks; raise :class:`NonFiniteLossError` naming the first bad one.

        Every rank sees the same averaged values, so all ranks stop together (no hang in a collective).
        """
        names = list(losses)
        vals = torch.stack([losses[n].detach().float().reshape(()) for n in names])
        if self.dist.active:
            dist.all_reduce(vals)
            vals = vals / self.dist.world_size
        vals = vals.cpu().tolist()
        for n, v in zip(names, vals):
            if not math.isfinite(v):
                raise NonFiniteLossError(f"non-finite loss '{n}' = {v} at step {step + 1}")
        return dict(zip(names, vals))

    def zero_grad(self, *names: str) -> None:
        for n in names:
            if n in self.opts:
                self.opts[n].zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, names: tuple[str, ...], retain_graph: bool = False) -> None:
        """Back-propagate ``loss`` into the parameters of the named optimisers only."""
        inputs = [p for n in names if n in self.params for p in self.params[n]]
        if not inputs:
            return
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward(inputs=inputs, retain_graph=retain_graph)

    def opt_step(self, *names: str) -> None:
        """All-reduce gradients across ranks, unscale (fp16), clip, step."""
        for n in names:
            if n not in self.opts:
                continue
            opt, params = self.opts[n], self.params[n]
            _allreduce_grads(params, self.dist)
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            if self.tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.tc.grad_clip)
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()

    def end_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()
        for s in self.scheds.values():
            s.step()

    def lr(self) -> float:
        first = next(iter(self.opts.values()))
        return float(first.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {n: o.state_dict() for n, o in self.opts.items()},
            "schedulers": {n: s.state_dict() for n, s in self.scheds.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, o in self.opts.items():
            o.load_state_dict(state["optimizers"][n])
        for n, s in self.scheds.items():
            s.load_state_dict(state["schedulers"][n])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


class VAEObjective(Objective):
    """SSuperVAE: minimise recon + KL with one Adam over every trainable parameter (docs/original.md 2.2)."""

    def optimizer_specs(self):
        params = [p for g in self.groups.values() for p in g]
        return {"vae": (params, self.tc.lr, self.tc.betas)}

    def step(self, batch, step):
        with self.autocast():
            _, loss, recon, kl, kl_w = self.elbo(batch, step)
        out = self.check(step, recon=recon, kl=kl, loss=loss)
        self.zero_grad("vae")
        self.backward(loss, ("vae",))
        self.opt_step("vae")
        self.end_step()
        return {**out, "kl_weight": kl_w}


class GANObjective(Objective):
    """SSuperGAN and SSuperGlobalGAN (docs/original.md 2.3, 2.4): D step, then G and E against the new D."""

    def optimizer_specs(self):
        tc = self.tc
        return {
            "encoder": (self.groups.get("encoder", []), tc.lr, tc.encoder_betas),
            "generator": (self.groups.get("generator", []), tc.lr, tc.betas),
            "local_disc": (self.groups.get("local_disc", []), tc.lr, tc.betas),
            "global_disc": (self.groups.get("global_disc", []), tc.global_disc_lr, tc.betas),
        }

    def step(self, batch, step):
        tc, model = self.tc, self.model
        use_global = model.global_disc is not None
        face = batch["face"]  # (B, 3, 64, 64)
        with self.autocast():
            fake, elbo, recon, kl, kl_w = self.elbo(batch, step)
            # (1) discriminators: true vs generated, separate passes (separate batch-norm statistics)
            d_loss = gan_d_loss(model.local_disc(face), model.local_disc(fake.detach()), tc.gan_loss)
            losses = {"recon": recon, "kl": kl, "elbo": elbo, "d_local": d_loss}
            if use_global:
                masked = batch["panels"][:, self.mi]  # (B, 3, H, W) last panel with the white hole
                real_panel = model.paste(masked, face, batch["mask_coords"])  # true face pasted back
                fake_panel = model.paste(masked, fake, batch["mask_coords"])  # differentiable w.r.t. fake
                d_global = gan_d_loss(model.global_disc(real_panel), model.global_disc(fake_panel.detach()), tc.gan_loss)
                losses["d_global"] = d_global
                d_loss = d_loss + d_global
        out = self.check(step, **losses)
        self.zero_grad("local_disc", "global_disc")
        self.backward(d_loss, ("local_disc", "global_disc"))
        self.opt_step("local_disc", "global_disc")

        # (2) generator (and optionally encoder) against the updated discriminators
        with self.autocast():
            g_adv = gan_g_loss(model.local_disc(fake), tc.gan_loss)
            adv = tc.adv_weight * g_adv
            g_losses = {"g_adv": g_adv}
            if use_global:
                g_global = gan_g_loss(model.global_disc(fake_panel), tc.gan_loss)
                adv = adv + tc.global_adv_weight * g_global
                g_losses["g_global"] = g_global
            g_loss = adv + tc.gen_recon_weight * recon
            e_loss = elbo + adv if tc.adv_to_encoder else elbo
        out.update(self.check(step, g_loss=g_loss, **g_losses))
        self.zero_grad("encoder", "generator")
        # (3) generator: adversarial + weighted reconstruction; encoder: ELBO (+ adversarial). The small
        # generator pass keeps the shared graph; the encoder pass goes last and frees the backbone's
        # activations as it walks back through them (retaining them for a second pass cost ~1 GB RSS).
        self.backward(g_loss, ("generator",), retain_graph=True)
        self.backward(e_loss, ("encoder",))
        self.opt_step("encoder", "generator")
        self.end_step()
        return {**out, "kl_weight": kl_w}


class CAObjective(Objective):
    """SSuperVAE + contextual-attention refinement with WGAN-GP critics (docs/original.md 1.15, 2.5)."""

    def optimizer_specs(self):
        tc = self.tc
        return {
            "encoder": (self.groups.get("encoder", []), tc.lr, tc.encoder_betas),
            "generator": (self.groups.get("generator", []), tc.lr, tc.betas),  # decoder + fine generator
            "local_critic": (self.groups.get("local_critic", []), tc.lr, tc.betas),
            "global_critic": (self.groups.get("global_critic", []), tc.global_disc_lr, tc.betas),
        }

    def step(self, batch, step):
        tc, model = self.tc, self.model
        face = batch["face"]  # (B, 3, 64, 64)
        with self.autocast():
            coarse, elbo, recon, kl, kl_w = self.elbo(batch, step)
            refined = model.refine(batch["panels"][:, self.mi], coarse, batch["mask"], batch["mask_coords"])
            fine_face, fine_panel = refined["fine_face"], refined["fine_panel"]  # (B,3,64,64), (B,3,H,W)
            l1_fine = l1_loss(fine_face, face)
            # the critics' real samples are the truth: the face and the unmasked last panel (not the input)
            real_panel = batch["gt_panel"] if "gt_panel" in batch else model.paste(
                batch["panels"][:, self.mi], face, batch["mask_coords"])
            c_local = wgan_critic_loss(model.local_critic(face), model.local_critic(fine_face.detach()))
            c_global = wgan_critic_loss(model.global_critic(real_panel), model.global_critic(fine_panel.detach()))
        gp_local = gradient_penalty(model.local_critic, face, fine_face)
        gp_global = gradient_penalty(model.global_critic, real_panel, fine_panel)
        c_loss = c_local + tc.wgan_gp_lambda * gp_local + tc.global_wgan_weight * (c_global + tc.wgan_gp_lambda * gp_global)
        out = self.check(step, recon=recon, kl=kl, elbo=elbo, l1_fine=l1_fine, c_local=c_local,
                         c_global=c_global, gp_local=gp_local, gp_global=gp_global)
        self.zero_grad("local_critic", "global_critic")
        self.backward(c_loss, ("local_critic", "global_critic"))
        self.opt_step("local_critic", "global_critic")

        with self.autocast():
            g_local = wgan_g_loss(model.local_critic(fine_face))
            g_global = wgan_g_loss(model.global_critic(fine_panel))
            adv = tc.adv_weight * g_local + tc.global_wgan_weight * g_global
            g_loss = elbo + tc.l1_fine_weight * l1_fine + adv  # the decoder gets its ELBO term too
            e_loss = g_loss if tc.adv_to_encoder else elbo + tc.l1_fine_weight * l1_fine
        out.update(self.check(step, g_loss=g_loss, g_local=g_local, g_global=g_global))
        self.zero_grad("encoder", "generator")
        self.backward(g_loss, ("generator",), retain_graph=True)  # encoder last: frees the graph as it goes
        self.backward(e_loss, ("encoder",))
        self.opt_step("encoder", "generator")
        self.end_step()
        return {**out, "kl_weight": kl_w}


class ExemplarObjective(GANObjective):
    """Exemplar-SSuperGAN (beyond the original): the SSuperGAN losses on the face drawn from the attended
    context exemplar, plus a selection loss: cross-entropy of the attention logits against the candidate
    (or null slot) nearest to the true face as coarse colour layouts (``model.exemplar_target_size``).
    Encoder, attention and exemplar generator take one loss: ELBO + weighted reconstruction + selection +
    adversarial (the encoder's z feeds the exemplar generator).
    The selector's few parameters (region weights, temperature, null score) have their own Adam at
    ``train.select_lr``: at the generator's learning rate they would hardly move within a demo run."""

    def optimizer_specs(self):
        return {**super().optimizer_specs(),
                "selector": (self.groups.get("selector", []), self.tc.select_lr, self.tc.betas)}

    def step(self, batch, step):
        tc, model = self.tc, self.model
        face = batch["face"]  # (B, 3, 64, 64)
        out: dict[str, torch.Tensor] = {}

        def exemplar_face(z: torch.Tensor) -> torch.Tensor:
            out.update(model.exemplar_forward(z, batch))  # face, logits, attn, exemplar
            return out["face"]

        with self.autocast():
            # z is always sampled here, whatever train.sample_z says
            fake, _, recon, kl, kl_w = self.elbo(batch, step, sample_z=True, generate=exemplar_face)
            target = selection_target(batch["cand_face"], batch["cand_valid"].bool(), model.null_face.detach(), face,
                                      model.cfg.exemplar_target_size, model.cfg.exemplar_null_margin)
            select = F.cross_entropy(out["logits"].float(), target)
            d_loss = gan_d_loss(model.local_disc(face), model.local_disc(fake.detach()), tc.gan_loss)
        out_l = self.check(step, recon=recon, kl=kl, select=select, d_local=d_loss,
                           select_acc=(out["logits"].argmax(1) == target).float().mean())
        self.zero_grad("local_disc")
        self.backward(d_loss, ("local_disc",))
        self.opt_step("local_disc")

        with self.autocast():
            g_adv = gan_g_loss(model.local_disc(fake), tc.gan_loss)
            g_loss = (tc.adv_weight * g_adv + tc.gen_recon_weight * recon + tc.select_weight * select
                      + kl_w * kl)
        out_l.update(self.check(step, g_loss=g_loss, g_adv=g_adv))
        self.zero_grad("encoder", "generator", "selector")
        self.backward(g_loss, ("encoder", "generator", "selector"))
        self.opt_step("encoder", "generator", "selector")
        self.end_step()
        return {**out_l, "kl_weight": kl_w}


OBJECTIVES: dict[str, type[Objective]] = {
    "ssupervae": VAEObjective,
    "ssupergan": GANObjective,
    "ssuperglobalgan": GANObjective,
    "ssupervae_ca": CAObjective,
    "ssuper_exemplar": ExemplarObjective,
}
