"""Feature absorption on the first-letter task (Chanin et al. 2024, "A is for Absorption"), computed
as SAEBench's ``absorption`` eval does (``feature_absorption_calculator.py``, ``k_sparse_probing.py``).

1. Words: single-token alphabetic vocabulary entries with a leading space; prompt
   ``{ICL examples}\n{word} has the first letter:`` and the activation at the word's token.
2. A logistic-regression probe for the 26 first letters on the activations (train split); letters
   whose probe F1 on the test split is below ``min_probe_f1`` are skipped.
3. Main (split) features per letter: an L1 probe on the codes ranks features by their positive
   weight; k-sparse probes on the top k codes for k = 1, 2, ...; k grows while the test F1 rises by at
   least ``f1_jump`` (SAEBench's feature-splitting rule).
4. For each test word of the letter that the probe calls positive: absorption fraction (the share
   of the probe projection carried by up to 3 other aligned features when the main ones fall short)
   and full absorption (no main feature fires; the top projecting feature is aligned with the
   probe and carries at least 40% of the projection).
Scores: means over words, then over letters; ``mean_num_split_features`` = mean(k) - 1;
``n_letters_probe`` counts the letters whose probe passed, ``n_letters`` those also scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float, Int

from interp.errors import DataError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEMPLATE = "{word} has the first letter:"
WORD_POS = -6  # the word's token, counted from the end of the prompt: " has the first letter:" is 5 tokens


@dataclass(frozen=True)
class AbsorptionConfig:
    """SAEBench's absorption thresholds (their defaults)."""

    min_probe_f1: float = 0.6
    """Letters whose ground-truth probe has a lower test F1 are skipped."""
    f1_jump: float = 0.03
    """k-sparse probing adds a feature while the F1 rises by at least this much."""
    max_k: int = 10
    """Most main features per letter."""
    full_cos: float = 0.025
    """Full absorption: the top projecting feature's cosine with the probe is at least this."""
    fraction_cos: float = 0.1
    """Absorption fraction: candidate absorbers have at least this cosine with the probe."""
    proj_share: float = 0.4
    """Absorbers must carry at least this share of the probe projection."""
    max_absorbers: int = 3
    """Most features that may together absorb a main feature."""
    l1_c: float = 0.1
    """Inverse L1 strength of the probe that ranks features (scikit-learn ``C``)."""


def vocab_words(tokenizer, n: int, seed: int = 0, min_len: int = 2) -> list[str]:
    """Up to ``n`` single-token words (leading space, then letters only), sampled with a seed."""
    words = []
    for tid in range(len(tokenizer)):
        s = tokenizer.decode([tid])
        if s.startswith(" ") and len(s) > min_len and s[1:].isascii() and s[1:].isalpha():
            words.append(s[1:])
    words = sorted(set(words))
    rng = np.random.default_rng(seed)
    return [words[i] for i in sorted(rng.choice(len(words), min(n, len(words)), replace=False))]


def prompts(words: list[str], n_icl: int = 4, seed: int = 0) -> list[str]:
    """First-letter prompts with ``n_icl`` in-context examples each (drawn from the other words)."""
    rng = np.random.default_rng(seed)
    out = []
    for w in words:
        icl = [words[i] for i in rng.choice(len(words), n_icl + 1, replace=False) if words[i] != w][:n_icl]
        lines = [TEMPLATE.format(word=" " + e) + " " + e[0].upper() for e in icl]
        out.append("\n" + "\n".join(lines + [TEMPLATE.format(word=" " + w)]))  # SAEBench: separator first too
    return out


def letter_probe(X: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic probe on activations: (unit directions [26, D], test F1 per letter)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    lr = LogisticRegression(max_iter=1000, random_state=seed).fit(X[train], y[train])
    dirs = np.zeros((26, X.shape[1]))
    dirs[lr.classes_] = lr.coef_ / np.linalg.norm(lr.coef_, axis=1, keepdims=True)
    f1 = np.zeros(26)
    pred = lr.predict(X[~train])
    f1[lr.classes_] = f1_score(y[~train], pred, labels=lr.classes_, average=None, zero_division=0)
    return dirs, f1


def _l1() -> dict:
    """An L1 penalty in this scikit-learn's spelling (``penalty`` is deprecated from 1.8)."""
    import sklearn

    return (
        {"l1_ratio": 1.0} if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8) else {"penalty": "l1"}
    )


