"""Memory-allocator settings for CPU tensors, applied once when ``ssuper_lib`` is imported.

On glibc, a block above the ``mmap`` threshold (at most 32 MiB) gets fresh pages from the kernel on every
allocation and returns them when freed. The kit's CPU work allocates such blocks all the time (a Lite0
activation at 160 px and batch 96 is 75 MiB; a training step frees and re-allocates its activations), so
each allocation pays its page faults again: out-of-place element-wise kernels and the zero padding of the
backbone then take most of their time faulting pages in. :func:`keep_freed_memory` tells glibc to serve
every block from the heap and to keep freed memory for the next allocation instead. Values do not change;
measured on 2 cores (docs/performance.md): the frozen Lite0 caches features about 2x faster, a demo
training step is about 1.4x faster.

The cost: the process keeps the memory it has freed (its resident size stays at its peak until it exits),
as PyTorch's CUDA allocator does on a GPU. ``SSUPER_MALLOC=system`` (or any ``MALLOC_MMAP_MAX_``,
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` of your own in the environment) leaves glibc's
defaults alone. Elsewhere than glibc on Linux nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ENV_MALLOC", "keep_freed_memory", "allocator_state"]

ENV_MALLOC = "SSUPER_MALLOC"  # "system": leave the C allocator's defaults alone
_USER_KNOBS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_TRIM_NEVER = 2**31 - 1  # mallopt takes an int: the largest keeps up to 2 GiB of free heap top untrimmed

_state = {"applied": False, "why": "not tried"}


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory (glibc ``mallopt``); True when applied.
    Idempotent; see the module docstring for when it does nothing."""
    if _state["applied"]:
        return True
    if os.environ.get(ENV_MALLOC, "").strip().lower() == "system":
        _state["why"] = f"{ENV_MALLOC}=system"
        return False
    own = [k for k in _USER_KNOBS if k in os.environ]
    if own:
        _state["why"] = f"the environment sets {', '.join(own)}"
        return False
    if not sys.platform.startswith("linux"):
        _state["why"] = "not Linux"
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _state["why"] = "no glibc mallopt"
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER) != 1:
        _state["why"] = "mallopt refused"
        return False
    _state.update(applied=True, why="applied")
    return True


def allocator_state() -> dict:
    """{"applied": bool, "why": str}: whether :func:`keep_freed_memory` changed the allocator, and why not."""
    return dict(_state)
