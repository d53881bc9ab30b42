"""Benchmark the semi-NMF fit: interp's SNMF (streamed from the activation cache, and from an
in-memory tensor) vs the paper's iteration written out plainly on a dense matrix (A = Xᵀ,
explicit inverse, full reconstruction for the loss), same initialisation, same number of
iterations, on real SmolLM2-135M MLP activations. Prints seconds per iteration, the speed ratio
and how far the results differ (loss, features).

``scale=[N, ...]`` instead fits N tokens from the cache alone, in both modes (the full iteration
streamed over row blocks, and the online mini-batch mode, one epoch), with no dense copy: the
check that the fit is not limited by memory. It prints the time, the FVU and the peak resident
memory beside the size of the activations themselves. The stdlib corpus holds ~0.45M tokens, so
use ``text=builtin:site-docs`` for a million.

    interp bench snmf [tokens=[10000,100000]] [rank=100] [iters=20] [layer=15]
    interp bench snmf scale=[1000000] text=builtin:site-docs layer=3 cache=runs/bench/snmf-1m
"""

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.activations import ActivationCache, cache_activations
from interp.decomposers.semi_nmf import SNMF
from interp.decomposers.semi_nmf.source import as_rows
from interp.errors import DataError


def dense_reference(X, rank, sparsity, iters, seed, ridge=1e-6, eps=1e-6):
    """The paper's loop (Ding et al. semi-NMF + WTA + scale fix + multiplicative G), unoptimised."""
    A = X.T  # [d, n]
    d, n = A.shape
    gen = torch.Generator().manual_seed(seed)
    G = torch.rand(n, rank, generator=gen).clamp(min=1e-6).to(X.device)
    keep = max(1, math.ceil(sparsity * d))
    eye = torch.eye(rank, device=X.device)
    losses = []
    for _ in range(iters):
        F = A @ G @ torch.linalg.inv(G.T @ G + ridge * eye)
        idx = F.abs().topk(keep, dim=0).indices
        F = torch.zeros_like(F).scatter(0, idx, F.gather(0, idx))
        norms = G.norm(dim=0).clamp(min=1e-8)
        G, F = G / norms, F * norms
        P, Q = A.T @ F, F.T @ F
        Pp, Pn, Qp, Qn = (P.abs() + P) / 2, (P.abs() - P) / 2, (Q.abs() + Q) / 2, (Q.abs() - Q) / 2
        G = G * torch.sqrt((Pp + G @ Qn) / (Pn + G @ Qp + eps))
        losses.append(torch.sum((A - F @ G.T) ** 2).item())
    return F, G, losses


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


@dataclass(frozen=True)
class Config:
    tokens: tuple[int, ...] = (10_000, 100_000)
    """Token counts compared against the dense reference."""
    rank: int = 100
    """Features (k)."""
    sparsity: float = 0.01
    """Winner-take-all keep fraction."""
    iters: int = 20
    """Iterations of every fit."""
    layer: int = 15
    """Layer whose mlp.hook_post is fitted."""
    model: str = "smollm2-135m"
    """Model spec."""
    cache: str = "runs/bench/snmf-cache"
    """Activation cache (made on first use)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device."""
    text: str = "builtin:stdlib-docs"
    """Text source of the cache."""
    scale: tuple[int, ...] = ()
    """Instead fit this many tokens from the cache alone, in both modes (no dense copy)."""


def run(args: Config) -> None:
    site = f"blocks.{args.layer}.mlp.hook_post"
    path = Path(args.cache)
    if not (path / "manifest.json").exists():
        n_cache = int(max(args.scale or args.tokens) * 1.02) + 256  # BOS tokens are left out of the fit
        cache_activations(args.model, args.text, [site], n_cache, path, seq_len=128)
    cache = ActivationCache(path)
    common = dict(
        rank=args.rank,
        sparsity=args.sparsity,
        init="random",
        n_init=1,
        max_iter=args.iters,
        patience=args.iters + 1,
        keep_best=False,
        site=site,
        progress=False,
        device=args.device,
    )
    print(
        f"{args.model} {site}, k={args.rank}, p={args.sparsity}, {args.iters} iterations, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    if args.scale:
        return scale(cache, site, args, common)
    for n in args.tokens:
        rows = as_rows(cache, site, n)
        if rows.n < n:
            raise DataError(f"{path} holds only {rows.n} tokens: delete it (or pass cache=...) to re-cache")
        X = torch.cat([x for _, x in rows.chunks(1 << 14, torch.device(args.device))])
        (F_ref, _, losses), t_ref = timed(
            lambda: dense_reference(X, args.rank, args.sparsity, args.iters, 42), args.device
        )
        ours, t_ours = timed(lambda: SNMF.fit(cache, n_tokens=n, **common), args.device)
        mem, t_mem = timed(lambda: SNMF.fit(X, **common), args.device)
        F = ours.F.to(F_ref.device)
        rel_f = ((F - F_ref).norm() / F_ref.norm()).item()
        rel_loss = abs(ours.meta["history"][-1] - losses[-1]) / losses[-1]
        print(
            f"n={n:>7}: dense {t_ref / args.iters:.3f} s/it | SNMF from cache {t_ours / args.iters:.3f} s/it "
            f"(ratio {t_ref / t_ours:.2f}x) | SNMF in memory {t_mem / args.iters:.3f} s/it (ratio {t_ref / t_mem:.2f}x) "
            f"| final FVU {losses[-1] / X.pow(2).sum().item():.4f}, loss rel diff {rel_loss:.1e}, "
            f"F rel diff {rel_f:.1e}"
        )


def scale(cache: ActivationCache, site: str, args, common: dict) -> None:
    """Both fitting modes straight from the cache; time, FVU and peak memory against the data size."""
    for n in args.scale:
        rows = as_rows(cache, site, n)
        if rows.n < n:
            raise DataError(f"{args.cache} holds only {rows.n} tokens: delete it (or pass cache=...) to re-cache")
        gib = n * cache.width(site) * 4 / 2**30
        for mode, extra in (("full", {}), ("minibatch", {"epochs": 1})):
            model, t = timed(lambda: SNMF.fit(cache, n_tokens=n, mode=mode, **common, **extra), args.device)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
            print(
                f"n={n:>8} {mode:>9}: {t:7.1f} s, FVU {model.meta['fvu']:.4f}, peak RSS so far {peak:.2f} GiB "
                f"(the activations: {gib:.2f} GiB as float32)"
            )
