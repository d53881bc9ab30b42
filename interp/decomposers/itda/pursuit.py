"""Greedy sparse coding over a fixed dictionary: matching pursuit (MP) and orthogonal MP (OMP).

Both take a batch ``x [B, D]`` and a dictionary of unit-norm rows ``atoms [N, D]`` and return the
code as ``(indices [B, K], values [B, K])``: never a dense ``[B, N]`` code matrix. The
correlations of one step are a transient ``[b, N]`` block for a chunk of ``b`` rows, bounded by
``max_block`` elements, so memory does not grow with the number of tokens.

- ``matching_pursuit`` follows ITDA (Leask et al. 2025, Alg. 2 and the release code): exactly
  ``k`` steps, each picks the atom with the largest |correlation| with the residual, the signed
  coefficient is that correlation, atoms may be picked again (their coefficients add up). Repeats
  are merged on return, so an index appears at most once per row; freed slots hold value 0.
- ``orthogonal_mp`` (Pati et al. 1993) picks ``min(k, N)`` distinct atoms the same way but refits
  all coefficients by least squares after each pick (batched normal equations with a tiny ridge).
Both run on whatever device the inputs are on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

MAX_BLOCK = 1 << 24  # elements of one [rows, N] buffer (64 MB in fp32; MP holds three)
GRAM_MAX_ATOMS = 16384  # above this the [N, N] Gram matrix (1 GB in fp32) is not worth its memory


def merge_repeats(
    idx: Int[torch.Tensor, "B K"], val: Float[torch.Tensor, "B K"]
) -> tuple[Int[torch.Tensor, "B K"], Float[torch.Tensor, "B K"]]:
    """Sum the values of repeated indices in each row; freed slots get value 0 (index: the row's
    smallest index), so a dense scatter of the result equals a scatter-add of the input."""
    idx, order = idx.sort(dim=1)
    val = val.gather(1, order)
    first = torch.ones_like(idx, dtype=torch.bool)
    first[:, 1:] = idx[:, 1:] != idx[:, :-1]
    group = first.long().cumsum(1) - 1
    merged_val = torch.zeros_like(val).scatter_add_(1, group, val)
    merged_idx = idx[:, :1].expand_as(idx).clone().scatter_(1, group, idx)
    return merged_idx, merged_val


def _mp_block(
    x: torch.Tensor, atoms: torch.Tensor, k: int, gram: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.empty(len(x), k, dtype=torch.long, device=x.device)
    val = torch.empty(len(x), k, dtype=x.dtype, device=x.device)
    corr = x @ atoms.T  # correlations with the residual; buffers are reused because fresh
    mag = torch.empty_like(corr)  # [b, N] allocations page-fault
    rows = torch.empty_like(corr) if gram is not None else None
    residual = x.clone() if gram is None else None
    for t in range(k):
        if residual is not None and t:
            torch.matmul(residual, atoms.T, out=corr)
        j = torch.abs(corr, out=mag).argmax(dim=1)
        c = corr.gather(1, j[:, None])
        if residual is not None:
            residual -= c * atoms[j]
        else:  # r <- r - c a_j  implies  r A^T <- r A^T - c (A A^T)[j]: no [b, D, N] product
            torch.index_select(gram, 0, j, out=rows)
            corr.addcmul_(rows, c, value=-1)
        idx[:, t], val[:, t] = j, c[:, 0]
    return merge_repeats(idx, val)


def matching_pursuit(
    x: Float[torch.Tensor, "B D"],
    atoms: Float[torch.Tensor, "N D"],
    k: int,
    gram: Float[torch.Tensor, "N N"] | None = None,
    max_block: int = MAX_BLOCK,
) -> tuple[Int[torch.Tensor, "B K"], Float[torch.Tensor, "B K"]]:
    """``k`` steps of matching pursuit (signed coefficients, atoms reusable). With ``gram``
    (``atoms @ atoms.T``) the correlations are updated through it, which on CPU is several times
    faster than recomputing them from the residual (the result is the same up to rounding)."""
    if len(atoms) == 0 or k == 0 or len(x) == 0:
        return _empty(x)
    parts = [_mp_block(x[a : a + s], atoms, k, gram) for a, s in _blocks(x, atoms, max_block)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _omp_block(x: torch.Tensor, atoms: torch.Tensor, k: int, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(k, len(atoms))
    residual = x.clone()
    idx = torch.empty(len(x), k, dtype=torch.long, device=x.device)
    coef = x.new_zeros(len(x), 0)
    for t in range(k):
        corr = (residual @ atoms.T).abs()
        if t:
            corr.scatter_(1, idx[:, :t], -1.0)  # each atom at most once
        idx[:, t] = corr.argmax(dim=1)
        chosen = atoms[idx[:, : t + 1]]  # [b, t+1, D]
        gram = chosen @ chosen.mT + ridge * torch.eye(t + 1, dtype=x.dtype, device=x.device)
        coef = torch.linalg.solve(gram, (chosen @ x[:, :, None]))[..., 0]  # [b, t+1]
        residual = x - (coef[:, None, :] @ chosen)[:, 0]
    return idx, coef


def orthogonal_mp(
    x: Float[torch.Tensor, "B D"],
    atoms: Float[torch.Tensor, "N D"],
    k: int,
    ridge: float = 1e-6,
    max_block: int = MAX_BLOCK,
) -> tuple[Int[torch.Tensor, "B K"], Float[torch.Tensor, "B K"]]:
    """Orthogonal matching pursuit: ``min(k, N)`` distinct atoms, least-squares coefficients."""
    if len(atoms) == 0 or k == 0 or len(x) == 0:
        return _empty(x)
    parts = [_omp_block(x[a : a + s], atoms, k, ridge) for a, s in _blocks(x, atoms, max_block)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _blocks(x: torch.Tensor, atoms: torch.Tensor, max_block: int) -> list[tuple[int, int]]:
    step = max(1, max_block // max(1, len(atoms)))
    return [(a, step) for a in range(0, len(x), step)]


def _empty(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.zeros(len(x), 0, dtype=torch.long, device=x.device), x.new_zeros(len(x), 0))


def sparse_decode(
    idx: Int[torch.Tensor, "B K"], val: Float[torch.Tensor, "B K"], atoms: Float[torch.Tensor, "N D"]
) -> Float[torch.Tensor, "B D"]:
    """``sum_j val[b, j] * atoms[idx[b, j]]`` without forming a dense code matrix."""
    if idx.shape[1] == 0:
        return atoms.new_zeros(len(idx), atoms.shape[1])
    return F.embedding_bag(idx, atoms, per_sample_weights=val.to(atoms.dtype), mode="sum")


def gram_matrix(atoms: Float[torch.Tensor, "N D"]) -> Float[torch.Tensor, "N N"] | None:
    """``atoms @ atoms.T`` for MP, or None when the dictionary is too large for it to pay."""
    return atoms @ atoms.T if len(atoms) <= GRAM_MAX_ATOMS else None


def grow_gram(gram: torch.Tensor | None, atoms: torch.Tensor, new: torch.Tensor) -> torch.Tensor | None:
    """The Gram matrix of ``cat([atoms, new])`` from that of ``atoms`` (None past the size limit)."""
    if len(atoms) + len(new) > GRAM_MAX_ATOMS:
        return None
    if len(atoms) == 0:
        return gram_matrix(new)
    if gram is None:
        return gram_matrix(torch.cat([atoms, new]))
    cross = new @ atoms.T
    return torch.cat([torch.cat([gram, cross.T], 1), torch.cat([cross, new @ new.T], 1)])


def pursue(
    x: torch.Tensor, atoms: torch.Tensor, k: int, method: str = "mp", gram: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch on ``method`` ("mp" or "omp"); ``gram`` speeds up MP (OMP ignores it)."""
    if method == "mp":
        return matching_pursuit(x, atoms, k, gram)
    if method == "omp":
        return orthogonal_mp(x, atoms, k)
    raise ValueError(f"unknown pursuit method {method!r}; choose 'mp' or 'omp'")
