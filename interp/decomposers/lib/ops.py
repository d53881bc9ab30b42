"""Numerical kernels of the Local Interaction Basis (Bushnaq et al. 2024, arXiv 2405.10928).

Bias folding, Gram matrices and their (masked) eigendecompositions, integration rules, Rademacher
stochastic sources, and the two Jacobian contractions LIB needs: the interaction matrix ``M``
(within-position products of the integrated Jacobian, averaged over data and input positions) and
the squared-attribution edges. Conventions follow ApolloResearch/rib: activations carry a constant
coordinate (1 on data) as their **last** entry; the integration path ``alpha * f`` scales it too.
All Jacobians are vector-Jacobian products batched over many cotangents at once
(``torch.autograd.grad(..., is_grads_batched=True)``, i.e. vmap over the backward pass).
"""

from __future__ import annotations

import copy
import itertools
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float

Module = Callable[[torch.Tensor], torch.Tensor]


def append_const(x: Float[torch.Tensor, "B P d"]) -> Float[torch.Tensor, "B P d1"]:
    return torch.cat([x, torch.ones_like(x[..., :1])], -1)


def in_float64(fn: Module) -> Module:
    """``fn`` run in float64, the precision of LIB's Gram matrices and Jacobians.

    A ``torch.nn.Module`` holding floating-point parameters or buffers of another dtype is replaced
    by a float64 deep copy (the caller's module is left as it was). Any other callable is called as
    given on float64 inputs and its output is cast to float64, so a callable that computes in a
    lower precision must cast its inputs itself (as ``cut.residual_block_cut`` does).
    """
    if isinstance(fn, torch.nn.Module):
        tensors = itertools.chain(fn.parameters(), fn.buffers())
        if any(t.is_floating_point() and t.dtype != torch.float64 for t in tensors):
            fn = copy.deepcopy(fn).double()
    folded = getattr(fn, "folded", False)

    def run(f):
        return fn(f).to(torch.float64)

    run.folded = folded
    return run


def fold(fn: Module, mode: str = "passthrough") -> Module:
    """A module on folded activations ``[B, P, d + 1] -> [B, P', d' + 1]`` from ``fn``.

    ``fn`` with ``fn.folded = True`` already takes and returns the constant coordinate (exact rib
    folding, biases multiplied by it). Otherwise the output's constant is the input's constant at
    the last ``P'`` positions and ``mode`` says how the input constant enters ``fn``:
    ``"passthrough"`` (it does not: right for bias-free blocks such as Llama's) or
    ``"perspective"`` (``c * fn(x / c)``: equals rib's folding for chains of affine maps and ReLUs,
    and makes the output positively homogeneous along the integration path).
    """
    if getattr(fn, "folded", False):
        return fn
    if mode not in ("passthrough", "perspective"):
        raise ValueError(f"fold mode {mode!r}: use 'passthrough' or 'perspective'")

    def folded(f):
        x, c = f[..., :-1], f[..., -1:]
        y = fn(x) if mode == "passthrough" else fn(x / c)
        c_out = c[:, c.shape[1] - y.shape[1] :]
        return torch.cat([y if mode == "passthrough" else y * c_out, c_out], -1)

    folded.folded = True
    return folded


def centering(mean: Float[torch.Tensor, "d"]) -> tuple[torch.Tensor, torch.Tensor]:
    """``Y`` with ``[x, c] @ Y = [x - c * mean, c]`` and its inverse (constant coordinate last)."""
    d = mean.shape[0]
    Y = torch.eye(d + 1, dtype=mean.dtype)
    Y[-1, :d] = -mean
    Y_inv = torch.eye(d + 1, dtype=mean.dtype)
    Y_inv[-1, :d] = mean
    return Y, Y_inv


