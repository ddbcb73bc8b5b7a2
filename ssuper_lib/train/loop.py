"""Training engine of the kit: the SSuperGAN objectives in one loop, on CPU, one GPU or many.

    python -m ssuper_lib.train configs/models/demo_plain_ssupergan.yaml train.max_steps=3000
    torchrun --nproc_per_node=4 -m ssuper_lib.train configs/models/bilstm_ssupergan.yaml
    python -m ssuper_lib.train CONFIG train.resume=runs/00003-demo_plain_ssupergan   # or train.resume=auto

From a notebook: ``result = train(cfg, callback=fn)``; ``cfg, model = load_run(result.run_dir)``.

The parts: :mod:`.objectives` (one class per variant, docs/original.md 2), :mod:`.engine` (process group,
precision), :mod:`.data` (datasets, resumable sampler), :mod:`.state` (step, RNG states, checkpoints,
exact resume), :mod:`.monitor` (metrics.jsonl, sample sheets, validation, early stopping, best.pt).

**Defects of the original fixed here** (docs/original.md 8; each is a line in docs/differences.md):

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
GPUs): a ``DistributedSampler`` shards the data and gradients are all-reduced before every optimiser step.

**Run directories** ``<train.out_dir>/<NNNNN>-<name>/``: ``config.yaml`` (resolved), ``metrics.jsonl``,
``samples/``, ``checkpoints/latest.pt`` and ``previous.pt`` (the one it replaced; resuming falls back to it when
``latest.pt`` does not load), ``best.pt`` with ``train.keep_best``, ``done.json`` once the run has finished. A run
that fails before its first step leaves no run directory behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError, ExperimentConfig, resolve_device, save_config
from ..models import build_model
from ..progress import progress_bar
from ..runs import find_checkpoint, make_run_dir
from .data import ResumableSampler, _build_datasets, _train_loader
from .engine import _amp_dtype, _broadcast_object, _broadcast_tensors, _cuda_determinism, _Dist, _init_distributed, _to_device
from .monitor import FixedSamples, LossWindow, MetricsLog, Monitor, validation_sets
from .objectives import OBJECTIVES, NonFiniteLossError, Objective
from .state import TrainState, _maybe_write_hash, _seed_everything
from .tensorboard_log import open_tensorboard, tensorboard_enabled

__all__ = ["RunResult", "train", "ENV_STEP_SLEEP"]

# Test aid (read only here): sleep this many seconds after each step, so a test can SIGKILL a run mid-way.
ENV_STEP_SLEEP = "SSUPER_TRAIN_STEP_SLEEP"


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path | None  # the run directory (None on ranks other than 0)
    step: int  # optimisation steps done in total
    metrics: dict[str, float] = field(default_factory=dict)  # last window's loss means and last eval values
    checkpoint: Path | None = None  # the last checkpoint written


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
    if cfg.train.val_select == "context" and cfg.train.val_every <= 0:
        raise ConfigError("train.val_select=context selects checkpoints at validations: set train.val_every > 0")
    tensorboard_enabled(cfg.train.tensorboard)  # train.tensorboard=true without the package: an error before any work
    d = _init_distributed(cfg)
    fresh = _FreshRun()  # a run directory made here is removed again when the run fails before its first step
    try:
        tc = cfg.train
        device = resolve_device(tc.device, d.local_rank)
        amp_dtype = _amp_dtype(tc.amp, device)
        if device.type == "cuda":
            _cuda_determinism(tc.deterministic)

        # ---- resume point and run directory (rank 0 decides, everyone agrees)
        ckpt_path = find_checkpoint(tc.resume, tc.out_dir, cfg.name) if tc.resume else None
        run_dir = _run_directory(cfg, run_dir, ckpt_path, d, fresh)

        # ---- seeds, model
        _seed_everything(cfg.seed + d.rank)
        model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).to(device)
        if tc.channels_last:
            model.channels_last()
        _broadcast_tensors(list(model.state_dict().values()), d)  # every rank starts from rank 0's weights

        # ---- data, objective, fixed samples
        train_ds, val_ds, data_info = _build_datasets(cfg, model, device, d, progress and d.main)
        val_eval, val_shuffled = validation_sets(cfg, val_ds)  # what validation reads; the same with shuffled context
        sampler, loader, steps_per_epoch, total_steps = _train_loader(cfg, train_ds, data_info["use_features"], d, device)
        objective = OBJECTIVES[cfg.model.variant](model, cfg, device, amp_dtype, d, total_steps)
        fixed = FixedSamples(model, cfg, train_ds, val_ds, device, data_info["use_features"]) if d.main else None

        # ---- seed the training stream itself (independent of setup: cache hit or miss, eval batches)
        _seed_everything(cfg.seed + d.rank)

        # ---- resume, metrics, monitor
        state = fresh.state = TrainState(cfg, model, objective, device, d, run_dir, steps_per_epoch)
        ckpt_path = state.restore(ckpt_path)  # latest.pt, or previous.pt when latest.pt does not load
        fresh.start = state.step
        if d.main:
            save_config(cfg, run_dir / "config.yaml")
        model.train()
        log = MetricsLog(run_dir / "metrics.jsonl" if d.main else None, callback, d.main,
                         open_tensorboard(cfg, run_dir, state.step) if d.main else None)
        monitor = Monitor(cfg, model, d, device, log, fixed, val_ds, val_eval, val_shuffled, run_dir, steps_per_epoch)
        monitor.start(state, ckpt_path, total_steps, amp_dtype, data_info)

        # ---- the loop
        try:
            last_losses = _run_steps(cfg, objective, state, monitor, loader, sampler, train_ds, total_steps, progress)
        except NonFiniteLossError as exc:
            log.close()
            raise NonFiniteLossError(f"{exc} (epoch {state.step // steps_per_epoch}); training stopped, "
                                     f"{state.last_good()}") from None
        finally:
            log.flush()

        if state.last_ckpt_step != state.step:
            state.save()
        monitor.evaluate_and_sample(state.step)
        if d.main:  # a finished run (max steps or early stop) says so; an interrupted one has no done.json
            best = state.val["best"] if math.isfinite(state.val["best"]) else None  # strict JSON: no Infinity
            (run_dir / "done.json").write_text(json.dumps({"step": state.step, "best_step": state.val["best_step"],
                                                           "val_select": tc.val_select, "best_val": best}, allow_nan=False))
        log.close()
        _maybe_write_hash(model, d, state.step, run_dir)
        return RunResult(run_dir if d.main else None, state.step, {**last_losses, **monitor.last_eval},
                         state.last_ckpt if d.main else None)
    except BaseException:
        fresh.discard_if_unstarted()
        raise
    finally:
        if d.owns_group and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _FreshRun:
    """The run directory one call of :func:`train` made (None: it resumes or writes into an existing one), and
    where the run stands; a run that fails before its first step leaves no directory behind."""

    path: Path | None = None
    state: TrainState | None = None
    start: int | None = None  # the step the run started from (set once its checkpoint, if any, is loaded)

    def discard_if_unstarted(self) -> None:
        if self.path is not None and (self.state is None or self.start is None or self.state.step <= self.start):
            shutil.rmtree(self.path, ignore_errors=True)


def _run_directory(cfg: ExperimentConfig, run_dir: str | Path | None, ckpt_path: Path | None, d: _Dist,
                   fresh: _FreshRun) -> Path:
    """The run directory, decided by rank 0 and broadcast: ``run_dir`` when given, the resumed run's, or a new one
    (``fresh.path`` when this call made it)."""
    if d.main:
        if run_dir is not None:
            run_dir = Path(run_dir)
            fresh.path = None if run_dir.exists() else run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
        elif ckpt_path is not None and ckpt_path.parent.name == "checkpoints":
            run_dir = ckpt_path.parent.parent
        else:
            run_dir = fresh.path = make_run_dir(cfg.train.out_dir, cfg.name)
    return Path(_broadcast_object(str(run_dir) if run_dir is not None else None, d))


def _run_steps(cfg: ExperimentConfig, objective: Objective, state: TrainState, monitor: Monitor, loader: DataLoader,
               sampler: ResumableSampler, train_ds: Dataset, total_steps: int, progress: bool) -> dict[str, float]:
    """Optimisation steps from ``state.step`` to ``total_steps`` (or early stopping), with the train lines,
    sheets, validations and checkpoints on their schedules; returns the last window's loss means."""
    tc, d, model, device, steps_per_epoch = cfg.train, state.dist, state.model, state.device, state.steps_per_epoch
    window = LossWindow()
    sleep = float(os.environ.get(ENV_STEP_SLEEP, "0") or 0)
    bar = progress_bar(total=total_steps, initial=state.step, disable=not (progress and d.main), desc=f"train {cfg.name}",
                       unit="step", samples_per_step=tc.batch_size * d.world_size, dynamic_ncols=True)
    try:
        while state.step < total_steps:
            epoch, batch_in_epoch = divmod(state.step, steps_per_epoch)
            sampler.set_position(epoch, batch_in_epoch * tc.batch_size)
            for ds in (train_ds, getattr(train_ds, "base", None)):  # augmentation draws of this epoch
                if hasattr(ds, "set_epoch"):
                    ds.set_epoch(epoch)
            for batch in loader:
                batch = _to_device(batch, device)
                losses = objective.step(batch, state.step)
                state.step += 1
                step = state.step
                if d.active:  # DDP's broadcast_buffers: batch-norm statistics follow rank 0
                    _broadcast_tensors(list(model.buffers()), d)
                window.add(losses)
                bar.update(1)
                if step % 10 == 0 or step == total_steps:
                    bar.set_postfix(window.postfix(), refresh=False)
                if step % tc.log_every == 0 or step == total_steps:
                    window.emit(monitor.log, step, epoch, tc.batch_size * d.world_size, objective.lr())
                if tc.sample_every > 0 and step % tc.sample_every == 0 and step != total_steps:
                    monitor.evaluate_and_sample(step)
                stop_early = tc.val_every > 0 and step % tc.val_every == 0 and monitor.validate(state)
                if tc.ckpt_every > 0 and step % tc.ckpt_every == 0 or stop_early:
                    state.save()
                if sleep > 0:
                    time.sleep(sleep)
                if stop_early:
                    if d.main:
                        monitor.log.emit({"kind": "early_stop", "step": step, "best_step": state.val["best_step"],
                                          "val_select": tc.val_select, "best_val": state.val["best"]})
                    total_steps = step
                if step >= total_steps:
                    break
    finally:
        bar.close()
    return window.last
