"""Training engine of the kit: the four SSuperGAN objectives in one loop, on CPU, one GPU or many.

    python -m ssuper_lib.train configs/models/demo_plain_ssupergan.yaml train.max_steps=3000
    torchrun --nproc_per_node=4 -m ssuper_lib.train configs/models/bilstm_ssupergan.yaml
    python -m ssuper_lib.train CONFIG train.resume=runs/00003-demo_plain_ssupergan   # or train.resume=auto

From a notebook: ``result = train(cfg, callback=fn)``; ``cfg, model = load_run(result.run_dir)``.

**Objectives** (REFERENCE.md 2; one class each, ``step()`` reads top to bottom):

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

**Defects of the original fixed here** (REFERENCE.md 8; each is a line in the README's differences):

* 8.1 every discriminator steps (the original called ``zero_grad()`` where ``step()`` belonged).
* 8.2 the global adversarial term carries gradient into G (the original pasted ``fake.detach()``).
* 8.3 one KL/sampling convention (``models.sequence``), 8.8 no 11,292 NLL constant in the losses.
* 8.4 the encoder's adversarial gradient is a documented switch (``adv_to_encoder``; default off as the
  original) and D and G losses share one reduction convention (``losses.gan_d_loss``).
* 8.5 the CA critics are trained adversarially with their own optimisers (the original never
  back-propagated the critic loss and stepped the critics with the *generator* loss, twice); the
  gradient penalty's real sample is the unmasked ground-truth panel (the original used the masked input).
* 8.7 no ad-hoc loss thresholds that skip updates.
* 6/8.19: no CUDA-only calls; seeds everywhere (``seed + rank``); optional mixed precision.
* Learning rates decay linearly **per step** to 0 at the end (the original stepped ``LambdaLR`` per epoch).
* Global discriminator: Adam at ``train.global_disc_lr`` (the original HEAD used SGD lr 0.005 without
  momentum; the ``global-disc`` branch used Adam).

**Engine.** CUDA when present (``train.device``), else CPU; ``torch.autocast`` with bf16 (or fp16 plus a
``GradScaler``) on GPUs. Multi-process data parallelism with ``torch.distributed`` (gloo on CPU, nccl on
GPUs): a ``DistributedSampler`` shards the data, parameters start identical (broadcast from rank 0) and
**gradients are all-reduced before every optimiser step**, the way StyleGAN2/3 train their GANs.
``DistributedDataParallel``'s reducer assumes one forward/backward per parameter set per iteration,
while these objectives run several backward passes over overlapping parameter subsets per iteration
(D, then G, then E, with ``backward(inputs=...)``); an explicit all-reduce keeps this exact and readable.
Batch-norm buffers are broadcast from rank 0 after every step (DDP's ``broadcast_buffers`` behaviour).

**Run directories** ``<train.out_dir>/<NNNNN>-<name>/``: ``config.yaml`` (resolved), ``metrics.jsonl`` (one JSON
line per ``log_every`` steps with step, epoch, wall time, samples/s, learning rate and the mean of each
loss over the window; ``"kind": "eval"`` lines with the reconstruction error on fixed samples),
``samples/`` (a fixed latent grid and fixed test sequences: panels | truth | reconstruction) and
``checkpoints/latest.pt`` (written to a temporary file then ``os.replace``d; loads with
``weights_only=True``; holds model, optimisers, schedulers, scaler, step, epoch, data position, config,
the RNG states of every rank and a version).

**Exact resume.** The data order is a pure function of ``(seed, epoch)`` (the sampler's permutation), the
DataLoader draws its worker seeds from its own generator (not the global RNG), and a resumed run skips
the batches of the current epoch that were already consumed and restores every RNG; on CPU a run killed
at any point and resumed from its last checkpoint ends with bit-identical weights to an uninterrupted run.

**Frozen backbone.** With ``model.freeze_backbone`` and ``train.cache_features`` the backbone features of
each split are computed once (:mod:`ssuper_lib.features`) and steps call ``model.encode_features``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from collections import defaultdict, deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .. import __version__
from ..config import ConfigError, ExperimentConfig, config_to_dict, load_config, resolve_device, resolve_path, save_config
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
from ..runs import (
    CHECKPOINT_VERSION,
    find_checkpoint,
    load_checkpoint,
    load_run,
    make_run_dir,
    read_metrics,
    run_checkpoint,
)
from ..storage import atomic_torch_save

__all__ = [
    "CHECKPOINT_VERSION",
    "RunResult",
    "NonFiniteLossError",
    "train",
    "load_run",
    "load_checkpoint",
    "find_checkpoint",
    "make_run_dir",
    "resolve_device",
    "read_metrics",
    "data_overrides",
    "VAEObjective",
    "GANObjective",
    "CAObjective",
    "main",
]

N_FIXED = 8  # fixed sequences in the sample sheet and in the fixed-sample reconstruction error
N_GRID = 32  # prior samples in the fixed latent grid

# Test aids (read only here): sleep this many seconds after each step, so a test can SIGKILL a run mid-way;
# write each rank's final weight hash into this folder, so a test can compare DDP ranks.
ENV_STEP_SLEEP = "SSUPER_TRAIN_STEP_SLEEP"
ENV_HASH_DIR = "SSUPER_TRAIN_HASH_DIR"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss, the step and the last good checkpoint."""


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path | None  # the run directory (None on ranks other than 0)
    step: int  # optimisation steps done in total
    metrics: dict[str, float] = field(default_factory=dict)  # last window's loss means and last eval values
    checkpoint: Path | None = None  # the last checkpoint written


