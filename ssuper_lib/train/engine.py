"""The engine under the objectives: the process group, the device's precision and determinism, batches.

Multi-process data parallelism with ``torch.distributed`` (gloo on CPU, nccl on GPUs): parameters start
identical (broadcast from rank 0) and **gradients are all-reduced before every optimiser step**, the way
StyleGAN2/3 train their GANs. ``DistributedDataParallel``'s reducer assumes one forward/backward per
parameter set per iteration, while these objectives run several backward passes over overlapping
parameter subsets per iteration (D, then G, then E, with ``backward(inputs=...)``); an explicit
all-reduce keeps this exact and readable. Batch-norm buffers are broadcast from rank 0 after every step
(DDP's ``broadcast_buffers`` behaviour).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..config import ConfigError, ExperimentConfig

__all__ = ["_Dist", "_init_distributed", "_broadcast_object", "_broadcast_tensors", "_allreduce_grads",
           "_cuda_determinism", "_amp_dtype", "_to_device"]


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


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
