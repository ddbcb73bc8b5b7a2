"""A label-free identity metric for real COMICS, where characters have no labels.

On synthetic data identity is measured with a character classifier trained on ground truth
(:mod:`ssuper_lib.identity.classifier`). The COMICS panels have no character labels, so this metric uses the
Siamese cartoon-face embedding (:mod:`ssuper_lib.models.siamese`, trained by
:mod:`ssuper_lib.identity.siamese_training`) instead: for each test sample, the generated face, the true
(masked) face and K candidate faces that *cannot* show the same character - faces from other series - are
embedded, and

* **top-1 retrieval**: the true face is the generated face's nearest among {true face} + K candidates;
* **reciprocal rank**: 1 / rank of the true face in that list (mean over samples: MRR);
* **verification**: sim(generated, true) > sim(generated, one random candidate) (chance 50%).

Faces of the same series are never candidates: they may show the same character, which would punish a correct
generation. Candidates are drawn per sample from a generator seeded by ``(seed, sample index)``, so every
model and baseline is scored against the same candidates. Similarity is minus the Euclidean distance of the
embeddings (the Siamese network is trained with a Euclidean contrastive loss). A tie counts against the
generated face (rank = 1 + number of candidates at least as close as the true face).

The metric is only as good as the embedding: :func:`validate_against_identity` reports Spearman's rho
between it and the ground-truth identity accuracy over models and baselines on synthetic data, and says
plainly when the agreement is weak.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
import torch

from ..models.siamese import SiameseNetwork, embed_faces

__all__ = [
    "embed",
    "label_free_identity",
    "label_free_identity_from_embeddings",
    "spearman_rho",
    "validate_against_identity",
    "SUMMARY_KEYS",
    "simulated_generators",
    "metric_validation_table",
    "plot_metric_validation",
]

SUMMARY_KEYS = ("lf_top1", "lf_mrr", "lf_verify")
Embedder = Union[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def label_free_identity_from_embeddings(
    generated: torch.Tensor | np.ndarray,
    true: torch.Tensor | np.ndarray,
    series: Sequence[str],
    candidates: torch.Tensor | np.ndarray,
    candidate_series: Sequence[str],
    k: int = 20,
    seed: int = 0,
) -> dict:
    """The metric on embeddings: ``generated`` and ``true`` (N, D), ``candidates`` (M, D), series ids (N,) / (M,).

    Returns ``{"per_sample": DataFrame, "summary": dict}``. ``per_sample`` has one row per sample: ``rank``,
    ``top1``, ``reciprocal_rank``, ``verified``, ``n_candidates``, ``dist_true`` (generated to true),
    ``dist_random`` (generated to the random candidate) - NaN where a sample has no candidate from another
    series. ``summary``: ``lf_top1``, ``lf_mrr``, ``lf_verify`` (means over samples with candidates), ``lf_k``,
    ``lf_n`` (samples scored), ``lf_skipped`` (samples without candidates), ``lf_chance_top1`` (1 / (K + 1)).
    """
    import pandas as pd

    g, t, c = _as_numpy(generated), _as_numpy(true), _as_numpy(candidates)
    series = np.asarray([str(s) for s in series])
    cser = np.asarray([str(s) for s in candidate_series])
    n = len(g)
    if len(t) != n or len(series) != n:
        raise ValueError(f"label_free_identity: {n} generated, {len(t)} true faces and {len(series)} series ids must match")
    if len(c) != len(cser):
        raise ValueError(f"label_free_identity: {len(c)} candidates but {len(cser)} candidate series ids")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cols = {name: np.full(n, np.nan) for name in ("rank", "reciprocal_rank", "top1", "verified", "dist_true", "dist_random")}
    n_cand = np.zeros(n, dtype=np.int64)
    pools: dict[str, np.ndarray] = {}
    for i in range(n):
        s = series[i]
        if s not in pools:
            pools[s] = np.flatnonzero(cser != s)  # other series only: same-series faces may be the same character
        pool = pools[s]
        if len(pool) == 0:
            continue
        rng = np.random.default_rng([seed, i])
        pick = rng.choice(pool, size=min(k, len(pool)), replace=False)  # pick[0] is the "random candidate"
        d_true = float(np.linalg.norm(g[i] - t[i]))
        d_cand = np.linalg.norm(c[pick] - g[i], axis=1)  # (k,)
        rank = 1 + int(np.sum(d_cand <= d_true))
        n_cand[i] = len(pick)
        cols["rank"][i] = rank
        cols["reciprocal_rank"][i] = 1.0 / rank
        cols["top1"][i] = float(rank == 1)
        cols["verified"][i] = float(d_true < d_cand[0])
        cols["dist_true"][i] = d_true
        cols["dist_random"][i] = float(d_cand[0])
    per = pd.DataFrame({"series": series, **cols, "n_candidates": n_cand})
    scored = n_cand > 0
    mean = (lambda col: float(np.mean(cols[col][scored])) if scored.any() else float("nan"))
    summary = {"lf_top1": mean("top1"), "lf_mrr": mean("reciprocal_rank"), "lf_verify": mean("verified"),
               "lf_k": int(k), "lf_n": int(scored.sum()), "lf_skipped": int((~scored).sum()),
               "lf_chance_top1": 1.0 / (k + 1)}
    return {"per_sample": per, "summary": summary}


def embed(embedder: Embedder, faces: torch.Tensor, batch_size: int = 256, device=None) -> torch.Tensor:
    """(N, D) embeddings of ``faces`` by a :class:`~ssuper_lib.models.siamese.SiameseNetwork` or any callable."""
    if isinstance(embedder, SiameseNetwork):
        return embed_faces(embedder, faces, batch_size=batch_size, device=device)
    with torch.no_grad():
        return torch.cat([embedder(faces[s : s + batch_size]).float().cpu() for s in range(0, len(faces), batch_size)])


def label_free_identity(
    generated: torch.Tensor,
    true: torch.Tensor,
    series: Sequence[str],
    candidates: torch.Tensor,
    candidate_series: Sequence[str],
    embedder: Embedder,
    k: int = 20,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    true_embeddings: torch.Tensor | None = None,
) -> dict:
    """The label-free identity metric on faces (see the module docstring).

    ``generated``, ``true``: (N, 3, H, W) faces of the N test samples (uint8 in [0, 255] or float in [-1, 1], the
    kit's conventions); ``series``: (N,) series id of each sample; ``candidates``: (M, 3, H, W) faces with their
    ``candidate_series`` (M,) - e.g. the true faces of all test samples; for sample i only those of another series
    are used. ``embedder``: a :class:`~ssuper_lib.models.siamese.SiameseNetwork` (faces converted to its [0, 1]
    input and size) or any callable ``faces -> (B, D)``. ``true_embeddings``: the embedder's output for ``true``
    when already known (the rows of one results table share their true faces). Returns
    :func:`label_free_identity_from_embeddings`'s dict.
    """
    gen_e = embed(embedder, generated, batch_size, device)
    true_e = embed(embedder, true, batch_size, device) if true_embeddings is None else true_embeddings
    cand_e = true_e if candidates is true else embed(embedder, candidates, batch_size, device)
    return label_free_identity_from_embeddings(gen_e, true_e, series, cand_e, candidate_series, k=k, seed=seed)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long lists (pairs with a NaN are dropped; ties get average
    ranks). NaN with fewer than 3 pairs or when either list is constant."""
    from scipy.stats import rankdata

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman_rho: lengths differ ({len(a)} vs {len(b)})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def validate_against_identity(rows: Sequence[dict], metric: str = "lf_top1", reference: str = "id_acc",
                              weak_below: float = 0.5) -> dict:
    """Spearman's rho between ``metric`` and the ground-truth identity accuracy ``reference`` over result rows
    (models and baselines on synthetic data). Returns ``{"rho", "n", "weak", "text"}``; ``weak`` when
    |rho| < ``weak_below`` or rho is undefined, and ``text`` says so plainly."""
    x = [r.get(metric, np.nan) for r in rows]
    y = [r.get(reference, np.nan) for r in rows]
    pairs = sum(1 for a, b in zip(x, y) if np.isfinite(float(a if a is not None else np.nan)) and
                np.isfinite(float(b if b is not None else np.nan)))
    rho = spearman_rho([np.nan if v is None else v for v in x], [np.nan if v is None else v for v in y])
    weak = not np.isfinite(rho) or abs(rho) < weak_below
    if not np.isfinite(rho):
        text = f"Spearman rho of {metric} vs {reference} is undefined ({pairs} rows with both values)"
    else:
        text = (f"Spearman rho of {metric} vs ground-truth {reference} over {pairs} models/baselines: {rho:+.2f}"
                + (" - WEAK: the label-free metric does not track identity accuracy well here" if weak else ""))
    return {"rho": rho, "n": pairs, "weak": bool(weak), "text": text}


# --------------------------------------------------------------------------------------------------
# Validation on synthetic data with generators of known identity accuracy (notebook 07)
# --------------------------------------------------------------------------------------------------


def simulated_generators(identities: Sequence[str], series: Sequence[str], mix_levels: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                         seed: int = 0) -> list[dict]:
    """Stand-in "generators" whose identity accuracy is known by construction, for validating the metric.

    Each test face i is a sample whose true face is face i. A generator returns, for each sample, the index of
    another face: with probability p (its mix level) another face of the *same character* (a correct identity
    with a different drawing), otherwise a face of a *different character of the same series* (same style,
    wrong identity - the hard case for a label-free metric; a face of another series when the series has one
    character). Plus ``other series`` (a random face of another series: always wrong). Returns
    ``[{"name", "index" (N,) int, "correct" (N,) float}]``; ``correct`` is the ground-truth identity match.
    """
    ids = np.asarray([str(s) for s in identities])
    ser = np.asarray([str(s) for s in series])
    n = len(ids)
    same_char = [np.flatnonzero((ids == ids[i]) & (np.arange(n) != i)) for i in range(n)]
    other_char_same_series = [np.flatnonzero((ser == ser[i]) & (ids != ids[i])) for i in range(n)]
    other_series = [np.flatnonzero(ser != ser[i]) for i in range(n)]
    out = []
    for p in mix_levels:
        rng = np.random.default_rng([seed, int(round(p * 1000))])
        index, correct = np.empty(n, np.int64), np.empty(n)
        for i in range(n):
            right = rng.random() < p
            pool = same_char[i] if right else (other_char_same_series[i] if len(other_char_same_series[i]) else other_series[i])
            if len(pool) == 0:  # a character seen once: its own face is the only correct drawing
                pool = np.array([i]) if right else np.array([(i + 1) % n])
            index[i] = rng.choice(pool)
            correct[i] = float(ids[index[i]] == ids[i])
        out.append({"name": f"same character with p={p:g}", "index": index, "correct": correct})
    rng = np.random.default_rng([seed, 99991])
    index = np.array([rng.choice(p) if len(p) else i for i, p in enumerate(other_series)], np.int64)
    out.append({"name": "other series", "index": index, "correct": (ids[index] == ids).astype(float)})
    return out


def metric_validation_table(embeddings: torch.Tensor | np.ndarray, identities: Sequence[str], series: Sequence[str],
                            generators: Sequence[dict], k: int = 20, seed: int = 0) -> "pandas.DataFrame":  # noqa: F821
    """One row per simulated generator: ground-truth identity accuracy ``id_acc`` beside ``lf_top1``, ``lf_mrr``,
    ``lf_verify`` computed from ``embeddings`` (N, D) of the test faces (true faces = candidates = the test set)."""
    import pandas as pd

    emb = _as_numpy(embeddings)
    rows = []
    for g in generators:
        res = label_free_identity_from_embeddings(emb[g["index"]], emb, series, emb, series, k=k, seed=seed)
        rows.append({"generator": g["name"], "id_acc": float(np.mean(g["correct"])), **res["summary"]})
    return pd.DataFrame(rows)


def plot_metric_validation(table, metrics: Sequence[str] = SUMMARY_KEYS, reference: str = "id_acc"):
    """Each label-free metric against ground-truth identity accuracy, one point per generator, with rho."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.3), squeeze=False)
    rows = table.to_dict("records")
    for ax, m in zip(axes[0], metrics):
        ax.plot(table[reference], table[m], "o")
        v = validate_against_identity(rows, metric=m, reference=reference)
        ax.set_xlabel(f"ground-truth identity accuracy ({reference})")
        ax.set_ylabel(m)
        ax.set_title(f"{m}: Spearman rho {v['rho']:+.2f}" + (" (weak)" if v["weak"] else ""), fontsize=9)
    fig.tight_layout()
    return fig