# --------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this call initialised the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _init_distributed(cfg: ExperimentConfig) -> _Dist:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK); single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, True)


def _broadcast_object(obj: Any, d: _Dist) -> Any:
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _broadcast_tensors(tensors: list[torch.Tensor], d: _Dist) -> None:
    if d.active:
        for t in tensors:
            dist.broadcast(t.data, src=0)


def _allreduce_grads(params: list[torch.nn.Parameter], d: _Dist) -> None:
    """Average the gradients of ``params`` over ranks (one flat all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not d.active or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


# --------------------------------------------------------------------------------------------------
# Device, precision
# --------------------------------------------------------------------------------------------------


def _cuda_determinism(deterministic: bool) -> None:
    """cuDNN autotuning for speed, or (``train.deterministic``) deterministic kernels only: then two runs of
    a seed, and a resumed run, give the same weights on a GPU too (CPU runs always do). The deterministic
    switches are process-wide; they are only ever turned on here, never off behind the user's back."""
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.use_deterministic_algorithms(True, warn_only=True)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 where the GPU supports it (``auto``), fp16 on request (GPU only). On CPU only
    an explicit ``bf16`` enables autocast (slower than fp32 on most CPUs; useful to test the AMP path)."""
    if amp == "none":
        return None
    if device.type != "cuda":
        if amp == "fp16":
            raise ConfigError("train.amp=fp16 needs a CUDA device (its gradient scaler is CUDA-only); use bf16 or none")
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


# --------------------------------------------------------------------------------------------------
# Run directories, checkpoints, RNG states
# --------------------------------------------------------------------------------------------------

def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG this process uses, as tensors and primitives (``weights_only`` loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore the RNG streams of a checkpoint (its tensors may have been mapped to a GPU with the checkpoint)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].cpu().numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
         npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (permutation = f(seed, epoch), sharded by rank) that can skip the first
    ``skip`` samples of this rank's shard: a resumed run continues mid-epoch exactly where it stopped."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def _masked_index(cfg: ExperimentConfig) -> int:
    """Index of the masked panel along S: last in chronological order, first in masked_first order."""
    return 0 if cfg.data.panel_order == "masked_first" else -1


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------------


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
        self.mi = _masked_index(cfg)

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

    def elbo(self, batch: dict[str, Any], step: int):
        """Sample z ~ q(z | panels) (z = mu with ``train.sample_z: false``), generate, and the ELBO parts:
        (fake, loss, recon, kl, kl_weight)."""
        mu, log_sigma = self.encode(batch)
        z = reparameterize(mu, log_sigma) if self.tc.sample_z else mu  # (B, latent)
        fake = self.model.generate(z)  # (B, 3, 64, 64)
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
    """SSuperVAE: minimise recon + KL with one Adam over every trainable parameter (REFERENCE.md 2.2)."""

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
    """SSuperGAN and SSuperGlobalGAN (REFERENCE.md 2.3, 2.4): D step, then G and E against the new D."""

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
    """SSuperVAE + contextual-attention refinement with WGAN-GP critics (REFERENCE.md 1.15, 2.5)."""

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
        from ..models.exemplar import selection_target

        tc, model = self.tc, self.model
        face = batch["face"]  # (B, 3, 64, 64)
        with self.autocast():
            mu, log_sigma = self.encode(batch)
            z = reparameterize(mu, log_sigma)  # (B, latent)
            out = model.exemplar_forward(z, batch)
            fake = out["face"]
            recon = reconstruction_loss(fake, face, tc.recon_loss)
            if tc.inject_nan_at == step + 1:
                recon = recon * float("nan")
            kl = kl_normal(mu, log_sigma)
            kl_w = kl_anneal_weight(step, tc.kl_weight, tc.kl_anneal_steps)
            target = selection_target(batch["cand_face"], batch["cand_valid"].bool(), model.null_face.detach(), face,
                                      model.cfg.exemplar_target_size)
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


# --------------------------------------------------------------------------------------------------
# Fixed samples: sample sheets and reconstruction error on fixed data
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def reconstruct_batch(model, batch: dict[str, Any], masked_index: int) -> dict[str, torch.Tensor]:
    """G(mu) for a batch (cached features or panels), and the refined face for the contextual-attention variant."""
    mu, _ = model.encode_features(batch["feats"]) if "feats" in batch else model.encode(batch["panels"])
    face = model.generate_for(mu, batch)
    out = {"recon": face.float()}
    if getattr(model, "refiner", None) is not None:
        out["fine"] = model.refine(batch["panels"][:, masked_index], face, batch["mask"], batch["mask_coords"])["fine_face"].float()
    return out


@torch.no_grad()
def validation_error(model, val_ds: Dataset, cfg: ExperimentConfig, device: torch.device, batch_size: int = 64,
                     generator: torch.Generator | None = None) -> float:
    """Mean squared error per pixel of the evaluated face (G(mu); the refined face for CA) over the validation split.

    The loader's iterator draws its base seed from ``generator``, or from the global RNG when None (as every
    validation always has: the training stream after it depends on that draw)."""
    loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, num_workers=0, generator=generator)
    total, n = 0.0, 0
    mi = _masked_index(cfg)
    for batch in loader:
        batch = _to_device(batch, device)
        rec = reconstruct_batch(model, batch, mi)
        img = rec.get("fine", rec["recon"])
        total += float(((img - batch["face"].float()) ** 2).flatten(1).mean(1).sum())
        n += img.shape[0]
    return total / max(n, 1)


class ShuffledContext(Dataset):
    """``ds`` with the context of each sample taken from a sample of another series (its panels, or their
    cached features), the masked panel kept: what the model draws without the right context. The partners
    come from :func:`ssuper_lib.evaluate.derangement_across_groups` (seeded) and the swap is
    :func:`ssuper_lib.evaluate.swap_context`, as in the evaluation."""

    def __init__(self, ds: Dataset, series: Sequence[str], masked_index: int, seed: int = 0):
        from ..data.shuffle import derangement_across_groups

        self.ds, self.mi = ds, masked_index
        self.partners = derangement_across_groups(series, seed)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from ..data.shuffle import swap_context

        item, other = dict(self.ds[i]), self.ds[int(self.partners[i])]
        key = "feats" if "feats" in item else "panels"
        item[key] = swap_context(item[key], other[key], self.mi)
        return item


def _sample_series(ds: Dataset) -> list[str] | None:
    """The series of each sample of a panel dataset (or of the one a feature dataset wraps); None if unknown."""
    base = getattr(ds, "base", None)
    base = ds if base is None else base
    samples = getattr(base, "samples", None)
    return [s.series for s in samples] if samples is not None and len(samples) == len(ds) else None


class FixedSamples:
    """Fixed latent grid + fixed train/test sequences, used for sample sheets and the fixed-sample error."""

    def __init__(self, model, cfg: ExperimentConfig, train_ds: Dataset, val_ds: Dataset | None,
                 device: torch.device, use_features: bool):
        from torch.utils.data import default_collate

        gen = torch.Generator().manual_seed(cfg.seed)
        self.z = torch.randn(N_GRID, model.latent_dim, generator=gen).to(device)  # fixed latent grid
        self.device = device
        self.use_features = use_features
        self.mi = _masked_index(cfg)
        self.batches: dict[str, dict[str, Any]] = {}
        for split, ds in (("train", train_ds), ("val", val_ds)):
            if ds is None or len(ds) == 0:
                continue
            n = min(N_FIXED, len(ds))
            batch = _to_device(default_collate([ds[i] for i in range(n)]), device)
            if use_features and "feats" not in batch:
                with torch.no_grad():
                    was = model.training
                    model.eval()
                    batch["feats"] = model.backbone_features(batch["panels"]).float()
                    model.train(was)
            self.batches[split] = batch

    def reconstruct(self, model, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return reconstruct_batch(model, batch, self.mi)

    @torch.no_grad()
    def errors(self, model) -> dict[str, float]:
        """Mean squared error per pixel of G(mu) (and of the refined face) on the fixed sequences."""
        out = {}
        for split, batch in self.batches.items():
            rec = self.reconstruct(model, batch)
            for key, img in rec.items():
                out[f"fixed_{split}_{key}_mse"] = float(((img - batch["face"].float()) ** 2).mean())
        return out

    @torch.no_grad()
    def save_sheets(self, model, folder: Path, step: int) -> list[Path]:
        """``prior_<step>.png`` (fixed latent grid) and ``recon_<step>.png`` (panels | truth | reconstruction)."""
        from PIL import Image
        from torchvision.utils import make_grid

        import torch.nn.functional as F

        folder.mkdir(parents=True, exist_ok=True)

        def to_uint8(grid: torch.Tensor) -> Image.Image:
            arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            return Image.fromarray(arr)

        paths = []
        prior = model.generate(self.z).float()
        path = folder / f"prior_{step:07d}.png"
        to_uint8(make_grid(prior, nrow=8, padding=2, pad_value=1.0)).save(path)
        paths.append(path)
        batch = self.batches.get("val") or self.batches.get("train")
        if batch is not None and "panels" in batch:
            rec = self.reconstruct(model, batch)
            cell = min(128, batch["panels"].shape[-2])
            cols = [batch["panels"][:, j] for j in range(batch["panels"].shape[1])]  # each (n, 3, H, W)
            cols += [batch["face"]] + [rec[k] for k in ("recon", "fine") if k in rec]
            cols = [F.interpolate(c.float(), size=(cell, cell), mode="bilinear", align_corners=False) for c in cols]
            tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (n * ncols, 3, cell, cell), row-major
            path = folder / f"recon_{step:07d}.png"
            to_uint8(make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)).save(path)
            paths.append(path)
        return paths


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def _build_datasets(cfg, model, device, d: _Dist, progress: bool):
    """Train/test datasets; with a frozen backbone and caching, wrapped around cached features."""
    from ..data.datasets import PanelSequenceDataset
    from ..data.features import FeatureDataset, load_or_compute_features

    variant = cfg.model.variant
    needs_panels = variant in ("ssuperglobalgan", "ssupervae_ca")
    gt_panel = variant == "ssupervae_ca"
    train_ds = PanelSequenceDataset.from_config(cfg.data, split="train", return_gt_panel=gt_panel)
    # the test split is never read while training: sample sheets, validation errors and early stopping use "val"
    val_ds = PanelSequenceDataset.from_config(cfg.data, split="val", return_gt_panel=gt_panel)
    if len(train_ds) == 0:
        raise ValueError(
            f"the training split is empty ({resolve_path(cfg.data.sequence_path)}); run the preprocessing "
            "(python -m ssuper_lib.preprocess) or check data.sequence_path and the split"
        )
    train_seq = train_ds
    use_features = bool(cfg.model.freeze_backbone and cfg.train.cache_features)
    info: dict[str, Any] = {"use_features": use_features}
    if use_features:
        # rank 0 computes and writes the cache; the others read it after the barrier
        cached = None
        if d.main:
            cached = load_or_compute_features(model, train_ds, cfg, "train", device, progress=progress, write=True)
        if d.active:
            dist.barrier()
        if not d.main:
            cached = load_or_compute_features(model, train_ds, cfg, "train", device, progress=False, write=False)
        info.update(feature_cache=str(cached.path), feature_seconds=round(cached.seconds, 2), feature_computed=cached.computed)
        train_ds = FeatureDataset(cached, base=train_ds if needs_panels else None)
        if len(val_ds) and cfg.train.val_every > 0:
            vc = load_or_compute_features(model, val_ds, cfg, "val", device, progress=progress and d.main, write=d.main)
            val_ds = FeatureDataset(vc, base=val_ds)
    if variant == "ssuper_exemplar":  # context exemplars: candidates and queries, cached beside the sequences
        from ..preprocess.exemplars import ExemplarDataset, load_or_build_exemplars

        mc = cfg.model
        val_seq = val_ds.base if isinstance(val_ds, FeatureDataset) else val_ds
        train_ds, val_ds = (
            ExemplarDataset(ds, load_or_build_exemplars(cfg.data, seq.samples, mc.exemplar_k, mc.exemplar_ctx_size,
                                                        progress=progress, write=d.main))
            for ds, seq in ((train_ds, train_seq), (val_ds, val_seq))
        )
    return train_ds, val_ds, info


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train ``cfg`` and return a :class:`RunResult`.

    ``run_dir``: write into this folder (default: a new ``<out_dir>/<NNNNN>-<name>/``, or the resumed run's).
    ``callback(record)`` is called on rank 0 with every record written to ``metrics.jsonl``
    (``record["kind"]`` is ``train`` or ``eval``) and with ``{"kind": "samples", "step", "paths"}``.
    Raises :class:`NonFiniteLossError` when a loss becomes NaN/inf (the last checkpoint is kept).
    """
    from tqdm.auto import tqdm

    from ..data.features import FeatureDataset
    from ..models.ssuper import build_model

    if cfg.train.val_select == "context" and cfg.train.val_every <= 0:
        raise ConfigError("train.val_select=context selects checkpoints at validations: set train.val_every > 0")
    d = _init_distributed(cfg)
    try:
        tc = cfg.train
        device = resolve_device(tc.device, d.local_rank)
        amp_dtype = _amp_dtype(tc.amp, device)
        if device.type == "cuda":
            _cuda_determinism(tc.deterministic)

        # ---- resume point and run directory (rank 0 decides, everyone agrees)
        ckpt_path = find_checkpoint(tc.resume, tc.out_dir, cfg.name) if tc.resume else None
        if d.main:
            if run_dir is not None:
                run_dir = Path(run_dir)
                run_dir.mkdir(parents=True, exist_ok=True)
            elif ckpt_path is not None and ckpt_path.parent.name == "checkpoints":
                run_dir = ckpt_path.parent.parent
            else:
                run_dir = make_run_dir(tc.out_dir, cfg.name)
        run_dir = Path(_broadcast_object(str(run_dir) if run_dir is not None else None, d))

        # ---- seeds, model
        _seed_everything(cfg.seed + d.rank)
        model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).to(device)
        if tc.channels_last:
            model.channels_last()
        _broadcast_tensors(list(model.state_dict().values()), d)  # every rank starts from rank 0's weights

        # ---- data
        train_ds, val_ds, data_info = _build_datasets(cfg, model, device, d, progress and d.main)
        val_eval, val_shuffled = val_ds, None  # what validation reads; the same with shuffled context
        if isinstance(val_ds, FeatureDataset) and cfg.model.variant in ("ssupervae", "ssupergan"):
            val_eval = FeatureDataset(val_ds.cached)  # cached features and faces: no panel decoding
        if val_ds is not None and len(val_ds) and tc.val_every > 0 and cfg.model.variant != "ssuper_exemplar":
            series = _sample_series(val_ds)
            if series is not None and len(set(series)) > 1:
                val_shuffled = ShuffledContext(val_eval, series, _masked_index(cfg), cfg.seed)
        if tc.val_select == "context" and val_shuffled is None:
            raise ConfigError("train.val_select=context needs validation (train.val_every > 0) on at least two "
                              "series (data.val_series >= 2); the exemplar variant has its own selection (use mse)")
        sampler = ResumableSampler(train_ds, d.world_size, d.rank, seed=cfg.seed, shuffle=True)
        drop_last = sampler.num_samples >= tc.batch_size
        steps_per_epoch = sampler.num_samples // tc.batch_size if drop_last else math.ceil(sampler.num_samples / tc.batch_size)
        total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * steps_per_epoch
        workers = 0 if (data_info["use_features"] and cfg.model.variant in ("ssupervae", "ssupergan", "ssuper_exemplar")) else tc.num_workers
        loader = DataLoader(
            train_ds, batch_size=tc.batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
            persistent_workers=workers > 0 and not cfg.data.augment,  # workers must see set_epoch
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed + d.rank),  # worker seeds; never the global RNG
        )

        objective = OBJECTIVES[cfg.model.variant](model, cfg, device, amp_dtype, d, total_steps)
        fixed = FixedSamples(model, cfg, train_ds, val_ds, device, data_info["use_features"]) if d.main else None

        # ---- seed the training stream itself (independent of setup: cache hit or miss, eval batches)
        _seed_everything(cfg.seed + d.rank)

        # ---- resume
        step = 0
        if ckpt_path is not None:
            ckpt = load_checkpoint(ckpt_path, map_location=device)
            _check_compatible(cfg, ckpt, ckpt_path)
            model.load_state_dict(ckpt["models"]["model"])
            objective.load_state_dict(ckpt)
            step = int(ckpt["step"])
            rng = ckpt["rng"]
            _set_rng_state(rng[min(d.rank, len(rng) - 1)], device)
            if d.main:
                _truncate_metrics(run_dir / "metrics.jsonl", step)
        if d.main:
            save_config(cfg, run_dir / "config.yaml")
        metrics_file = open(run_dir / "metrics.jsonl", "a") if d.main else None

        def emit(record: dict[str, Any]) -> None:
            if metrics_file is not None:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            if callback is not None and d.main:
                callback(record)

        def evaluate_and_sample() -> None:
            if fixed is None:
                return
            model.eval()
            errs = fixed.errors(model)
            paths = fixed.save_sheets(model, run_dir / "samples", step)
            model.train()
            emit({"kind": "eval", "step": step, "epoch": step // steps_per_epoch, "time": round(time.time() - t_start, 3), **errs})
            last_eval.update(errs)
            if callback is not None:
                callback({"kind": "samples", "step": step, "paths": [str(p) for p in paths]})

        last_ckpt: Path | None = ckpt_path
        last_ckpt_step = step if ckpt_path is not None else -1
        val_state: dict[str, Any] = {"best": float("inf"), "best_step": None, "bad": 0}
        if ckpt_path is not None and isinstance(ckpt.get("val"), dict):
            if ckpt.get("config", {}).get("train", {}).get("val_select", "mse") == tc.val_select:
                val_state.update(ckpt["val"])  # another criterion's best would not compare: start its record afresh

        def save_checkpoint(name: str = "latest") -> None:
            nonlocal last_ckpt, last_ckpt_step
            rngs = [_rng_state(device)]
            if d.active:
                rngs = [None] * d.world_size
                dist.all_gather_object(rngs, _rng_state(device))
                rngs = [{k: (v.cpu() if torch.is_tensor(v) else v) for k, v in r.items()} for r in rngs]
            if d.main:
                payload = {
                    "version": CHECKPOINT_VERSION,
                    "library_version": __version__,
                    "models": {"model": model.state_dict()},
                    **objective.state_dict(),
                    "step": step,
                    "epoch": step // steps_per_epoch,
                    "batch_in_epoch": step % steps_per_epoch,
                    "world_size": d.world_size,
                    "config": config_to_dict(cfg),
                    "rng": rngs,
                    "val": dict(val_state),
                }
                path = run_dir / "checkpoints" / f"{name}.pt"
                atomic_torch_save(payload, path)  # temporary file, then os.replace
                if name == "latest":
                    last_ckpt, last_ckpt_step = path, step
            elif name == "latest":
                last_ckpt_step = step

        def validate() -> bool:
            """Validation error on the whole validation split (rank 0); keeps best.pt; True = stop early."""
            stop = False
            if d.main and val_ds is not None and len(val_ds):
                model.eval()
                err = validation_error(model, val_eval, cfg, device)
                record: dict[str, Any] = {"val_mse": err}
                if val_shuffled is not None:  # label-free context gain: how much worse a wrong context makes it
                    # own generator: this diagnostic pass must not move the training RNG stream
                    record["val_mse_shuffled"] = validation_error(model, val_shuffled, cfg, device,
                                                                  generator=torch.Generator())
                    record["val_context_gain"] = record["val_mse_shuffled"] - err
                model.train()
                crit = err if tc.val_select == "mse" else -record["val_context_gain"]
                improved = crit < val_state["best"]
                if improved:
                    val_state.update(best=crit, best_step=step, bad=0)
                else:
                    val_state["bad"] += 1
                emit({"kind": "val", "step": step, **record, "val_select": tc.val_select, "best_val": val_state["best"],
                      "best_step": val_state["best_step"]})
                last_eval.update(record)
                stop = tc.early_stop_patience > 0 and val_state["bad"] >= tc.early_stop_patience
            if d.active:
                stop = bool(_broadcast_object(stop, d))
            if tc.keep_best and val_state.get("best_step") == step:
                save_checkpoint("best")
            return stop

        model.train()
        t_start = time.time()
        last_eval: dict[str, float] = {}
        if d.main and step > 0:
            emit({"kind": "resume", "step": step, "checkpoint": str(ckpt_path), "world_size": d.world_size,
                  "total_steps": total_steps})
        if d.main and step == 0:
            emit({"kind": "start", "step": 0, "world_size": d.world_size, "device": str(device),
                  "amp": str(amp_dtype), "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, **data_info})
            evaluate_and_sample()

        window: dict[str, list[float]] = defaultdict(list)
        running: dict[str, deque] = defaultdict(lambda: deque(maxlen=50))
        t_window, n_window = time.time(), 0
        sleep = float(os.environ.get(ENV_STEP_SLEEP, "0") or 0)
        bar = tqdm(total=total_steps, initial=step, disable=not (progress and d.main), desc=cfg.name, dynamic_ncols=True)
        last_losses: dict[str, float] = {}
        try:
            while step < total_steps:
                epoch, batch_in_epoch = divmod(step, steps_per_epoch)
                sampler.set_position(epoch, batch_in_epoch * tc.batch_size)
                for ds in (train_ds, getattr(train_ds, "base", None)):  # augmentation draws of this epoch
                    if hasattr(ds, "set_epoch"):
                        ds.set_epoch(epoch)
                for batch in loader:
                    batch = _to_device(batch, device)
                    losses = objective.step(batch, step)
                    step += 1
                    if d.active:  # DDP's broadcast_buffers: batch-norm statistics follow rank 0
                        _broadcast_tensors(list(model.buffers()), d)
                    for k, v in losses.items():
                        window[k].append(v)
                        running[k].append(v)
                    n_window += 1
                    bar.update(1)
                    if step % 10 == 0 or step == total_steps:
                        bar.set_postfix({k: f"{sum(v) / len(v):.3g}" for k, v in running.items() if k != "kl_weight"})
                    if step % tc.log_every == 0 or step == total_steps:
                        dt = max(time.time() - t_window, 1e-9)
                        last_losses = {k: sum(v) / len(v) for k, v in window.items()}
                        emit({"kind": "train", "step": step, "epoch": epoch, "time": round(time.time() - t_start, 3),
                              "samples_per_s": round(n_window * tc.batch_size * d.world_size / dt, 2),
                              "lr": objective.lr(), **last_losses})
                        window.clear()
                        t_window, n_window = time.time(), 0
                    if tc.sample_every > 0 and step % tc.sample_every == 0 and step != total_steps:
                        evaluate_and_sample()
                    stop_early = tc.val_every > 0 and step % tc.val_every == 0 and validate()
                    if tc.ckpt_every > 0 and step % tc.ckpt_every == 0 or stop_early:
                        save_checkpoint()
                    if sleep > 0:
                        time.sleep(sleep)
                    if stop_early:
                        if d.main:
                            emit({"kind": "early_stop", "step": step, "best_step": val_state["best_step"],
                                  "val_select": tc.val_select, "best_val": val_state["best"]})
                        total_steps = step
                    if step >= total_steps:
                        break
        except NonFiniteLossError as exc:
            where = f"the last good checkpoint is {last_ckpt} (step {last_ckpt_step})" if last_ckpt else "no checkpoint was written yet"
            if metrics_file is not None:
                metrics_file.close()
            raise NonFiniteLossError(f"{exc} (epoch {step // steps_per_epoch}); training stopped, {where}") from None
        finally:
            bar.close()
            if metrics_file is not None and not metrics_file.closed:
                metrics_file.flush()

        if last_ckpt_step != step:
            save_checkpoint()
        evaluate_and_sample()
        if d.main:  # a finished run (max steps or early stop) says so; an interrupted one has no done.json
            (run_dir / "done.json").write_text(json.dumps({"step": step, "best_step": val_state["best_step"],
                                                           "val_select": tc.val_select, "best_val": val_state["best"]}))
        if metrics_file is not None:
            metrics_file.close()
        _maybe_write_hash(model, d, step, run_dir)
        return RunResult(run_dir if d.main else None, step, {**last_losses, **last_eval}, last_ckpt if d.main else None)
    finally:
        if d.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _check_compatible(cfg: ExperimentConfig, ckpt: dict[str, Any], path: Path) -> None:
    """A checkpoint resumes only into the same model on the same panel size."""
    old = ckpt.get("config", {})
    new = config_to_dict(cfg)
    diffs = [f"model.{k}" for k, v in new["model"].items() if old.get("model", {}).get(k) != v]
    if old.get("data", {}).get("panel_size") != new["data"]["panel_size"]:
        diffs.append("data.panel_size")
    if diffs:
        raise ConfigError(f"train.resume: {path} was trained with different settings for {', '.join(diffs)}; "
                          "resume with the run's own config.yaml or start a new run")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a run resumes from (a killed run may have gone on)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _maybe_write_hash(model: torch.nn.Module, d: _Dist, step: int, run_dir: Path) -> None:
    """Test aid: with $SSUPER_TRAIN_HASH_DIR set, each rank writes ``rank<r>.json`` with its weight hash."""
    folder = os.environ.get(ENV_HASH_DIR)
    if not folder:
        return
    from ..data.features import weights_fingerprint

    Path(folder).mkdir(parents=True, exist_ok=True)
    info = {"rank": d.rank, "world_size": d.world_size, "step": step, "sha256": weights_fingerprint(model), "run_dir": str(run_dir)}
    (Path(folder) / f"rank{d.rank}.json").write_text(json.dumps(info))


def data_overrides(root: str | Path) -> list[str]:
    """Dotted overrides that point every ``data.*`` path at a dataset root in the synthetic/COMICS layout."""
    root = resolve_path(root)
    gt = root / "ground_truth.csv"
    return [
        f"data.panel_path={root / 'panels'}",
        f"data.annot_path={root / 'annotations'}",
        f"data.sequence_path={root / 'sequences.json'}",
        f"data.faces_path={root / 'faces'}",
        f"data.ground_truth_path={gt if gt.is_file() else 'null'}",
    ]


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssuper_lib.train",
        description="Train an SSuperGAN variant (single process, or under torchrun for several GPUs/processes).",
    )
    parser.add_argument("config", help="YAML config, e.g. configs/models/demo_plain_ssupergan.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 train.resume=auto")
    parser.add_argument("--run-dir", default=None, help="write into this run directory instead of a new one")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, run_dir=args.run_dir, progress=not args.no_progress)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.run_dir is not None:
        print(f"finished {result.step} steps; run directory {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
