"""Fitting loops for semi-NMF: initialisations, the paper's full-batch iteration (streamed over row
blocks) and an online mini-batch variant for corpora whose coefficients do not fit in memory.

Full mode is exactly the iteration of Shafran et al. (F least squares, winner-take-all, scale
transfer, multiplicative G update, best-iterate early stopping), reorganised so that one pass over
the row blocks of X per iteration does the G update, the loss and the statistics ``XᵀG``, ``GᵀG``
of the next F step. ``X`` is never held whole: only ``G [N, k]`` (plus the best copy) is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.decomposers.semi_nmf import ops
from interp.decomposers.semi_nmf.source import Rows

Tensor = torch.Tensor
INITS = ("random", "svd", "kmeans")


@dataclass
class FitResult:
    F: Tensor  # [d, k], carries the magnitude; G columns have unit norm over the fitted tokens
    G: Tensor | None  # [n, k] coefficients of the fitted tokens (None when not kept)
    history: list[float] = field(default_factory=list)  # loss after each iteration
    initial_loss: float = math.nan
    best_loss: float = math.nan
    best_iter: int = -1  # -1: the initialisation was never improved on
    n_iter: int = 0
    x_sq: float = 0.0  # ||X||²
    restarts: int = 1  # starts tried (the best one is this result)


# -- initialisation -------------------------------------------------------------------------
def _random(rows: Rows, k: int, seed: int, device) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    G = torch.rand(rows.n, k, generator=gen).clamp_(min=1e-6)
    F = torch.randn(rows.d, k, generator=gen)
    return F.to(device), G.to(device)


def _svd(rows: Rows, k: int, chunk: int, device) -> tuple[Tensor, Tensor]:
    """Truncated SVD from the streamed Gram matrix XᵀX: F = U√Σ, G = max(X U / √Σ, 1e-6).

    Singular vectors have arbitrary signs; each is oriented so that its G column sums to >= 0
    (before clamping), a deterministic choice the paper's code leaves to the SVD routine.
    """
    gram = torch.zeros(rows.d, rows.d, dtype=torch.float64, device=device)
    total = torch.zeros(rows.d, dtype=torch.float64, device=device)
    for _, X in rows.chunks(chunk, device):
        gram += (X.T @ X).double()
        total += X.sum(0, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(gram)
    sig = evals.flip(0)[:k].clamp(min=1e-12).sqrt()
    U = evecs.flip(1)[:, :k]
    U = U * torch.where(total @ U >= 0, 1.0, -1.0)
    F = (U * sig.sqrt()).float()
    proj = (U / sig.sqrt()).float()
    G = torch.cat([(X @ proj).clamp_(min=1e-6) for _, X in rows.chunks(chunk, device)])
    return F, G


def _assign(X: Tensor, C: Tensor) -> Tensor:
    return (X @ C.T - 0.5 * (C * C).sum(1)).argmax(1)  # nearest centroid


def _kmeans(rows: Rows, k: int, seed: int, iters: int, chunk: int, device) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means (random distinct tokens as seeds; empty clusters re-seeded with random
    tokens), ``iters`` streamed passes; F = centroids, G = one-hot assignments floored at 1e-6."""
    if rows.n < k:
        raise ValueError(f"k-means initialisation needs at least rank={k} tokens, got {rows.n}")
    rng = np.random.default_rng(seed)
    C = rows.rows(rng.choice(rows.n, k, replace=False), device)
    for _ in range(iters):
        sums = torch.zeros_like(C)
        counts = torch.zeros(k, device=device)
        for _, X in rows.chunks(chunk, device):
            lab = _assign(X, C)
            sums.index_add_(0, lab, X)
            counts += torch.bincount(lab, minlength=k)
        C = sums / counts.clamp(min=1)[:, None]
        empty = (counts == 0).nonzero().flatten().cpu().numpy()
        if len(empty):
            C[torch.as_tensor(empty, device=device)] = rows.rows(rng.choice(rows.n, len(empty), replace=False), device)
    labels = torch.cat([_assign(X, C) for _, X in rows.chunks(chunk, device)])
    G = torch.full((rows.n, k), 1e-6, device=device).scatter_(1, labels[:, None], 1.0)
    return C.T.contiguous(), G


def initialise(rows: Rows, k: int, init: str, seed: int, chunk: int, device, kmeans_iters: int = 15):
    if init not in INITS:
        raise ValueError(f"unknown SNMF init {init!r}; choose one of {INITS}")
    if k > min(rows.n, rows.d) and init == "svd":
        raise ValueError(f"svd initialisation needs rank <= min(tokens, width) = {min(rows.n, rows.d)}")
    if init == "random":
        return _random(rows, k, seed, device)
    if init == "svd":
        return _svd(rows, k, chunk, device)
    return _kmeans(rows, k, seed, kmeans_iters, chunk, device)