def masked_eigh(
    A: Float[torch.Tensor, "n n"], isolate: list[int], threshold: float, relative: float | None = None
) -> tuple[Float[torch.Tensor, "n r"], Float[torch.Tensor, "r"]]:
    """Eigenvectors of symmetric ``A`` (float64), descending by |eigenvalue|, ``isolate``
    coordinates kept as their own unit directions first (eigenvalue ``A[k, k]``); other
    eigenpairs with |eigenvalue| <= ``threshold`` dropped (rib's truncation; eigenvalues abs()'d),
    and with ``relative``, also those <= ``relative`` x the largest (round-off directions of a
    rank-deficient matrix, e.g. a Gram over fewer tokens than dimensions)."""
    n = A.shape[0]
    rest = [i for i in range(n) if i not in set(isolate)]
    vals, vecs = torch.linalg.eigh(A[rest][:, rest].double())
    vals = vals.abs()
    order = torch.argsort(vals, descending=True)
    vals, vecs = vals[order], vecs[:, order]
    if relative is not None and len(vals):
        threshold = max(threshold, relative * float(vals[0]))
    keep = vals > threshold
    U = torch.zeros(n, len(isolate) + int(keep.sum()), dtype=torch.float64)
    for k, i in enumerate(isolate):
        U[i, k] = 1.0
    U[rest, len(isolate) :] = vecs[:, keep]
    lam = torch.cat([A.double().diagonal()[isolate].abs(), vals[keep]])
    return U, lam


def integration_rule(method: str, n_intervals: int) -> tuple[list[float], list[float]]:
    """Points ``alpha`` and weights of the integral over [0, 1] of ``d F(alpha f) / d(alpha f)``.

    ``gradient``: the plain Jacobian at alpha = 1 (every shipped rib config). ``trapezoidal``: rib's
    rule, n+1 points on [eps, 1 - eps], eps = 1e-3 / (n + 1), end points half weight, weights
    rescaled to sum to 1. ``gauss-legendre``: n+1 nodes mapped to [0, 1].
    """
    if method == "gradient":
        if n_intervals != 0:
            raise ValueError("integration='gradient' takes n_intervals=0 (a point at alpha=1)")
        return [1.0], [1.0]
    if method == "trapezoidal":
        if n_intervals < 1:
            raise ValueError("trapezoidal integration needs n_intervals >= 1")
        eps = 1e-3 / (n_intervals + 1)
        alphas = np.linspace(eps, 1 - eps, n_intervals + 1)
        h = (alphas[1] - alphas[0]) / (1 - 2 * eps)
        w = np.full(n_intervals + 1, h)
        w[[0, -1]] *= 0.5
        return alphas.tolist(), w.tolist()
    if method == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(n_intervals + 1)
        return ((x + 1) / 2).tolist(), (w / 2).tolist()
    raise ValueError(f"integration {method!r}: use 'gradient', 'trapezoidal' or 'gauss-legendre'")


def cotangents(
    B: int,
    P: int,
    r: int,
    n_pos: int | None,
    n_hidden: int | None,
    gen: torch.Generator,
    dtype=torch.float64,
) -> tuple[Float[torch.Tensor, "K B P r"], Float[torch.Tensor, "K r"]]:
    """The output cotangents whose VJPs LIB contracts, and each one's output-feature mask.

    Exact: one per (t, i). ``n_pos`` Rademacher sources over output positions: one per (source, i),
    ``phi[b, t] delta_i``. ``n_hidden`` over output features: one per (t, source). Both: one per
    (pos source, hidden source), ``phi[b, t] psi[b, i]``. Cross terms vanish in expectation, so
    ``sum_k vjp_k (x) vjp_k / n_sources`` is an unbiased estimate of the exact sum.
    """

    def rad(*shape):
        return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(dtype)

    eye_r = torch.eye(r, dtype=dtype)
    if n_pos is None and n_hidden is None:
        cot = torch.einsum("tu,ij->tiuj", torch.eye(P, dtype=dtype), eye_r).reshape(P * r, 1, P, r)
        return cot.expand(P * r, B, P, r), eye_r.repeat(P, 1)
    if n_hidden is None:
        phi = rad(n_pos, B, P)
        cot = torch.einsum("sbt,ij->sibtj", phi, eye_r).reshape(n_pos * r, B, P, r)
        return cot, eye_r.repeat(n_pos, 1)
    psi = rad(n_hidden, B, r)
    if n_pos is None:
        cot = torch.einsum("tu,hbi->thbui", torch.eye(P, dtype=dtype), psi).reshape(P * n_hidden, B, P, r)
    else:
        cot = torch.einsum("sbt,hbi->shbti", rad(n_pos, B, P), psi).reshape(n_pos * n_hidden, B, P, r)
    return cot, torch.ones(cot.shape[0], r, dtype=dtype)


