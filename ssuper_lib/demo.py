"""The full demo pipeline behind ``make demo``: synthetic comics -> notebooks 01..06 -> figures and tables.

Each notebook is executed headlessly with papermill; its executed copy lands in
``runs/executed_notebooks/`` (the committed notebooks stay without outputs). Re-running reuses what is
already there (the synthetic data set, finished training runs) unless ``--fresh`` is given.

    python -m ssuper_lib.demo                 # what `make demo` runs
    python -m ssuper_lib.demo --fresh         # regenerate data and retrain
    python -m ssuper_lib.demo --only 05 06    # re-run some notebooks
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from .config import REPO_ROOT, load_config
from .runs import latest_run, seed_run_name

__all__ = ["DEMO_CONFIGS", "IPC_KERNEL_MANAGER", "run_demo", "main"]

# Kernels talk to papermill over local IPC sockets, not TCP: nothing listens on a port, and ipykernel has no
# reason to warn that "the kernel is running over TCP without encryption".
IPC_KERNEL_MANAGER = "ssuper_lib.demo.IPCKernelManager"


def _ipc_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """A kernel manager whose kernels use the ``ipc`` transport (Unix domain sockets).

        Each kernel's socket files get a name of their own (``kernel-ipc-<pid>-<random>-N`` in the working
        directory): jupyter_client's default ``kernel-ipc-N`` takes the first N without a file, which two
        processes starting kernels in one directory at once (``pytest -n``, or ``make demo`` beside
        ``make test``) can both pick."""

        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", f"kernel-ipc-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            super().__init__(**kwargs)

    return IPCKernelManager


def __getattr__(name: str):  # the class is built on first use: importing jupyter_client is not free
    if name == "IPCKernelManager":
        cls = _ipc_manager_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

NOTEBOOKS = REPO_ROOT / "notebooks"
EXECUTED = REPO_ROOT / "runs" / "executed_notebooks"
DATA_ROOT = "data/synthetic"
# The demo trains these variants (notebook 04 once per config and training seed); notebook 05 evaluates them
# all beside the baselines. Exemplar-SSuperGAN is the variant beyond the original (docs/exemplar.md).
DEMO_CONFIGS = (
    "configs/models/demo_plain_ssupergan.yaml",
    "configs/models/demo_bilstm_ssupergan.yaml",
    "configs/models/demo_plain_ssupervae.yaml",
    "configs/models/demo_plain_ssuper_exemplar.yaml",
)


def _notebook(prefix: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook notebooks/{prefix}_*.ipynb")
    return found[0]


def _execute(prefix: str, parameters: dict, tag: str = "") -> float:
    """Run one notebook with the subset of ``parameters`` its parameters cell declares; returns seconds."""
    import papermill as pm

    src = _notebook(prefix)
    declared = pm.inspect_notebook(str(src))
    params = {k: v for k, v in parameters.items() if k in declared}
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out = EXECUTED / (src.stem + (f"-{tag}" if tag else "") + ".ipynb")
    label = src.name + (f" [{tag}]" if tag else "")
    print(f"\n=== {label}  {params}", flush=True)
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(src), str(out), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False,
        kernel_manager_class=IPC_KERNEL_MANAGER,
    )
    dt = time.perf_counter() - t0
    print(f"=== {label} done in {dt:.0f} s (executed copy: {out.relative_to(REPO_ROOT)})", flush=True)
    return dt


def _finished_run(config: str, seed: int = 0) -> Path | None:
    """The newest run of ``config`` and training ``seed`` that finished (``done.json``: max steps or early stop), or None."""
    cfg = load_config(config)
    run = latest_run(seed_run_name(cfg.name, seed), "runs")
    if run is None:
        return None
    return run if (run / "done.json").is_file() else None


def run_demo(fresh: bool = False, only: list[str] | None = None, seed: int = 0, seeds: int = 1) -> dict[str, float]:
    """Run the pipeline; returns seconds per step. ``seeds``: training seeds per demo model (0 .. seeds-1)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    if fresh:
        for p in (REPO_ROOT / DATA_ROOT, REPO_ROOT / "runs"):
            shutil.rmtree(p, ignore_errors=True)
    common = {"data_root": DATA_ROOT, "smoke": False, "seed": seed, "reuse": not fresh}
    steps = only or ["01", "02", "03", "04", "05", "06"]
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    for step in steps:
        if step == "04":
            for train_seed in range(seeds):
                for cfg in DEMO_CONFIGS:
                    name = Path(cfg).stem + (f"_seed{train_seed}" if train_seed else "")
                    done = _finished_run(cfg, train_seed) if not fresh else None
                    if done is not None:
                        print(f"\n=== 04_training [{name}]: reusing finished run {done.relative_to(REPO_ROOT)} (FRESH=1 retrains)")
                        continue
                    # the exact-resume section extends only the first run by 100 steps (the rest: 0, a reload)
                    resume = 100 if (train_seed, cfg) == (0, DEMO_CONFIGS[0]) else 0
                    times[f"04:{name}"] = _execute("04", {**common, "config": cfg, "seed": train_seed,
                                                          "resume_steps": resume}, tag=name)
        elif step == "05":
            times["05"] = _execute("05", {**common, "configs": list(DEMO_CONFIGS), "train_seeds": seeds})
        else:
            times[step] = _execute(step, common)
    times["total"] = time.perf_counter() - t_all
    _summary(times)
    return times


def _summary(times: dict[str, float]) -> None:
    print("\n" + "=" * 72)
    print("SSuperGAN kit demo finished")
    for k, v in times.items():
        print(f"  {k:<36s} {v:7.0f} s")
    figs = sorted((REPO_ROOT / "figures").glob("*.png"))
    stats = sorted((REPO_ROOT / "data_stats").glob("*.*"))
    print(f"\nfigures/ ({len(figs)} files):")
    for f in figs:
        print(f"  {f.relative_to(REPO_ROOT)}")
    print(f"data_stats/ ({len(stats)} files):")
    for f in stats:
        print(f"  {f.relative_to(REPO_ROOT)}")
    results = REPO_ROOT / "data_stats" / "results.md"
    if results.is_file():
        print("\nResults (data_stats/results.md):\n" + results.read_text())
    print(f"Executed notebooks: {EXECUTED.relative_to(REPO_ROOT)}/   Trained runs: runs/")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", action="store_true", help="delete data/synthetic and runs/ first")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 05 06)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per demo model (docs/results.md uses 3)")
    args = ap.parse_args(argv)
    try:
        run_demo(fresh=args.fresh, only=args.only, seed=args.seed, seeds=args.seeds)
    except Exception as exc:  # papermill errors carry the failing cell's traceback
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