# -- the full-batch iteration, streamed ------------------------------------------------------
def _first_pass(rows: Rows, F: Tensor, G: Tensor, chunk: int, device):
    """``XᵀG``, ``GᵀG``, ``||X||²`` and the loss of the initialisation."""
    d, k = F.shape
    XtG = torch.zeros(d, k, device=device)
    GtG = torch.zeros(k, k, dtype=torch.float64, device=device)
    x_sq = torch.zeros((), dtype=torch.float64, device=device)
    cross = torch.zeros((), dtype=torch.float64, device=device)
    for a, X in rows.chunks(chunk, device):
        g = G[a : a + len(X)]
        x_sq += X.pow(2).sum(dtype=torch.float64)
        cross += (g * (X @ F)).sum(dtype=torch.float64)
        XtG += X.T @ g
        GtG += (g.T @ g).double()
    x_sq = x_sq.item()
    return XtG, GtG, x_sq, x_sq + rows_loss(cross, GtG, F.T @ F)


def iterate(
    rows: Rows,
    F: Tensor,
    G: Tensor,
    XtG: Tensor,
    GtG: Tensor,
    *,
    keep: int,
    ridge: float,
    eps: float,
    chunk: int,
    device,
) -> tuple[Tensor, float]:
    """One iteration; updates G, XtG and GtG in place and returns (F, loss of (F, G))."""
    F, support = ops.wta(ops.f_step(XtG, GtG, ridge), keep)
    c = GtG.diagonal().clamp(min=0).sqrt().clamp(min=1e-8).to(F.dtype)  # scale transfer: G/c, F*c
    F = F * c
    Q = F.T @ F
    XtG.zero_()
    GtG.zero_()
    cross = torch.zeros((), dtype=torch.float64, device=device)
    for a, X in rows.chunks(chunk, device):
        P = ops.x_times_f(X, F, support)
        g = ops.g_step(G[a : a + len(X)] / c, P, Q, eps)
        G[a : a + len(X)] = g
        cross += (g * P).sum(dtype=torch.float64)
        XtG += X.T @ g
        GtG += (g.T @ g).double()
    return F, rows_loss(cross, GtG, Q)


def rows_loss(cross: Tensor, GtG: Tensor, Q: Tensor) -> float:
    """``-2⟨G, XF⟩ + ⟨GᵀG, FᵀF⟩`` (add ``||X||²`` for the loss); one device sync."""
    return (-2 * cross + (GtG * Q.double()).sum()).item()


def fit_full(rows: Rows, cfg, device, progress: bool = True) -> FitResult:
    """The paper's iteration from ``cfg`` (rank, sparsity, init, max_iter, patience, tol, ...).

    The best iterate is chosen among the iterations (each satisfies the WTA constraint), not the
    initialisation, whose dense F would not be a valid answer: with the random initialisation the
    returned loss is far below the initial one, but an SVD start on exactly low-rank data can have
    a lower (unconstrained) loss than any sparse iterate. ``initial_loss`` is reported either way.
    The loss is computed from ``XᵀG``-style statistics (never the reconstruction): exact up to
    float32 rounding, about 1e-6·||X||².
    """
    F, G = initialise(rows, cfg.rank, cfg.init, cfg.seed, cfg.chunk_tokens, device, cfg.kmeans_iters)
    XtG, GtG, x_sq, loss0 = _first_pass(rows, F, G, cfg.chunk_tokens, device)
    res = FitResult(F=F, G=G.clone() if cfg.keep_best else G, initial_loss=loss0, best_loss=math.inf, x_sq=x_sq)
    keep, wait = ops.keep_count(cfg.sparsity, rows.d), 0
    bar = tqdm(range(cfg.max_iter), desc=f"SNMF k={cfg.rank}", disable=not progress, mininterval=1.0)
    for it in bar:
        F, part = iterate(
            rows, F, G, XtG, GtG, keep=keep, ridge=cfg.ridge, eps=cfg.eps, chunk=cfg.chunk_tokens, device=device
        )
        loss = x_sq + part
        if not math.isfinite(loss):
            raise FloatingPointError(f"SNMF loss became {loss} at iteration {it}; check the inputs' scale")
        res.history.append(loss)
        res.n_iter = it + 1
        if loss < res.best_loss - cfg.tol:
            res.best_loss, res.best_iter, res.F, wait = loss, it, F, 0
            if cfg.keep_best:
                res.G.copy_(G)
        else:
            wait += 1
            if wait >= cfg.patience:
                break
        if it % 20 == 0:
            bar.set_postfix(loss=f"{loss:.5g}", fvu=f"{loss / max(x_sq, 1e-30):.4f}")
    if not cfg.keep_best or not res.history:  # the last iterate, not the best one
        res.F, res.best_loss, res.best_iter = F, res.history[-1] if res.history else loss0, res.n_iter - 1
    return res


def fit_restarts(rows: Rows, cfg, device, progress: bool = True) -> FitResult:
    """``cfg.n_init`` runs of ``fit_full`` from seeds ``cfg.seed, cfg.seed + 1, ...``; the run with
    the lowest best loss is returned (as k-means implementations keep their best start). The SVD
    start is deterministic, so it runs once whatever ``n_init`` says."""
    runs = 1 if cfg.init == "svd" else cfg.n_init
    best = None
    for i in range(runs):
        res = fit_full(rows, dataclasses.replace(cfg, seed=cfg.seed + i), device, progress)
        if best is None or res.best_loss < best.best_loss:
            best = res
    best.restarts = runs
    return best
