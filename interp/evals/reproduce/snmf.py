"""Semi-NMF (Shafran, Geiger & Geva 2025, arXiv 2506.10920): recovery of a planted factorisation.

The paper's numbers (concept detection and steering on Llama-3.1-8B / Gemma-2-2B / GPT-2, scored
by a GPT-4o-mini judge) need models and a judge not available here; they are listed as not run.
What is measured: the paper's iteration recovering planted signed, winner-take-all features with
non-negative codes (80 neurons, 8 features of 8 neurons, 3,000 tokens, 30% density; quick: 24
neurons, 3 features of 4 neurons, 300 tokens, one seed), per start, with our default restarts (``n_init``).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from interp.decomposers.semi_nmf import SNMF
from interp.evals.reproduce.report import Report


def _planted(n, d, k, keep, density, seed):
    gen = torch.Generator().manual_seed(seed)
    F = torch.zeros(d, k)
    for j in range(k):
        idx = torch.randperm(d, generator=gen)[:keep]
        F[idx, j] = torch.randn(keep, generator=gen).sign() * (1 + torch.rand(keep, generator=gen))
    G = torch.rand(n, k, generator=gen) * (torch.rand(n, k, generator=gen) < density)
    return G @ F.T, F


def _min_cos(F_true, F_hat) -> float:
    a, b = (torch.nn.functional.normalize(M, dim=0) for M in (F_true, F_hat))
    cos = (a.T @ b).abs().numpy()
    r, c = linear_sum_assignment(-cos)
    return float(cos[r, c].min())


def snmf(quick: bool) -> Report:
    n, d, k, keep = (300, 24, 3, 4) if quick else (3000, 80, 8, 8)
    seeds = list(range(1 if quick else 20))
    starts = (
        [("random", 1), ("random", 3)]
        if quick
        else [("random", 1), ("random", 3), ("kmeans", 1), ("kmeans", 3), ("svd", 1)]
    )
    rep = Report(
        "Shafran et al. 2025, semi-NMF of MLP activations (planted-factorisation recovery)",
        quick,
        {"tokens": n, "neurons": d, "features": k, "neurons_per_feature": keep, "density": 0.3, "starts": starts},
        seeds,
    )
    rep.add(
        "concept detection (> 75% of features S_CD > 0), steering 0.45 (Llama-3.1-8B L23)",
        "as stated",
        "not run",
        "needs the paper's models and an LLM judge",
    )
    fails = {}
    for init, n_init in starts:
        worst = [
            _min_cos(
                F,
                SNMF.fit(
                    X,
                    rank=k,
                    sparsity=keep / d,
                    init=init,
                    n_init=n_init,
                    progress=False,
                    device="cpu",
                    **({"max_iter": 300, "patience": 50} if quick else {}),
                ).F,
            )
            for X, F in (_planted(n, d, k, keep, 0.3, s) for s in seeds)
        ]
        ok = sum(w >= 0.95 for w in worst)
        fails[(init, n_init)] = len(seeds) - ok
        rep.add(
            f"{init} start, n_init {n_init}: seeds with min |cos| >= 0.95",
            "-",
            f"{ok} of {len(seeds)}",
            "per-seed min |cos|: " + ", ".join(f"{w:.2f}" for w in worst),
        )
    default = fails.get(("random", 3))
    rep.reading = (
        f"the default (random start, best of 3) misses {default} of {len(seeds)} planted "
        f"factorisations; one random start misses {fails[('random', 1)]}"
    )
    return rep
