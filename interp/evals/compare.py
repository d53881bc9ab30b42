"""Compare two models layer by layer with ITDA Jaccard similarity and the usual baselines.

Follows the layer-similarity experiments of Leask et al. (ITDA, ICML 2025), extended to models
with different tokenizers:

- **Alignment.** Two caches of the same text are aligned on shared character boundaries: a
  token of model A is paired with the token of model B that ends at the same character of the
  same document (``(doc_id, char_end)``). Only such positions are used, by every measure and
  for both models, so both dictionaries are built from the same set of candidate keys in the
  same order. This approximates the paper's setting (both models read the same token stream) but
  is not it: the two models' tokens end at different characters (only the shared ends are used;
  ``boundary_overlap`` reports which share that is) and packing starts each row of context at a
  different character for each tokenizer, so a paired token may have seen different preceding
  text. Where several tokens end at one character (byte pieces of one character) the last is used;
  special tokens are never used.
- **ITDA.** One dictionary per layer of each model, built over the aligned positions; layer x
  layer Jaccard within each model and between the models by the span key ``(doc, char_end)``,
  and the model-level similarity (union over layers, layer 0 left out). Beside each A-vs-B
  Jaccard: its ceiling and the Jaccard normalised by it (``similarity.span_jaccard``). As the
  dictionaries are built on aligned rows only, every atom's key is a token end in both streams
  and the ceiling is 1 here; the boundary overlap is the share of each stream left out.
- **Baselines** on a random subset of the aligned positions: linear CKA, SVCCA, relative
  representations (``interp.evals.similarity``).
- **Layer matching.** For each layer of one model, its most similar layer in the other; whether
  that is monotone in depth; the relative-depth layer-matching score (exact and within one layer).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from interp.activations import ActivationCache
from interp.decomposers.itda import ITDA, cache_labels
from interp.evals.similarity import (
    best_matches,
    boundary_keys,
    boundary_overlap,
    feature_similarities,
    jaccard_matrix,
    layer_features,
    layer_matching_score,
    model_similarity,
    span_jaccard,
    span_jaccard_matrices,
)


def aligned_rows(labels_a: np.ndarray, labels_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat token rows of A and B that end at the same character of the same document, paired
    and ordered by ``(doc_id, char_end)``. Labels are ``cache_labels`` arrays ``[T, 4]``."""

    def table(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero((labels[:, 3] >= 0) & (labels[:, 1] >= 0))[::-1]  # last piece first
        keys = (labels[rows, 0] << 32) | labels[rows, 3]
        keys, first = np.unique(keys, return_index=True)
        return keys, rows[first]

    (ka, ra), (kb, rb) = table(labels_a), table(labels_b)
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    return ra[ia], rb[ib]


def layer_rows(cache: ActivationCache, site: str, rows: np.ndarray) -> torch.Tensor:
    """Activations ``[len(rows), D]`` of ``site`` at flat token ``rows`` (float32)."""
    flat = cache.activations(site).reshape(-1, cache.width(site))
    return flat[torch.from_numpy(np.ascontiguousarray(rows))].float()


def fit_layers(
    cache: ActivationCache,
    sites: Sequence[str],
    rows: np.ndarray,
    labels: np.ndarray,
    itda: dict[str, Any],
    progress: bool = True,
) -> list[ITDA]:
    """One ITDA per site over the given token rows (in the given order)."""
    bs = itda.get("batch_size", 4096)
    lab = torch.from_numpy(labels)
    out = []
    for site in sites:
        pairs = ((layer_rows(cache, site, rows[a : a + bs]), lab[rows[a : a + bs]]) for a in range(0, len(rows), bs))
        out.append(ITDA.fit(pairs, site=site, model=cache.manifest["model"], progress=progress, **itda))
    return out


def _model_ceiling(
    da: Sequence[ITDA], db: Sequence[ITDA], bound_a: np.ndarray, bound_b: np.ndarray
) -> dict[str, float]:
    """Ceiling and normalised value of the model-level span Jaccard (unions over layers 1..)."""
    union = [np.concatenate([d.labels.cpu().numpy() for d in ds[1:]]) for ds in (da, db)]
    if any(len(u) == 0 for u in union):
        return {"ceiling": float("nan"), "normalised": float("nan")}
    r = span_jaccard(union[0], union[1], bound_a, bound_b)
    return {"ceiling": r["ceiling"], "normalised": r["normalised"]}


def _matching(S: np.ndarray) -> dict[str, Any]:
    return {**best_matches(S), "score": layer_matching_score(S), "score_within_1": layer_matching_score(S, tolerance=1)}


def compare_models(
    cache_a: ActivationCache,
    cache_b: ActivationCache,
    sites_a: Sequence[str],
    sites_b: Sequence[str],
    itda: dict[str, Any],
    n_baseline: int = 2048,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Everything the comparison reports, as plain lists/floats (JSON-ready)."""
    t0 = time.perf_counter()
    la, lb = cache_labels(cache_a), cache_labels(cache_b)
    ra, rb = aligned_rows(la, lb)
    if len(ra) == 0:
        raise ValueError("the two caches share no character boundaries: cache the same text for both")
    da = fit_layers(cache_a, sites_a, ra, la, itda, progress)
    db = fit_layers(cache_b, sites_b, rb, lb, itda, progress)
    t_itda = time.perf_counter() - t0
    bound_a, bound_b = boundary_keys(la), boundary_keys(lb)
    span_ab = span_jaccard_matrices(da, db, bound_a, bound_b)
    jac = {"aa": jaccard_matrix(da, da, "span"), "bb": jaccard_matrix(db, db, "span"), "ab": span_ab["jaccard"]}
    pick = np.sort(np.random.default_rng(seed).permutation(len(ra))[:n_baseline])
    fa = layer_features([layer_rows(cache_a, s, ra[pick]) for s in sites_a])
    fb = layer_features([layer_rows(cache_b, s, rb[pick]) for s in sites_b])
    base = {"aa": feature_similarities(fa, fa), "bb": feature_similarities(fb, fb), "ab": feature_similarities(fa, fb)}
    metrics = {"jaccard": jac} | {m: {p: base[p][m] for p in base} for m in ("cka", "svcca", "relative")}
    return {
        "models": [cache_a.manifest["model"], cache_b.manifest["model"]],
        "sites": [list(sites_a), list(sites_b)],
        "tokens": [cache_a.n_tokens, cache_b.n_tokens],
        "aligned_tokens": int(len(ra)),
        "baseline_tokens": int(len(pick)),
        "itda": itda,
        "n_atoms": [[d.cfg.n_atoms for d in da], [d.cfg.n_atoms for d in db]],
        "boundary_overlap": boundary_overlap(la, lb),
        "model_similarity": {"a_vs_b": model_similarity(da, db, "span"), **_model_ceiling(da, db, bound_a, bound_b)},
        "jaccard_ceiling": {"ab": span_ab["ceiling"].tolist(), "ab_normalised": span_ab["normalised"].tolist()},
        "matrices": {m: {p: v.tolist() for p, v in mats.items()} for m, mats in metrics.items()},
        "matching": {
            m: {"a_to_b": _matching(mats["ab"]), "b_to_a": _matching(mats["ab"].T)} for m, mats in metrics.items()
        },
        "seconds": {"itda": t_itda, "total": time.perf_counter() - t0},
    }
