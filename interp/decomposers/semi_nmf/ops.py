"""The semi-NMF update steps (Ding, Li & Jordan 2010, with Shafran et al.'s winner-take-all).

Notation follows the paper with the activation matrix transposed to interp's row convention:
``X [N, d]`` holds one token per row (the paper's ``A = Xᵀ``), ``F [d, k]`` is signed (features in
neuron space), ``G [N, k] >= 0`` holds the per-token coefficients, and ``X ≈ G Fᵀ``. Every step is
written on sufficient statistics (``XᵀG``, ``GᵀG``) or on row blocks of ``X`` and ``G``, so the
same functions serve the dense and the streaming fit. ``nnls`` solves the encoding problem
``min_{g >= 0} ||x - g Fᵀ||²`` for a batch of tokens at once.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int

Tensor = torch.Tensor


def keep_count(sparsity: float, d: int) -> int:
    """Neurons kept per feature by the winner-take-all step: ``ceil(p * d)`` (at least 1)."""
    if not 0 < sparsity <= 1:
        raise ValueError(f"sparsity is the fraction of neurons kept per feature, in (0, 1]; got {sparsity}")
    return max(1, math.ceil(sparsity * d))


def f_step(XtG: Float[Tensor, "d k"], GtG: Float[Tensor, "k k"], ridge: float) -> Float[Tensor, "d k"]:
    """Least-squares F: ``F = XᵀG (GᵀG + λI)⁻¹`` (a k×k solve in float64, never an explicit inverse)."""
    eye = torch.eye(GtG.shape[0], dtype=torch.float64, device=GtG.device)
    sol = torch.linalg.solve(GtG.double() + ridge * eye, XtG.T.double()).T  # GᵀG is symmetric
    return sol.to(XtG.dtype)


def wta(F: Float[Tensor, "d k"], keep: int) -> tuple[Float[Tensor, "d k"], Int[Tensor, "k s"]]:
    """Winner-take-all: keep the ``keep`` largest-|value| entries of each column of F, zero the rest.

    Returns the sparse F and each column's kept row ids ``[k, keep]``.
    """
    if keep >= F.shape[0]:
        return F, torch.arange(F.shape[0], device=F.device).expand(F.shape[1], -1)
    idx = F.abs().topk(keep, dim=0).indices  # [keep, k]
    out = torch.zeros_like(F).scatter_(0, idx, F.gather(0, idx))
    return out, idx.T.contiguous()


def x_times_f(
    X: Float[Tensor, "n d"], F: Float[Tensor, "d k"], support: Int[Tensor, "k s"] | None
) -> Float[Tensor, "n k"]:
    """``X F``. When all features together use under a quarter of the neurons (``k·s ≤ d/4``), only
    those are gathered; otherwise a dense matmul, which measured faster than the gather at
    d=1536, k=100, s=16 on CPU (the gather writes a [n, k, s] array as large as X)."""
    if support is None or support.numel() * 4 > F.shape[0]:
        return X @ F
    vals = F.gather(0, support.T).T  # [k, s]
    return torch.einsum("nks,ks->nk", X[:, support], vals)


def split(M: Tensor) -> tuple[Tensor, Tensor]:
    """``(M⁺, M⁻)`` with ``M = M⁺ - M⁻``, both non-negative."""
    return M.clamp(min=0), (-M).clamp(min=0)


def g_step(
    G: Float[Tensor, "n k"], P: Float[Tensor, "n k"], Q: Float[Tensor, "k k"], eps: float
) -> Float[Tensor, "n k"]:
    """Multiplicative G update ``G ⊙ sqrt((P⁺ + G Q⁻) / (P⁻ + G Q⁺ + eps))`` with ``P = X F``, ``Q = FᵀF``.

    Keeps G non-negative; rows are independent, so it runs on any row block of X and G.
    """
    Pp, Pn = split(P)
    Qp, Qn = split(Q)
    return G * ((Pp + G @ Qn) / (Pn + G @ Qp + eps)).sqrt()


def loss_terms(
    G: Float[Tensor, "n k"], P: Float[Tensor, "n k"], GtG: Float[Tensor, "k k"], Q: Float[Tensor, "k k"]
) -> tuple[float, float]:
    """The two G-dependent terms of ``||X - G Fᵀ||² = ||X||² - 2⟨G, XF⟩ + ⟨GᵀG, FᵀF⟩`` (float64 sums).

    ``P = X F``; summed over row blocks (and added to ``||X||²``) they give the exact loss without
    forming the reconstruction.
    """
    return (G * P).sum(dtype=torch.float64).item(), (GtG * Q).sum(dtype=torch.float64).item()


# -- encoding: non-negative least squares against a fixed F -------------------------------------
def _objective(g: Tensor, XF: Tensor, Q: Tensor) -> Tensor:
    """Per-row ``½ gQgᵀ - g·(xF)`` (= ½||x - gFᵀ||² minus a constant)."""
    return 0.5 * ((g @ Q) * g).sum(1) - (g * XF).sum(1)


def _polish(g: Tensor, XF: Tensor, Q: Tensor, rounds: int) -> Tensor:
    """Active-set refinement: re-solve each row exactly on its current positive set, keep improvements."""
    k = Q.shape[0]
    eye = torch.eye(k, dtype=Q.dtype, device=Q.device)
    for _ in range(rounds):
        free = (g > 0) | ((g @ Q - XF) < 0)  # positive, or zero with a descent direction
        m = free.to(Q.dtype)
        A = Q * (m[:, :, None] * m[:, None, :]) + eye * (1 - m)[:, None, :] + 1e-10 * eye
        sol = torch.linalg.solve(A, (XF * m).unsqueeze(-1)).squeeze(-1)
        ok = (sol >= 0).all(1) & (_objective(sol, XF, Q) <= _objective(g, XF, Q))
        g = torch.where(ok[:, None], sol, g)
        if not ok.any():
            break
    return g


def nnls(
    XF: Float[Tensor, "n k"], Q: Float[Tensor, "k k"], iters: int = 300, tol: float = 1e-6, polish: int = 2
) -> Float[Tensor, "n k"]:
    """Solve ``min_{g >= 0} ½ g Q gᵀ - g·xF`` for every row at once (``Q = FᵀF``, ``XF = X F``).

    Accelerated projected gradient (FISTA with adaptive restart, step ``1/λ_max(Q)``) started from
    the clamped unconstrained solution, stopped when every row's projected-gradient norm is below
    ``tol`` relative to ``||xF||``; then ``polish`` active-set rounds solve each row exactly on its
    support (batched ``k×k`` solves over row chunks), which makes the result exact
    whenever the support was identified.
    """
    Q = Q.to(XF.dtype)
    lip = torch.linalg.eigvalsh(Q)[-1].clamp(min=1e-12)
    eye = torch.eye(Q.shape[0], dtype=Q.dtype, device=Q.device)
    g = torch.linalg.solve(Q + 1e-6 * lip * eye, XF.T).T.clamp(min=0)
    y, g_prev = g, g
    t = torch.ones(len(g), 1, dtype=g.dtype, device=g.device)
    scale = XF.norm(dim=1).clamp(min=1e-12)
    for _ in range(iters):
        g = (y - (y @ Q - XF) / lip).clamp(min=0)
        restart = (_objective(g, XF, Q) > _objective(g_prev, XF, Q))[:, None]
        t_new = torch.where(restart, torch.ones_like(t), (1 + (1 + 4 * t * t).sqrt()) / 2)
        y = torch.where(restart, g, g + (t - 1) / t_new * (g - g_prev))
        g_prev, t = g, t_new
        pg = g @ Q - XF
        pg = torch.where(g > 0, pg, pg.clamp(max=0))
        if (pg.norm(dim=1) <= tol * scale).all():
            break
    if polish:
        chunk = max(1, (1 << 24) // Q.shape[0] ** 2)  # rows per batched k×k solve (~64 MB)
        g = torch.cat([_polish(g[a : a + chunk], XF[a : a + chunk], Q, polish) for a in range(0, len(g), chunk)])
    return g
