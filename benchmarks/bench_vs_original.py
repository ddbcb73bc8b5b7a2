"""Side by side with the original SSuperGAN code: one training iteration and the panel loader.

    python benchmarks/bench_vs_original.py --original /tmp/orig_ssuper          # both parts
    SSUPER_ORIGINAL_REPO=/tmp/orig_ssuper python benchmarks/bench_vs_original.py --parts train --pairs 12
    python benchmarks/bench_vs_original.py      # no original given: prints why and skips (exit 0)

The original (github.com/barisbatuhan/SSuperGAN, HEAD 4a877af) is never part of the kit: get a snapshot
yourself into a folder outside the repository and give its path. Nothing in that folder is modified; the
only shims, applied at run time inside the original's worker process, are what stop it on a CPU:
``.cuda()`` is a no-op, ``torch.cuda.FloatTensor(size)`` is ``torch.empty(size)``,
``EfficientNet.from_pretrained`` is ``from_name`` (random weights: speed does not depend on them), and
``configs.base_config.base_dir`` points at a temporary folder (the original resolves it from the author's
home directories). ``save_samples`` at the end of the original's epoch loop is a no-op (not part of an
iteration).

Method. Each side runs in its own spawned worker process with the same thread count
(``torch.set_num_threads``); the parent asks one worker at a time to run, so only one computes at any
moment. Rounds alternate which side goes first (kit, original / original, kit, ...). After warm-up
rounds, each pair gives a speed ratio kit/original = t_original / t_kit; the table reports the median of
the pairs with its inter-quartile range. Peak RSS is each worker's ``ru_maxrss`` at the end (imports, model,
optimiser state and the iterations; both workers do the same work apart from the code under test).

* ``train``: the README config (Bi-LSTM SSuperGAN, EfficientNet-B5, 300x300 panels, batch 2, embed 1024,
  latent 512, LSTM hidden 512, CPU, random weights, no feature cache), on one identical random batch.
  Kit: ``ssuper_lib.train.GANObjective.step`` (D step, G and E steps). Original: its own
  ``SSuperDCGANTrainer.train_ssuper_dcgan`` over a one-batch loader (E, D and G updates).
* ``loader``: ``PanelSequenceDataset`` against the original's ``GoldenPanelsDataset`` reading the same
  sequence JSON (the kit writes the original's format) and the same JPEG files at 300x300, the same
  random order of samples in both, ``num_workers=0``, one thread each, page cache warm after warm-up.

Writes ``data_stats/bench_vs_original.csv`` (benchmark, value, unit, detail; this script's rows replaced)
and ``data_stats/vs_original_pairs.csv`` (every timed pair).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "data_stats" / "bench_vs_original.csv"
PAIRS_CSV = REPO / "data_stats" / "vs_original_pairs.csv"  # not bench_*.csv, which run_all.py tables
ENV = "SSUPER_ORIGINAL_REPO"

# the README config, as the kit's dotted overrides and as the original's SSuperDCGAN arguments
KIT_CONFIG = "configs/models/bilstm_ssupergan.yaml"
KIT_OVERRIDES = ["model.pretrained=false", "model.freeze_backbone=false", "train.batch_size=2",
                 "data.panel_size=[300,300]"]
ORIG_ARGS = dict(backbone="efficientnet-b5", embed_dim=1024, latent_dim=512, panel_size=(300, 300), img_size=64,
                 use_lstm=True, lstm_bidirectional=True, lstm_hidden=512, masked_first=True, seq_size=3,
                 gen_channels=64, local_disc_channels=64)
BATCH, LR, GRAD_CLIP = 2, 2e-4, 100.0


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB (Linux)


def _original_shims(orig: Path, tmp: Path) -> None:
    """Run-time shims that let the original import and run on a CPU (its files are not touched)."""
    import torch

    sys.path.insert(0, str(orig))
    base = types.ModuleType("configs.base_config")
    base.base_dir = str(tmp) + "/"
    sys.modules["configs.base_config"] = base
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.FloatTensor = lambda *size: torch.empty(*size)

    from efficientnet_pytorch import EfficientNet

    def from_pretrained(cls, model_name, weights_path=None, advprop=False, in_channels=3, num_classes=1000, **kw):
        return cls.from_name(model_name, in_channels=in_channels, num_classes=num_classes, **kw)

    EfficientNet.from_pretrained = classmethod(from_pretrained)


# --------------------------------------------------------------------------------------------------
# Workers: build once, then time one unit of work per request
# --------------------------------------------------------------------------------------------------


def _train_worker(side: str, conn, orig: str, batch_path: str, threads: int, tmp: str) -> None:
    import torch

    torch.set_num_threads(threads)
    batch = torch.load(batch_path)
    if side == "kit":
        sys.path.insert(0, str(REPO))
        from ssuper_lib.config import load_config
        from ssuper_lib.models import build_model
        from ssuper_lib.train import OBJECTIVES, _Dist

        cfg = load_config(REPO / KIT_CONFIG, KIT_OVERRIDES)
        torch.manual_seed(0)
        model = build_model(cfg.model, panel_size=tuple(cfg.data.panel_size)).train()
        objective = OBJECTIVES[cfg.model.variant](model, cfg, torch.device("cpu"), None, _Dist(), 10**6)
        kit_batch = {"panels": batch["panels"], "face": batch["face"]}
        state = {"i": 0}

        def work() -> None:
            objective.step(kit_batch, state["i"])
            state["i"] += 1
    else:
        _original_shims(Path(orig), Path(tmp))
        import torch.nn as nn
        from torch import optim

        from networks.models import SSuperDCGAN
        from training.ssuper_dcgan_trainer import SSuperDCGANTrainer

        torch.manual_seed(0)
        net = SSuperDCGAN(**ORIG_ARGS).train()
        net.save_samples = lambda *a, **k: None  # end-of-epoch sample sheet: not part of an iteration
        opt_e = optim.Adam(net.seq_encoder.parameters(), lr=LR)
        opt_d = optim.Adam(net.local_discriminator.parameters(), lr=LR, betas=(0.5, 0.999))
        opt_g = optim.Adam(net.generator.parameters(), lr=LR, betas=(0.5, 0.999))
        trainer = SSuperDCGANTrainer(net, "bench", nn.BCELoss, [[batch["panels"], batch["face"]]], None, 1,
                                     opt_e, opt_g, opt_d, quiet=True, grad_clip=GRAD_CLIP, save_dir=str(tmp) + "/")
        state = {"i": 0}

        def work() -> None:
            trainer.train_ssuper_dcgan(state["i"])
            state["i"] += 1
    _serve(conn, work)


def _loader_worker(side: str, conn, orig: str, root: str, threads: int, tmp: str, order: list[int]) -> None:
    import torch

    torch.set_num_threads(threads)
    root = Path(root)
    if side == "kit":
        sys.path.insert(0, str(REPO))
        from ssuper_lib.data.comics import read_sequences
        from ssuper_lib.data.datasets import PanelSequenceDataset

        ds = PanelSequenceDataset(root / "panels", read_sequences(root / "sequences.json"), (300, 300), 64)
    else:
        _original_shims(Path(orig), Path(tmp))
        from data.datasets.golden_panels import GoldenPanelsDataset

        # shuffle=False: the order comes from `order`, the same for both sides; ratio 1.0: every series is "train"
        ds = GoldenPanelsDataset(str(root / "panels"), str(root / "sequences.json"), (300, 300), 64, shuffle=False,
                                 augment=False, mask_val=1, train_test_ratio=1.0, train_mode=True)

    def work() -> None:
        for i in order:
            ds[i]

    _serve(conn, work)


def _serve(conn, work) -> None:
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg == "stop":
            conn.send({"peak_rss_gb": _peak_rss_gb()})
            return
        t0, c0 = time.perf_counter(), time.process_time()
        work()
        conn.send((time.perf_counter() - t0, time.process_time() - c0))


def _interleave(procs: dict, rounds: int, warmup: int) -> list[dict]:
    """Alternate requests between the workers; returns one record per timed pair."""
    pairs = []
    for r in range(warmup + rounds):
        order = ["kit", "original"] if r % 2 == 0 else ["original", "kit"]
        t, c = {}, {}
        for side in order:
            procs[side][1].send("go")
            t[side], c[side] = procs[side][1].recv()
        if r >= warmup:
            pairs.append({"pair": r - warmup, "first": order[0], "kit_s": t["kit"], "original_s": t["original"],
                          "ratio": t["original"] / t["kit"], "kit_cpu_s": c["kit"], "original_cpu_s": c["original"],
                          "cpu_ratio": c["original"] / c["kit"], "load1": os.getloadavg()[0]})
            print(f"  pair {r - warmup}: kit {t['kit']:.3f} s ({c['kit']:.2f} CPU s), original {t['original']:.3f} s "
                  f"({c['original']:.2f} CPU s), kit/original speed {t['original'] / t['kit']:.2f} "
                  f"(CPU {c['original'] / c['kit']:.2f})", flush=True)
    return pairs


def _start(target, args_by_side: dict) -> dict:
    ctx = mp.get_context("spawn")
    procs = {}
    for side, args in args_by_side.items():
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(side, child, *args), daemon=True)
        p.start()
        procs[side] = (p, parent)
    for side, (p, conn) in procs.items():
        msg = conn.recv()
        assert msg == "ready", f"{side} worker: {msg}"
    return procs


def _stop(procs: dict) -> dict:
    out = {}
    for side, (p, conn) in procs.items():
        conn.send("stop")
        out[side] = conn.recv()["peak_rss_gb"]
        p.join(timeout=60)
    return out


def _summary(pairs: list[dict]) -> dict:
    r = np.array([p["ratio"] for p in pairs])
    rc = np.array([p["cpu_ratio"] for p in pairs])
    return {"median": float(np.median(r)), "q1": float(np.percentile(r, 25)), "q3": float(np.percentile(r, 75)),
            "min": float(r.min()), "max": float(r.max()), "n": len(r),
            "cpu_median": float(np.median(rc)), "cpu_q1": float(np.percentile(rc, 25)), "cpu_q3": float(np.percentile(rc, 75)),
            "kit_s": statistics.median(p["kit_s"] for p in pairs),
            "original_s": statistics.median(p["original_s"] for p in pairs),
            "kit_cpu_s": statistics.median(p["kit_cpu_s"] for p in pairs),
            "original_cpu_s": statistics.median(p["original_cpu_s"] for p in pairs),
            "load": statistics.median(p["load1"] for p in pairs)}


# --------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------


def bench_train(orig: Path, tmp: Path, pairs: int, warmup: int, threads: int, host: str) -> tuple[list[dict], list[dict]]:
    import torch

    g = torch.Generator().manual_seed(0)
    batch = {"panels": torch.rand(BATCH, 3, 3, 300, 300, generator=g) * 2 - 1,  # (B, S, 3, H, W) in [-1, 1]
             "face": torch.rand(BATCH, 3, 64, 64, generator=g) * 2 - 1}  # (B, 3, 64, 64)
    path = tmp / "batch.pt"
    torch.save(batch, path)
    print(f"train: {pairs} pairs after {warmup} warm-up rounds, {threads} threads each", flush=True)
    procs = _start(_train_worker, {s: (str(orig), str(path), threads, str(tmp)) for s in ("kit", "original")})
    rec = _interleave(procs, pairs, warmup)
    rss = _stop(procs)
    s = _summary(rec)
    method = (f"README config (Bi-LSTM SSuperGAN, EfficientNet-B5, 300x300, batch 2, random weights, no feature cache), "
              f"CPU, {threads} threads each side; one iteration = kit GANObjective.step vs original "
              f"SSuperDCGANTrainer.train_ssuper_dcgan on one identical batch; spawned workers, one computing at a time, "
              f"{s['n']} interleaved pairs after {warmup} warm-up rounds; {host}")
    rows = [
        {"benchmark": "vs_original_train_speed_ratio", "value": round(s["median"], 2), "unit": "x (kit/original)",
         "detail": f"median of pairs t_orig/t_kit (wall), IQR {s['q1']:.2f}-{s['q3']:.2f}, range {s['min']:.2f}-{s['max']:.2f}; "
                   f"median load average {s['load']:.1f}; {method}"},
        {"benchmark": "vs_original_train_cpu_ratio", "value": round(s["cpu_median"], 2), "unit": "x (kit/original)",
         "detail": f"the same pairs in process CPU seconds (less sensitive to other jobs), IQR {s['cpu_q1']:.2f}-{s['cpu_q3']:.2f}"},
        {"benchmark": "vs_original_train_s_per_iter_kit", "value": round(s["kit_s"], 3), "unit": "s/iteration",
         "detail": f"median over the pairs (wall); {s['kit_cpu_s']:.2f} CPU s"},
        {"benchmark": "vs_original_train_s_per_iter_original", "value": round(s["original_s"], 3), "unit": "s/iteration",
         "detail": f"median over the pairs (wall); {s['original_cpu_s']:.2f} CPU s"},
        {"benchmark": "vs_original_train_peak_rss_kit", "value": round(rss["kit"], 2), "unit": "GiB",
         "detail": "ru_maxrss of the kit worker (model, optimisers, all iterations)"},
        {"benchmark": "vs_original_train_peak_rss_original", "value": round(rss["original"], 2), "unit": "GiB",
         "detail": "ru_maxrss of the original's worker (model, optimisers, all iterations)"},
    ]
    return rows, [{"part": "train", **p} for p in rec]


def bench_loader(orig: Path, tmp: Path, pairs: int, warmup: int, data: Path | None, per_round: int, host: str
                 ) -> tuple[list[dict], list[dict]]:
    import json

    if data is None:
        sys.path.insert(0, str(REPO))
        from ssuper_lib.config import DataConfig
        from ssuper_lib.data.synthetic import generate
        from ssuper_lib.preprocess import run_preprocessing

        data = tmp / "synthetic"
        generate(data, n_series=8, seed=0)
        cfg = DataConfig(panel_path=str(data / "panels"), annot_path=str(data / "annotations"),
                         sequence_path=str(data / "sequences.json"), faces_path=str(tmp / "faces"),
                         ground_truth_path=None, panel_size=[300, 300])
        run_preprocessing(cfg, progress=False, write_faces=False)
    n = len(json.loads((data / "sequences.json").read_text()))
    order = np.random.default_rng(0).permutation(n)[:per_round].tolist()
    print(f"loader: {n} sequences in {data}; {per_round} samples per round, {pairs} pairs after {warmup} warm-up rounds",
          flush=True)
    procs = _start(_loader_worker, {s: (str(orig), str(data), 1, str(tmp), order) for s in ("kit", "original")})
    rec = _interleave(procs, pairs, warmup)
    _stop(procs)
    s = _summary(rec)
    method = (f"same sequence JSON and JPEG panels (synthetic COMICS layout), 300x300 panels + 64x64 face, "
              f"num_workers=0, 1 thread each, {per_round} samples per round in the same random order; spawned workers, "
              f"one computing at a time, {s['n']} interleaved pairs after {warmup} warm-up rounds; {host}")
    rows = [
        {"benchmark": "vs_original_loader_speed_ratio", "value": round(s["median"], 2), "unit": "x (kit/original)",
         "detail": f"PanelSequenceDataset vs GoldenPanelsDataset samples/s, median of pairs (wall), IQR {s['q1']:.2f}-{s['q3']:.2f}, "
                   f"range {s['min']:.2f}-{s['max']:.2f}; median load average {s['load']:.1f}; {method}"},
        {"benchmark": "vs_original_loader_cpu_ratio", "value": round(s["cpu_median"], 2), "unit": "x (kit/original)",
         "detail": f"the same pairs in process CPU seconds, IQR {s['cpu_q1']:.2f}-{s['cpu_q3']:.2f}"},
        {"benchmark": "vs_original_loader_samples_per_s_kit", "value": round(per_round / s["kit_s"], 1), "unit": "samples/s",
         "detail": "median over the pairs"},
        {"benchmark": "vs_original_loader_samples_per_s_original", "value": round(per_round / s["original_s"], 1),
         "unit": "samples/s", "detail": "median over the pairs"},
    ]
    return rows, [{"part": "loader", **p} for p in rec]


def _merge(csv: Path, rows: list[dict], key: str) -> pd.DataFrame:
    new = pd.DataFrame(rows)
    if csv.is_file():
        old = pd.read_csv(csv)
        new = pd.concat([old[~old[key].isin(new[key])], new], ignore_index=True)
    csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv.with_name(csv.name + ".tmp")
    new.to_csv(tmp, index=False)
    os.replace(tmp, csv)
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", default=os.environ.get(ENV), help=f"snapshot of the original repository (or ${ENV})")
    p.add_argument("--parts", nargs="*", default=["train", "loader"], choices=["train", "loader"])
    p.add_argument("--pairs", type=int, default=10, help="timed pairs per part")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per part")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads, each side (train)")
    p.add_argument("--data", default=None, help="dataset root with panels/ and sequences.json (loader; default: "
                                                "8 synthetic series in a temporary folder)")
    p.add_argument("--per-round", type=int, default=40, help="samples per loader round")
    p.add_argument("--quick", action="store_true", help="4 pairs, 1 warm-up round")
    a = p.parse_args(argv)
    if not a.original:
        print(f"bench_vs_original: skipped: no snapshot of the original code given (--original PATH or ${ENV}); "
              "fetch github.com/barisbatuhan/SSuperGAN into a folder outside the repository to run it")
        return 0
    orig = Path(a.original).resolve()
    if not (orig / "training" / "ssuper_dcgan_trainer.py").is_file():
        print(f"bench_vs_original: {orig} does not look like the original repository "
              "(no training/ssuper_dcgan_trainer.py)", file=sys.stderr)
        return 2
    if a.quick:
        a.pairs, a.warmup = 4, 1
    host = f"{platform.node()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start)"
    rows, pairs = [], []
    with tempfile.TemporaryDirectory(prefix="bench_vs_original_") as tmp:
        tmp = Path(tmp)
        if "train" in a.parts:
            r, pr = bench_train(orig, tmp, a.pairs, a.warmup, a.threads, host)
            rows += r
            pairs += pr
        if "loader" in a.parts:
            data = Path(a.data).resolve() if a.data else None
            r, pr = bench_loader(orig, tmp, a.pairs, a.warmup, data, a.per_round, host)
            rows += r
            pairs += pr
    _merge(CSV, rows, "benchmark")
    pdf = pd.DataFrame(pairs)
    if PAIRS_CSV.is_file():
        old = pd.read_csv(PAIRS_CSV)
        pdf = pd.concat([old[~old["part"].isin(pdf["part"])], pdf], ignore_index=True)
    pdf.round(4).to_csv(PAIRS_CSV, index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 110):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
