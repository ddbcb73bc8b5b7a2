"""How much of the masked character's identity do the frozen backbone features carry? A closed-form readout.

The faithful demo models read frozen ImageNet features of the three panels (cached, :mod:`ssuper_lib.data.features`)
and learn only what comes after them. When such a model names the right character hardly more often with the
true context than with shuffled context, two explanations compete: the training recipe, or the features. This
probe separates them. A ridge regression from the same cached features (the three panels, pooled as the plain
and LSTM encoders read them, or the spatial maps the ConvLSTM reads) to the target face is the best *linear*
decoder of those features, fitted in closed form on the training split. Its faces are scored with the
evaluation's own code (:func:`ssuper_lib.evaluate.score_faces`): PSNR, identity accuracy with the true and with
shuffled context (the context panels of another series, the masked panel kept), series-bootstrap intervals.

If the readout gains little identity from context too, the features are the likely limit: a model trained
after them would have to beat their best linear decoder by a wide margin (docs/results.md, "What the frozen features can
carry"). Choose penalties on the validation split: it is a diagnostic.

    python -m ssuper_lib.evaluate.probe configs/models/demo_plain_ssupervae.yaml [--split val] [--spatial]
                                        [--lams 100 1000 10000] [--out data_stats/feature_probe.csv]

Pooled features are read from (or written to) the feature cache; spatial maps are computed in memory only
(about 1.4 GB for the demo's training split at 160 px, too large to be worth a cache file).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from .generate import eval_context
from .scoring import FaceScores, score_faces
from . import metrics as M
from ..config import load_config, resolve_device, resolve_path
from ..data.datasets import PanelSequenceDataset
from ..data.features import load_or_compute_features
from ..data.pixels import to_uint8
from ..data.shuffle import swap_context
from ..models import build_model
from ..runs import eval_cache_dir

__all__ = ["ridge_readouts", "feature_probe", "main"]

DEFAULT_LAMS = (1e2, 1e3, 1e4, 1e5)


def ridge_readouts(x: torch.Tensor, y: torch.Tensor, lams: Sequence[float]) -> dict[float, Callable]:
    """Fit ridge regressions ``y ~ x`` (rows are samples) for every penalty in ``lams``; returns {lam: predictor}.

    Features are standardised with the training mean and standard deviation, targets centred; the penalty
    applies to the standardised weights. The primal form solves a (D, D) system, the dual (kernel) form an
    (N, N) one, whichever is smaller (both give the same predictions); the Gram matrix is formed once, in
    float32, and the systems are solved in float64. The dual predictors keep the standardised training
    features (no (D, K) weight matrix: for spatial maps that would be 96,000 x 12,288).
    """
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"ridge_readouts: expected x (N, D) and y (N, K), got {tuple(x.shape)} and {tuple(y.shape)}")
    if any(lam <= 0 for lam in lams):
        raise ValueError(f"ridge_readouts: every lam must be > 0, got {list(lams)}")
    x, y = x.float(), y.double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    ym = y.mean(0)
    xs = (x - mu).div_(sd)
    yc = y - ym
    n, d = xs.shape
    out = {}
    if d <= n:
        gram, xty = (xs.T @ xs).double(), xs.double().T @ yc
        for lam in lams:
            w = torch.linalg.solve(gram + lam * torch.eye(d, dtype=gram.dtype), xty)  # (D, K)
            out[float(lam)] = functools.partial(_primal_predict, mu=mu, sd=sd, w=w, ym=ym)
    else:
        gram = (xs @ xs.T).double()
        for lam in lams:
            alpha = torch.linalg.solve(gram + lam * torch.eye(n, dtype=gram.dtype), yc)  # (N, K)
            out[float(lam)] = functools.partial(_dual_predict, mu=mu, sd=sd, xs=xs, alpha=alpha, ym=ym)
    return out


def _primal_predict(xn: torch.Tensor, mu, sd, w, ym) -> torch.Tensor:
    return (((xn.float() - mu) / sd).double() @ w + ym).float()


def _dual_predict(xn: torch.Tensor, mu, sd, xs, alpha, ym) -> torch.Tensor:
    k = (((xn.float() - mu) / sd) @ xs.T).double()  # (M, N) kernel against the training rows
    return (k @ alpha + ym).float()


def _features(cfg, model, split: str, spatial: bool, device) -> tuple:
    """(dataset, features (N, S, ...) float, true faces (N, 3, F, F)) of ``split`` from the frozen backbone."""
    ds = PanelSequenceDataset.from_config(cfg.data, split=split, augment=False)
    cached = load_or_compute_features(model, ds, cfg, split, device, progress=False, write=not spatial)
    return ds, cached.feats.float(), cached.faces.float()


def feature_probe(cfg, split: str = "val", lams: Sequence[float] = DEFAULT_LAMS, spatial: bool = False,
                  device: str = "cpu", seed: int = 0) -> pd.DataFrame:
    """Ridge readouts of ``cfg``'s frozen features, fitted on the training split, scored on ``split``: one row per
    penalty with PSNR, identity accuracy (true / shuffled context), the identity and PSNR context gains and their
    series-bootstrap intervals. ``cfg`` must have a frozen backbone (the features are what the models read)."""
    if not cfg.model.freeze_backbone:
        raise ValueError("feature_probe reads frozen backbone features: the config has model.freeze_backbone: false")
    if cfg.model.train_top_stages:
        raise ValueError("feature_probe reads the fully frozen features: set model.train_top_stages=0")
    dev = resolve_device(device)
    if spatial:  # the maps the ConvLSTM reads
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, spatial_features=True, seq_encoder="convlstm"))
    model = build_model(cfg.model, cfg.data.panel_size).to(dev).eval()
    _, f_tr, y_tr = _features(cfg, model, "train", spatial, dev)
    ctx = eval_context(cfg, split, None, seed, True, return_gt_panel=False)
    if ctx["partners"] is None:
        raise ValueError(f"feature_probe: {ctx['gain_reason']}")
    _, f_ev, y_ev = _features(cfg, model, split, spatial, dev)
    # the partner's context, this sample's masked panel
    f_sh = swap_context(f_ev, f_ev[ctx["partners"]], cfg.data.masked_index, dim=1)
    true_u8 = to_uint8(y_ev)
    cache_dir = eval_cache_dir(cfg)  # the evaluation's identity classifiers
    rows = []
    dims = f_tr[0].numel()
    readouts = ridge_readouts(f_tr.flatten(1), y_tr.flatten(1), lams)
    del f_tr  # the readouts keep their own standardised copy
    for lam, predict in readouts.items():
        gen = predict(f_ev.flatten(1)).view_as(y_ev).clamp(-1, 1)
        shuf = predict(f_sh.flatten(1)).view_as(y_ev).clamp(-1, 1)
        psnr, ssim = M.psnr_per_image(gen, y_ev), M.ssim_per_image(gen, y_ev)
        psnr_s, ssim_s = M.psnr_per_image(shuf, y_ev), M.ssim_per_image(shuf, y_ev)
        scores = FaceScores(true_u8, to_uint8(gen), psnr, ssim, to_uint8(shuf), psnr_s, ssim_s)
        row, _ = score_faces(scores, ctx, seed=seed, n_boot=cfg.eval.n_bootstrap, cache_dir=cache_dir)
        keep = {k: v for k, v in row.items() if k.split("_lo")[0].split("_hi")[0] in
                ("psnr", "id_acc", "id_acc_shuffled", "gain_id", "gain_psnr")}
        rows.append({"data": resolve_path(cfg.data.sequence_path).parent.name, "backbone": cfg.model.backbone,
                     "panel_size": "x".join(map(str, cfg.data.panel_size)),
                     "features": "spatial" if spatial else "pooled", "dims": dims, "lam": float(lam),
                     "split": split, "n": len(y_ev), "n_series": row["n_series"], **keep})
    return pd.DataFrame(rows)


def _fmt(df: pd.DataFrame) -> str:
    def ci(r, k, pct=False):
        if k not in r or pd.isna(r.get(k)):
            return "-"
        s = 100.0 if pct else 1.0
        return f"{s * r[k]:.{1 if pct else 2}f} [{s * r[k + '_lo']:.{1 if pct else 2}f}, {s * r[k + '_hi']:.{1 if pct else 2}f}]"

    lines = []
    for _, r in df.iterrows():
        ident = "-" if "id_acc" not in r or pd.isna(r.get("id_acc")) else \
            f"{100 * r['id_acc']:.1f} / {100 * r['id_acc_shuffled']:.1f}"
        lines.append(f"{r['panel_size']} {r['features']:8s} lam {r['lam']:<8g} PSNR {ci(r, 'psnr')}  identity true/shuffled % {ident}  "
                     f"identity gain pp {ci(r, 'gain_id', pct=True)}  PSNR gain dB {ci(r, 'gain_psnr')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a model config with a frozen backbone (e.g. configs/models/demo_plain_ssupervae.yaml)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    p.add_argument("--split", default="val", choices=["val", "test"], help="split to score (default val)")
    p.add_argument("--spatial", action="store_true", help="read the spatial feature maps instead of pooled features")
    p.add_argument("--lams", type=float, nargs="+", default=list(DEFAULT_LAMS), help="ridge penalties")
    p.add_argument("--seed", type=int, default=0, help="shuffling, bootstrap and identity-classifier seed")
    p.add_argument("--out", default=None, help="CSV to append the rows to")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    df = feature_probe(cfg, a.split, a.lams, a.spatial, seed=a.seed)
    df.insert(0, "config", Path(a.config).stem)
    print(_fmt(df))
    if a.out:
        out = Path(a.out)
        if out.is_file():
            df = pd.concat([pd.read_csv(out), df], ignore_index=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.round(5).to_csv(out, index=False)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
