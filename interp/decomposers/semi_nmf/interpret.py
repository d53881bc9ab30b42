"""Interpretation data for semi-NMF features (Shafran et al., section "mapping features"):
neuron support, residual direction, top-activating tokens with context windows, vocabulary
projection, and a concept-concentration score for labelled corpora.

Token provenance is a ``TokenGrid``: the token ids ``[N, S]`` the activations came from, a group
id per position (document or sentence; -1 for BOS/pad, which are never shown) and, for each row
of the activation matrix, its flat position ``seq * S + pos``. Context windows stay inside their
group, as the paper's stay inside their sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from jaxtyping import Float, Int

from interp.activations import ActivationCache
from interp.models import LoadedModel, vocab_projection


@dataclass
class TokenGrid:
    tokens: Int[np.ndarray, "N S"]
    groups: Int[np.ndarray, "N S"]  # -1: not a real token (BOS, separator, pad)
    index: Int[np.ndarray, "n"]  # flat position of each activation row

    @classmethod
    def from_cache(cls, cache: ActivationCache, index: np.ndarray) -> "TokenGrid":
        groups = np.array(cache.token_array("doc_ids"))
        groups[cache.special_mask()] = -1
        return cls(np.array(cache.token_array("tokens")), groups, np.asarray(index))


@dataclass
class TopActivations:
    values: Float[torch.Tensor, "F K"]  # coefficient of each top token (0 where fewer fire)
    rows: Int[torch.Tensor, "F K"]  # activation-row index of each top token
    context: Int[torch.Tensor, "F K W"]  # token ids of the window, -1 outside the group
    groups: Int[torch.Tensor, "F K"]  # group (document / sentence) id of each top token
    window: int  # the top token sits at context[..., window]


def top_rows(code_blocks: Iterable[tuple[int, torch.Tensor]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Streaming top-``k`` rows per feature over ``(start, codes [c, F])`` blocks: (values, rows) [F, k]."""
    best_v = best_i = None
    for start, codes in code_blocks:
        codes = codes.float()
        ids = torch.arange(start, start + len(codes), device=codes.device).expand(codes.shape[1], -1)
        v, i = codes.T, ids
        if best_v is not None:
            v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
        top = v.topk(min(k, v.shape[1]), dim=1)
        best_v, best_i = top.values, i.gather(1, top.indices)
    if best_v is None:
        raise ValueError("no activations to rank")
    return best_v.cpu(), best_i.cpu()


def contexts(grid: TokenGrid, rows: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token windows ``[..., 2w+1]`` around activation rows (-1 outside the row's group) and groups."""
    n_seq, s = grid.tokens.shape
    flat = grid.index[rows.numpy()]
    seq, pos = flat // s, flat % s
    off = np.arange(-window, window + 1)
    p = pos[..., None] + off
    inside = (p >= 0) & (p < s)
    pc = np.clip(p, 0, s - 1)
    seq_b = np.broadcast_to(seq[..., None], pc.shape)
    group = grid.groups[seq, pos]
    same = inside & (grid.groups[seq_b, pc] == group[..., None])
    toks = np.where(same, grid.tokens[seq_b, pc], -1)
    return torch.from_numpy(toks), torch.from_numpy(group)


def code_blocks(snmf, rows, device=None) -> Iterator[tuple[int, torch.Tensor]]:
    """The fit's own coefficients when they cover ``rows``, else NNLS codes block by block."""
    codes = snmf.fit_codes
    if codes is not None and len(codes) == rows.n:
        for a in range(0, rows.n, snmf.cfg.chunk_tokens):
            yield a, codes[a : a + snmf.cfg.chunk_tokens]
        return
    for a, X in rows.chunks(snmf.cfg.chunk_tokens, device or snmf.W_dec.device):
        yield a, snmf.encode(X)


def top_activations(snmf, rows, grid: TokenGrid, k: int = 25, window: int = 15) -> TopActivations:
    """Each feature's ``k`` highest-coefficient tokens with ``±window``-token contexts."""
    values, idx = top_rows(code_blocks(snmf, rows), k)
    ctx, groups = contexts(grid, idx, window)
    return TopActivations(values, idx, ctx, groups, window)


def describe(
    snmf,
    model: LoadedModel,
    rows,
    grid: TokenGrid,
    k: int = 25,
    window: int = 15,
    vocab_k: int = 25,
    layer: int | None = None,
) -> list[dict]:
    """Per feature: neuron support, top/bottom vocabulary tokens of ±ẑ W_out, top contexts (text)."""
    ids, weights = snmf.support()
    vp = vocab_projection(model, snmf.residual_directions(model, layer), k=vocab_k)
    top = top_activations(snmf, rows, grid, k, window)
    dec = model.tokenizer.convert_ids_to_tokens
    out = []
    for f in range(snmf.cfg.rank):
        ctx = [
            dict(
                value=float(v),
                row=int(r),
                left=_text(model, c[:window]),
                token=_text(model, c[window : window + 1]),
                right=_text(model, c[window + 1 :]),
            )
            for v, r, c in zip(top.values[f], top.rows[f], top.context[f].tolist())
            if v > 0
        ]
        out.append(
            dict(
                feature=f,
                neurons=ids[f].tolist(),
                weights=weights[f].tolist(),
                top_tokens=dec(vp.top_ids[f].tolist()),
                bottom_tokens=dec(vp.bottom_ids[f].tolist()),
                contexts=ctx,
            )
        )
    return out


def _text(model: LoadedModel, ids: list[int]) -> str:
    return model.tokenizer.decode([i for i in ids if i >= 0])


def concentration(
    top_labels: Int[torch.Tensor, "F K"], all_labels: Int[torch.Tensor, "n"], draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Mean over features of the share of its top tokens that carry its most common label, and the
    same statistic for ``K`` tokens drawn uniformly at random from the corpus (chance)."""

    def purity(lab: torch.Tensor) -> torch.Tensor:
        n_lab = int(all_labels.max()) + 1
        counts = torch.zeros(len(lab), n_lab).scatter_add_(1, lab, torch.ones_like(lab, dtype=torch.float))
        return counts.max(1).values / lab.shape[1]

    gen = torch.Generator().manual_seed(seed)
    k = top_labels.shape[1]
    rand = torch.stack([torch.randperm(len(all_labels), generator=gen)[:k] for _ in range(draws)])
    return purity(top_labels).mean().item(), purity(all_labels[rand]).mean().item()
