"""Representation similarity: ITDA Jaccard (Leask et al. 2025) and the usual baselines.

- ``jaccard(a, b, key)``: |A ∩ B| / |A ∪ B| of two dictionaries' atom label sets. ``key="token"``
  compares ``(doc_id, token_position)`` (models sharing a tokenizer, as in the paper);
  ``key="span"`` compares ``(doc_id, char_end)``: same document, token ending at the same
  character, our extension that lets models with different tokenizers be compared (see
  ``interp.decomposers.itda``). Labels repeated inside one dictionary count once.
- The span key has a ceiling below 1: tokenizers do not end tokens at the same characters (on 200
  documents SmolLM2 and Gemma 3 share 91-93% of token end offsets). ``boundary_overlap`` measures
  that for two token streams; ``span_jaccard`` reports beside a span Jaccard its ceiling (the
  largest Jaccard the two dictionaries could reach given which of their atoms' keys exist in the
  other stream at all) and the Jaccard divided by it.
- ``model_similarity``: Jaccard of the unions of the label sets over layers (the paper's Eq. 10;
  layer 0 left out by default, as there).
- ``layer_matching_score(S)``: the fraction of layers whose most similar layer in the other model
  is the corresponding one (Kornblith et al. 2019's benchmark, as ITDA computes it: ``S`` is
  ``[M, M, L, L]`` over all ordered model pairs, self-pairs included unless ``include_self=False``,
  layer 0 excluded by default). A 2-D ``S`` is one model pair; when its two depths differ, layer i
  "corresponds" to the layer at the same relative depth (our extension, with a ``tolerance``).
- Baselines on paired rows ``x [N, Dx]``, ``y [N, Dy]`` (the same tokens): ``linear_cka``
  (textbook linear CKA of centred features, Kornblith et al.), ``svcca`` (Raghu et al. 2017:
  centre, keep the top ``n_components`` singular directions of each by a deterministic SVD, mean
  canonical correlation), ``relative_similarity`` (Moschella et al. 2023: cosine to the same
  ``n_anchors`` random anchor tokens in both spaces, then the mean cosine between the two relative
  representations of each token).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from jaxtyping import Float

KEYS = {"token": 1, "span": 3}  # the label column paired with the doc id


def label_keys(d: Any, key: str = "token") -> np.ndarray:
    """Sorted unique int64 keys of an ITDA's labels (or a ``[n, 2|4]`` label array)."""
    if key not in KEYS:
        raise ValueError(f"unknown key {key!r}; choose 'token' (doc, position) or 'span' (doc, char end)")
    labels = getattr(d, "labels", d)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] not in (2, 4):
        raise ValueError(f"labels must be [n, 2] or [n, 4], got shape {labels.shape}")
    if key == "span" and (labels.shape[1] == 2 or (len(labels) and labels[:, 3].min() < 0)):
        raise ValueError(
            "these atoms have no character spans (they were fitted from [B, 2] labels); "
            "use key='token', or fit with [B, 4] labels / from an ActivationCache"
        )
    doc, other = labels[:, 0].astype(np.int64), labels[:, KEYS[key]].astype(np.int64)
    return np.unique((doc << 32) | (other & 0xFFFFFFFF))


def _jaccard_keys(a: np.ndarray, b: np.ndarray) -> float:
    union = len(a) + len(b)
    if union == 0:
        return float("nan")
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (union - inter)


def jaccard(a: Any, b: Any, key: str = "token") -> float:
    """Jaccard similarity of two dictionaries' atom labels (1: same atoms, 0: disjoint)."""
    return _jaccard_keys(label_keys(a, key), label_keys(b, key))


def boundary_keys(labels: Any) -> np.ndarray:
    """Sorted unique span keys ``(doc, char_end)`` of every non-special token of a stream (a
    ``cache_labels`` array ``[T, 4]``; rows with position or char end -1 are left out)."""
    labels = np.asarray(labels)
    return label_keys(labels[(labels[:, 1] >= 0) & (labels[:, 3] >= 0)], "span")


def boundary_overlap(labels_a: Any, labels_b: Any) -> dict[str, float]:
    """How many token end offsets two tokenizations of the same text share: the Jaccard of the two
    boundary sets and the share of each stream's boundaries found in the other."""
    a, b = boundary_keys(labels_a), boundary_keys(labels_b)
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return {
        "jaccard": inter / max(1, len(a) + len(b) - inter),
        "a_in_b": inter / max(1, len(a)),
        "b_in_a": inter / max(1, len(b)),
    }