def integrated_vjps(
    fn: Module,
    x: Float[torch.Tensor, "B P d"],
    cot: Float[torch.Tensor, "K B Q r"],
    alphas: list[float],
    weights: list[float],
    chunk: int,
) -> Float[torch.Tensor, "K B P d"]:
    """``sum_a w_a * cot_k . dfn(a x)/d(a x)`` for every cotangent k, ``chunk`` VJPs per backward."""
    out = torch.zeros(cot.shape[0], *x.shape, dtype=x.dtype)
    for a, w in zip(alphas, weights):
        xa = (a * x).detach().requires_grad_(True)
        with torch.enable_grad():
            y = fn(xa)
            for k0 in range(0, cot.shape[0], chunk):
                c = cot[k0 : k0 + chunk].to(y.dtype)
                (g,) = torch.autograd.grad(y, xa, c, retain_graph=True, is_grads_batched=True)
                out[k0 : k0 + chunk] += w * g
    return out


def vjp_chunk(B: int, P: int, d: int, budget_bytes: float = 2.5e8) -> int:
    """How many cotangents to batch in one backward pass within a float64 memory budget."""
    return max(1, int(budget_bytes // (8 * max(1, B * P * d) * 4)))


def accumulate_M(grads: Float[torch.Tensor, "K B P d"], R_pinv: Float[torch.Tensor, "r d"]) -> torch.Tensor:
    """``sum_{k, b, s} J_z J_z^T`` with ``J_z = grads @ R_pinv^T`` (whitened-PCA coordinates);
    products within each input position s (positions act as extra samples)."""
    Jz = grads @ R_pinv.T
    return torch.einsum("kbsi,kbsj->ij", Jz, Jz)


def accumulate_edges(
    grads: Float[torch.Tensor, "K B P d"],
    C_pinv: Float[torch.Tensor, "r d"],
    f_hat: Float[torch.Tensor, "B P r"],
    out_mask: Float[torch.Tensor, "K o"],
) -> Float[torch.Tensor, "o r"]:
    """``sum_k sum_b (sum_s dF_k/df_hat_{s,j} f_hat_{s,j})^2`` assigned to output feature of k."""
    attr = torch.einsum("kbsj,bsj->kbj", grads @ C_pinv.T, f_hat)
    return torch.einsum("ko,kj->oj", out_mask, attr.pow(2).sum(1))


def data_mean(acts: Float[torch.Tensor, "N P d"]) -> torch.Tensor:
    return acts.double().mean(dim=(0, 1))


def gram(acts: Float[torch.Tensor, "N P d1"], Y: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """``(1/(N P)) sum (f Y)^T (f Y)`` in float64, batched over N."""
    G = torch.zeros(acts.shape[-1], acts.shape[-1], dtype=torch.float64)
    for i in range(0, len(acts), batch):
        fy = acts[i : i + batch].double() @ Y
        G += torch.einsum("bpi,bpj->ij", fy, fy)
    return G / (acts.shape[0] * acts.shape[1])


def n_sources_scale(n_pos: int | None, n_hidden: int | None) -> int:
    return (n_pos or 1) * (n_hidden or 1)


def safe_sqrt(lam: torch.Tensor, threshold: float) -> torch.Tensor:
    """``sqrt(lam)``, with 1 where ``lam`` is at or below threshold (isolated null directions)."""
    return torch.where(lam > threshold, lam.clamp_min(0).sqrt(), torch.ones_like(lam))


__all__ = [
    "append_const",
    "fold",
    "centering",
    "masked_eigh",
    "integration_rule",
    "cotangents",
    "integrated_vjps",
    "vjp_chunk",
    "accumulate_M",
    "accumulate_edges",
    "data_mean",
    "gram",
    "n_sources_scale",
    "safe_sqrt",
]
