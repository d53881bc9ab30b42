"""Benchmark head SVD + all-pairs composition scores: ``interp bench heads [model=smollm2-135m]``.

Times ``HeadSVD.fit`` and ``all_composition_scores`` (Q, K, V) for the whole model, and a reference
measured in the same run: the direct formula ``||W1 W2||_F / (||W1||_F ||W2||_F)`` with dense D x D
matrices (writer component x reader circuit), per pair in a Python loop, on a sample of pairs and
extrapolated to all pairs. Prints both and their ratio.
"""

import time
from dataclasses import dataclass

import torch

import interp.models
from interp.cli import print_table
from interp.decomposers.heads.svd import KINDS, HeadSVD, all_composition_scores


def naive_seconds_per_pair(svd: HeadSVD, n: int = 200) -> float:
    g = torch.Generator().manual_seed(0)
    L, H = svd.cfg.n_layers, svd.cfg.n_heads
    t = time.perf_counter()
    for _ in range(n):
        l = int(torch.randint(0, L - 1, (1,), generator=g))
        h, i, rh = (int(torch.randint(0, m, (1,), generator=g)) for m in (H, svd.cfg.d_head, H))
        rl = int(torch.randint(l + 1, L, (1,), generator=g))
        U, S, Vt = svd.components(l, h, "ov")
        W1 = S[i] * torch.outer(U[:, i], Vt[i])
        W2 = svd.circuit(rl, rh, "qk")
        _ = (W1 @ W2).norm() / (W1.norm() * W2.norm())
    return (time.perf_counter() - t) / n


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""


def run(cfg: Config) -> None:
    model = interp.models.load(cfg.model, device="cpu")
    t = time.perf_counter()
    svd = HeadSVD.fit(model)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    for kind in KINDS:
        all_composition_scores(svd, kind)
    cs_s = time.perf_counter() - t
    L, H, r = svd.cfg.n_layers, svd.cfg.n_heads, svd.cfg.d_head
    n_pairs = sum(H * r * (L - 1 - l) * H for l in range(L)) * len(KINDS)
    naive_s = naive_seconds_per_pair(svd) * n_pairs
    print_table(
        {
            "model": cfg.model,
            "heads": L * H,
            "component-reader pairs (q,k,v)": n_pairs,
            "fit_s": fit_s,
            "all_pairs_scores_s": cs_s,
            "total_s": fit_s + cs_s,
            "naive_loop_s (extrapolated)": naive_s,
            "speedup (naive / vectorised scores)": naive_s / cs_s,
        },
        "head SVD + composition scores",
    )