def _span_ceiling(ka: np.ndarray, kb: np.ndarray, bound_a: np.ndarray, bound_b: np.ndarray) -> float:
    # only keys of A found among B's boundaries can be shared (and vice versa): with n_a of A's |A| keys
    # sharable, J = |A∩B| / |A∪B| <= min(n_a, n_b) / max(|A|, |B|) <= min(n_a / |A|, n_b / |B|)
    if len(ka) == 0 or len(kb) == 0:
        return float("nan")
    return min(np.isin(ka, bound_b, assume_unique=True).mean(), np.isin(kb, bound_a, assume_unique=True).mean())


def span_jaccard(a: Any, b: Any, boundaries_a: np.ndarray, boundaries_b: np.ndarray) -> dict[str, float]:
    """Span Jaccard of two dictionaries fitted on two tokenizations of the same text, its ceiling
    (``min`` over the two of the share of atoms whose ``(doc, char_end)`` is a token end in the
    other stream: an upper bound on the Jaccard) and the Jaccard divided by that ceiling.
    ``boundaries_*``: ``boundary_keys`` of each stream."""
    ka, kb = label_keys(a, "span"), label_keys(b, "span")
    j, c = _jaccard_keys(ka, kb), _span_ceiling(ka, kb, boundaries_a, boundaries_b)
    return {"jaccard": j, "ceiling": c, "normalised": j / c if c > 0 else float("nan")}


def span_jaccard_matrices(
    a: Sequence[Any], b: Sequence[Any], boundaries_a: np.ndarray, boundaries_b: np.ndarray
) -> dict[str, np.ndarray]:
    """``span_jaccard`` for every pair: ``{"jaccard", "ceiling", "normalised"}`` -> ``[len(a), len(b)]``."""
    cells = [[span_jaccard(x, y, boundaries_a, boundaries_b) for y in b] for x in a]
    return {name: np.array([[c[name] for c in row] for row in cells]) for name in ("jaccard", "ceiling", "normalised")}


def jaccard_matrix(a: Sequence[Any], b: Sequence[Any], key: str = "token") -> np.ndarray:
    """``[len(a), len(b)]`` Jaccard similarities (e.g. layers of one model vs another)."""
    ka, kb = [label_keys(d, key) for d in a], [label_keys(d, key) for d in b]
    return np.array([[_jaccard_keys(x, y) for y in kb] for x in ka])


def model_similarity(a: Sequence[Any], b: Sequence[Any], key: str = "token", skip_first: bool = True) -> float:
    """Jaccard of the label unions over the layers of two models (Eq. 10 of the ITDA paper)."""
    s = 1 if skip_first else 0
    ua = np.unique(np.concatenate([label_keys(d, key) for d in a[s:]]))
    ub = np.unique(np.concatenate([label_keys(d, key) for d in b[s:]]))
    return _jaccard_keys(ua, ub)


def _targets(la: int, lb: int, start: int) -> np.ndarray:
    rows = np.arange(start, la)
    if la == lb:
        return rows
    return start + np.floor((rows - start) * (lb - 1 - start) / max(1, la - 1 - start) + 0.5).astype(int)