def main_features(
    codes: np.ndarray, pos: np.ndarray, train: np.ndarray, cfg: AbsorptionConfig, seed: int = 0
) -> list[int]:
    """SAEBench's split features of one letter: top positive L1-probe weights, k grown while F1 jumps."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    alive = np.flatnonzero((codes[train] != 0).any(0))
    if not len(alive) or pos[train].all() or not pos[train].any():
        return []
    scale = np.abs(codes[train][:, alive]).max(0)
    l1 = LogisticRegression(solver="liblinear", C=cfg.l1_c, random_state=seed, **_l1())
    l1.fit(codes[train][:, alive] / scale, pos[train])
    order = alive[np.argsort(-l1.coef_[0], kind="stable")]
    best, feats = -np.inf, []
    for k in range(1, cfg.max_k + 1):
        f = order[:k]
        probe = LogisticRegression(max_iter=1000, random_state=seed).fit(codes[train][:, f], pos[train])
        score = f1_score(pos[~train], probe.predict(codes[~train][:, f]), zero_division=0)
        if score <= best + cfg.f1_jump:
            break
        best, feats = score, [int(i) for i in f]
    return feats


def word_absorption(
    act: Float[torch.Tensor, "D"],
    codes: Float[torch.Tensor, "F"],
    cos: Float[torch.Tensor, "F"],
    probe: Float[torch.Tensor, "D"],
    main: list[int],
    cfg: AbsorptionConfig,
    row_dot: Float[torch.Tensor, "F"] | None = None,
) -> tuple[float, bool]:
    """(absorption fraction, full absorption) of one word, SAEBench's formulas.

    Each feature's share of the probe projection is its code times its decoder row's dot product
    with the probe, in the activation's units: ``row_dot`` (default ``cos``, right when the codes
    times the unit directions rebuild the activation)."""
    act_proj = float(act @ probe)
    proj = codes * (cos if row_dot is None else row_dot)
    main_proj = float(proj[main].sum())
    cand = torch.ones_like(cos, dtype=torch.bool)
    cand[main] = False
    cand &= (cos >= cfg.fraction_cos) & (proj > 0)
    top = proj[cand].topk(min(cfg.max_absorbers, int(cand.sum()))).values.sum().item() if cand.any() else 0.0
    if main_proj >= act_proj or top / act_proj < cfg.proj_share:
        frac = 0.0
    elif main_proj <= 0:
        frac = 1.0
    else:
        absorbed = min(top, act_proj - main_proj)
        frac = float(np.clip(absorbed / (absorbed + main_proj), 0, 1))
    best = int(proj.argmax())
    full = (
        all(float(codes[m]) < 1e-8 for m in main)
        and float(cos[best]) >= cfg.full_cos
        and act_proj >= 0
        and float(proj[best]) / act_proj >= cfg.proj_share
    )
    return frac, bool(full)


def absorption(
    acts: Float[torch.Tensor, "N D"],
    codes: Float[torch.Tensor, "N F"],
    directions: Float[torch.Tensor, "F D"],
    letters: Int[np.ndarray, "N"],
    train: np.ndarray,
    cfg: AbsorptionConfig = AbsorptionConfig(),
    seed: int = 0,
    row_dot: Callable[[torch.Tensor], Float[torch.Tensor, "N F"]] | None = None,
) -> dict[str, float | dict]:
    """Absorption scores from word activations, their codes and the feature directions.

    ``row_dot(probe)``: for each word, every feature's decoder row (what one unit of its code adds
    to the activation) dotted with ``probe``; SAEBench's ``codes * (W_dec @ probe)``. Needed
    whenever codes are not in the activation's units (an SAE's codes live on inputs scaled by its
    ``norm_scale``; semi-NMF and LIB rows are not unit): see ``passes.row_dot``. Default: the unit
    ``directions`` (codes in the activation's units)."""
    if len(acts) != len(codes) or len(acts) != len(letters):
        raise DataError(
            f"acts, codes and letters must have one row per word: {len(acts)}, {len(codes)}, {len(letters)}"
        )
    X, C = acts.double().cpu().numpy(), codes.double().cpu().numpy()
    dirs, f1 = letter_probe(X, letters, train, seed)
    unit = torch.nn.functional.normalize(directions.double().cpu(), dim=-1)
    per_letter = {}
    for li in np.flatnonzero(f1 >= cfg.min_probe_f1):
        main = main_features(C, letters == li, train, cfg, seed)
        probe = torch.from_numpy(dirs[li])
        words = np.flatnonzero(~train & (letters == li) & (X @ dirs[li] > 0))  # probe calls them positive
        if not main or not len(words):
            continue
        cos = unit @ probe
        rows = row_dot(probe).double().cpu() if row_dot is not None else None
        scores = [
            word_absorption(
                acts[w].double().cpu(),
                codes[w].double().cpu(),
                cos,
                probe,
                main,
                cfg,
                None if rows is None else rows[w],
            )
            for w in words
        ]
        per_letter[LETTERS[li]] = {
            "absorption_fraction": float(np.mean([s[0] for s in scores])),
            "full_absorption": float(np.mean([s[1] for s in scores])),
            "num_split_features": len(main) - 1,
            "main_features": main,
            "n_words": len(words),
            "probe_f1": float(f1[li]),
        }
    if not per_letter:
        raise DataError("no letter passed the probe-F1 and main-feature checks: use more words")
    vals = list(per_letter.values())
    return {
        "mean_absorption_fraction_score": float(np.mean([v["absorption_fraction"] for v in vals])),
        "mean_full_absorption_score": float(np.mean([v["full_absorption"] for v in vals])),
        "mean_num_split_features": float(np.mean([v["num_split_features"] for v in vals])),
        "n_letters": len(vals),
        "n_letters_probe": int((f1 >= cfg.min_probe_f1).sum()),
        "letter_probe_f1": {LETTERS[i]: float(f1[i]) for i in range(26)},
        "per_letter": per_letter,
    }
