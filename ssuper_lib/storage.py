"""Atomic writes of torch files, and safe reads of them.

:func:`atomic_torch_save` writes a temporary file ``.<name>.tmp<pid>`` in the same folder, flushes it to disk
(``fsync``), then ``os.replace``s it over the target and syncs the folder, so a reader, a run killed mid-write
or a power loss never sees a half-written checkpoint or cache. With ``previous`` the file being replaced is
kept under that name (a hard link, or a rename where the file system has none). :func:`remove_stale_temporaries`
deletes the temporary files of writers that died. :func:`safe_torch_load` loads with ``weights_only=True`` and
turns every failure (empty, truncated, damaged or untrusted file) into one :class:`CheckpointError` line that
names the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "RESUME_HINT", "atomic_torch_save", "remove_stale_temporaries", "safe_torch_load"]

_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class CheckpointError(ValueError):
    """A torch file that cannot be loaded: empty, truncated, damaged, or holding more than tensors and plain data."""


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _keep_previous(path: Path, previous: Path) -> None:
    """``previous`` becomes the file now at ``path`` (a hard link: ``path`` stays in place throughout)."""
    link = previous.with_name(f".{previous.name}.tmp{os.getpid()}")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links here: move it (resume then falls back to ``previous``)
        os.replace(path, previous)


def atomic_torch_save(obj: Any, path: str | os.PathLike, previous: str | os.PathLike | None = None) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and durably (parent folders created); returns the path.

    ``previous``: keep the file ``path`` held until now under this name (its previous version)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if previous is not None and path.is_file():
            _keep_previous(path, Path(previous))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp<pid>`` files beside ``path`` whose writing process no longer runs; returns them."""
    path = Path(path)
    prefix = f".{path.name}.tmp"
    removed = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.iterdir():
        pid = p.name[len(prefix):]
        if p.name.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


RESUME_HINT = "resume from the previous checkpoint (checkpoints/previous.pt) or another run"


def _load_failure(path: Path, exc: BaseException, hint: str) -> str:
    """One line on why ``path`` did not load and what to do (never torch's advice to turn ``weights_only`` off)."""
    text = str(exc)
    if "Weights only load failed" in text:
        m = _UNSAFE_GLOBAL.search(text)
        what = f" (it names {m.group(1)})" if m else ""
        return (f"{path}: refused: the file holds Python objects beyond tensors and plain data{what}, which could run "
                f"code when loaded; use a file of tensors only (a state_dict, or a checkpoint the kit wrote)")
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    if size == 0:
        return f"{path}: empty file (0 bytes), not a torch file; {hint}"
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"{path}: cannot be read, the file is truncated or damaged ({reason}); {hint}"


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu", hint: str = RESUME_HINT, **kwargs) -> Any:
    """``torch.load(path, weights_only=True)``; an existing file that does not load raises :class:`CheckpointError`,
    one line naming the file and ending with ``hint`` (what to do)."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True, **kwargs)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of an existing file becomes one line naming it
        raise CheckpointError(_load_failure(path, exc, hint)) from None