def layer_matching_score(S: Any, include_self: bool = True, skip_first: bool = True, tolerance: int = 0) -> float:
    """Fraction of layers whose argmax match is the corresponding layer (within ``tolerance``).

    ``S``: ``[La, Lb]`` for one model pair, or ``[M, M, L, L]`` for all ordered pairs of M models."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim == 2:
        S, include_self = S[None, None], True
    if S.ndim != 4:
        raise ValueError(f"S must be [La, Lb] or [M, M, L, L], got shape {S.shape}")
    start = 1 if skip_first else 0
    hits, total = 0, 0
    for m in range(S.shape[0]):
        for m2 in range(S.shape[1]):
            if m == m2 and not include_self and S.shape[0] > 1:
                continue
            block = S[m, m2, start:, start:]
            best = start + np.nanargmax(np.where(np.isnan(block), -np.inf, block), axis=1)
            hits += int((np.abs(best - _targets(S.shape[2], S.shape[3], start)) <= tolerance).sum())
            total += len(best)
    return hits / total


def best_matches(S: Any) -> dict[str, Any]:
    """Each row's argmax column, and how monotone it is in depth (Spearman rho, share of
    consecutive rows whose best match does not go down)."""
    from scipy.stats import spearmanr

    best = np.asarray(S).argmax(axis=1)
    rho = float(spearmanr(np.arange(len(best)), best).statistic) if len(set(best)) > 1 else float("nan")
    steps = np.diff(best)
    return {
        "best": best.tolist(),
        "spearman": rho,
        "non_decreasing": float((steps >= 0).mean()) if len(steps) else 1.0,
        "monotone": bool((steps >= 0).all()),
    }


# -- baselines on paired activations ----------------------------------------------------------------


def _centred(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).double()
    return x - x.mean(0)


def linear_cka(x: Float[torch.Tensor, "N Dx"], y: Float[torch.Tensor, "N Dy"]) -> float:
    """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on column-centred x, y."""
    x, y = _centred(x), _centred(y)
    cross = (y.T @ x).pow(2).sum()
    return (cross / ((x.T @ x).norm() * (y.T @ y).norm())).item()


def svcca_basis(x: Float[torch.Tensor, "N D"], n_components: int = 20) -> torch.Tensor:
    """Orthonormal basis ``[N, c]`` of the top singular directions of centred x (reusable)."""
    u, s, _ = torch.linalg.svd(_centred(x), full_matrices=False)
    keep = min(n_components, int((s > s[0] * 1e-10).sum()))
    return u[:, :keep]


def svcca(x: Float[torch.Tensor, "N Dx"], y: Float[torch.Tensor, "N Dy"], n_components: int = 20) -> float:
    """Mean canonical correlation between the top-``n_components`` SVD subspaces of x and y."""
    return svcca_from_bases(svcca_basis(x, n_components), svcca_basis(y, n_components))


def svcca_from_bases(ux: torch.Tensor, uy: torch.Tensor) -> float:
    # the canonical correlations of two subspaces are the singular values of Ux^T Uy
    return torch.linalg.svdvals(ux.T @ uy).clamp(max=1).mean().item()


def relative_rep(x: Float[torch.Tensor, "N D"], anchors: torch.Tensor) -> torch.Tensor:
    """Unit rows of cosines to the anchor rows (``anchors``: row indices into x)."""
    x = torch.nn.functional.normalize(torch.as_tensor(x).double(), dim=1)
    return torch.nn.functional.normalize(x @ x[anchors].T, dim=1)


def anchor_rows(n: int, n_anchors: int = 300, seed: int = 42) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_anchors]


def relative_similarity(
    x: Float[torch.Tensor, "N Dx"], y: Float[torch.Tensor, "N Dy"], n_anchors: int = 300, seed: int = 42
) -> float:
    """Mean over tokens of cos(relative rep in x, relative rep in y), same anchors in both."""
    anchors = anchor_rows(len(x), n_anchors, seed)
    return (relative_rep(x, anchors) * relative_rep(y, anchors)).sum(1).mean().item()


# -- all layer pairs at once --------------------------------------------------------------------------


def _cosine_matrix(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> np.ndarray:
    a = torch.nn.functional.normalize(torch.stack([f.reshape(-1) for f in fa]), dim=1)
    b = torch.nn.functional.normalize(torch.stack([f.reshape(-1) for f in fb]), dim=1)
    return (a @ b.T).double().numpy()


def layer_features(
    xs: Sequence[torch.Tensor], n_components: int = 20, n_anchors: int = 300, seed: int = 42
) -> dict[str, list[torch.Tensor]]:
    """Per-layer features the baselines compare: centred Gram matrices ``[N, N]`` (CKA; keep N to a
    few thousand), SVD bases (SVCCA) and relative representations. Compute once per model."""

    def gram(x):
        x = _centred(x)
        return (x @ x.T).float()

    return {
        "gram": [gram(x) for x in xs],
        "basis": [svcca_basis(x, n_components) for x in xs],
        "relative": [relative_rep(x, anchor_rows(len(x), n_anchors, seed)).float() for x in xs],
    }


def feature_similarities(fa: dict[str, list[torch.Tensor]], fb: dict[str, list[torch.Tensor]]) -> dict[str, np.ndarray]:
    """``{"cka", "svcca", "relative"}`` -> ``[La, Lb]`` matrices from two ``layer_features``."""
    return {
        "cka": _cosine_matrix(fa["gram"], fb["gram"]),
        "svcca": np.array([[svcca_from_bases(u, v) for v in fb["basis"]] for u in fa["basis"]]),
        "relative": np.array([[(u * v).sum(1).mean().item() for v in fb["relative"]] for u in fa["relative"]]),
    }


def similarity_matrices(
    xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], n_components: int = 20, n_anchors: int = 300, seed: int = 42
) -> dict[str, np.ndarray]:
    """``{"cka", "svcca", "relative"}`` -> ``[len(xs), len(ys)]`` matrices over paired rows."""
    return feature_similarities(
        layer_features(xs, n_components, n_anchors, seed), layer_features(ys, n_components, n_anchors, seed)
    )
