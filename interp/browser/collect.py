"""Streaming per-feature statistics for the feature store, bounded by features x k in memory.

Each chunk of codes ``[T, F]`` (T tokens of whole rows, F features) updates:

- ``SlotTopK``: the k largest scores per feature with their global token position and the
  feature's codes on a window of tokens around it. Slots are unordered; a chunk's best
  candidates are merged with ``topk`` over the concatenation ``[F, k + k']``, and only the
  candidates that enter (a number that shrinks like ``k log n`` over the run) have their window
  gathered and written into the slots they evict. Used twice: for top activations (score = code,
  or ``|code|``) and for a uniform sample of active tokens (score = a seeded random key, i.e.
  bottom-k / priority sampling), from which activation-quantile examples are drawn.
- ``Histogram``: exact counts of the nonzero codes of each feature in ``n_bins`` linear bins of
  magnitude per sign over ``[0, 2**e_f)``; when a value exceeds a feature's range, the range is
  doubled (pairs of bins merged) until it fits, so counts are never re-estimated. With the
  count of zeros the histogram sums to the number of tokens.
- ``Moments``: count of nonzero codes, sum and max per feature.

All state is plain tensors (``state_dict``/``load_state_dict``), so a build can checkpoint it as
safetensors and resume.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int

NEG_INF = float("-inf")
EMPTY = -126  # histogram exponent of a feature with no counts yet


def window_start(pos: torch.Tensor, seq_len: int, left: int, width: int) -> torch.Tensor:
    """First position of the ``width``-token window around ``pos`` that stays inside its row."""
    return (pos - left).clamp(min=0).clamp(max=seq_len - width)


class SlotTopK:
    """The k best (score, position, window of codes) per feature, kept in unordered slots."""

    def __init__(self, n_features: int, k: int, width: int, device: torch.device | str = "cpu"):
        self.k, self.width = k, width
        self.score = torch.full((n_features, k), NEG_INF, device=device)
        self.value = torch.zeros(n_features, k, device=device)  # the code (differs from score for samples)
        self.pos = torch.full((n_features, k), -1, dtype=torch.long, device=device)  # global token index
        self.window = torch.zeros(n_features, k, width, device=device)

    def update(
        self, score: Float[torch.Tensor, "T F"], codes3: Float[torch.Tensor, "R S F"], first_pos: int, left: int
    ) -> int:
        """Merge a chunk: ``score`` over its T = R*S tokens, ``codes3`` its codes; returns #entered."""
        t = score.shape[0]
        kk = min(self.k, t)
        cand_score, cand_tok = score.T.contiguous().topk(kk, dim=1)  # [F, kk] (contiguous: 2x faster)
        both = torch.cat([self.score, cand_score], dim=1)
        keep = torch.zeros_like(both, dtype=torch.bool)
        keep.scatter_(1, both.topk(self.k, dim=1).indices, True)
        keep &= both > NEG_INF  # -inf slots are free
        evicted = ~keep[:, : self.k]
        entered = keep[:, self.k :]
        # Pair each feature's evicted slots with its entering candidates, both in row-major order.
        n_in = entered.sum(1)
        slot_mask = evicted & (evicted.cumsum(1) <= n_in[:, None])
        f_slot = slot_mask.nonzero()
        f_cand = entered.nonzero()
        if len(f_cand) == 0:
            return 0
        f, slot, cand = f_slot[:, 0], f_slot[:, 1], f_cand[:, 1]
        tok = cand_tok[f, cand]
        self.score[f, slot] = cand_score[f, cand]
        self.pos[f, slot] = first_pos + tok
        seq_len = codes3.shape[1]
        row, p = tok // seq_len, tok % seq_len
        self.value[f, slot] = codes3[row, p, f]
        start = window_start(p, seq_len, left, self.width)
        cols = start[:, None] + torch.arange(self.width, device=start.device)
        self.window[f, slot] = codes3[row[:, None], cols, f[:, None]]
        return len(f)

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{n}": getattr(self, n) for n in ("score", "value", "pos", "window")}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        for n in ("score", "value", "pos", "window"):
            getattr(self, n).copy_(state[f"{prefix}.{n}"])

    def sorted(self) -> tuple[torch.Tensor, ...]:
        """(score, value, pos, window) per feature, best first; empty slots have score -inf."""
        order = self.score.argsort(dim=1, descending=True)
        take = lambda t: t.gather(1, order) if t.ndim == 2 else t.gather(1, order[..., None].expand_as(t))
        return take(self.score), take(self.value), take(self.pos), take(self.window)


class Histogram:
    """Exact per-feature histogram of nonzero codes with power-of-two ranges that grow by doubling.

    ``counts[f, s, b]``: codes of sign s (0 positive, 1 negative) with ``|code|`` in bin b of
    ``[0, 2**exp[f])`` split into ``n_bins`` equal bins; ``n_bins`` must be a power of two.
    """

    def __init__(self, n_features: int, n_bins: int = 64, device: torch.device | str = "cpu"):
        if n_bins & (n_bins - 1):
            raise ValueError(f"n_bins must be a power of two, got {n_bins}")
        self.n_bins = n_bins
        self.counts = torch.zeros(n_features, 2, n_bins, dtype=torch.long, device=device)
        self.exp = torch.full((n_features,), EMPTY, dtype=torch.long, device=device)  # empty: any range fits

    def _grow(self, need: Int[torch.Tensor, "F"]) -> None:
        """Raise ``exp`` to ``need`` where larger, merging bins by the factor the range grows."""
        grow = (need - self.exp).clamp(min=0)
        empty = self.exp == EMPTY  # (a feature with counts has exp > EMPTY)
        self.exp = torch.where(empty & (need > EMPTY), need, torch.maximum(self.exp, need))
        bits = self.n_bins.bit_length() - 1
        for d in grow[~empty & (grow > 0)].unique().tolist():
            rows = (~empty & (grow == d)).nonzero().squeeze(1)
            block = self.counts[rows]
            if d >= bits:
                merged = torch.zeros_like(block)
                merged[..., 0] = block.sum(-1)
            else:
                summed = block.view(len(rows), 2, self.n_bins >> d, 1 << d).sum(-1)
                merged = torch.cat([summed, summed.new_zeros(len(rows), 2, self.n_bins - summed.shape[-1])], dim=-1)
            self.counts[rows] = merged

    def update(self, codes: Float[torch.Tensor, "T F"]) -> None:
        tok, f = codes.nonzero(as_tuple=True)
        if len(f) == 0:
            return
        v = codes[tok, f]
        mag = v.abs()
        peak = mag.new_zeros(codes.shape[1]).scatter_reduce(0, f, mag, "amax")
        has = peak > 0
        need = torch.full_like(self.exp, EMPTY)
        need[has] = (torch.floor(torch.log2(peak[has])).long() + 1).clamp(min=EMPTY + 1)  # 2**need > peak
        self._grow(need)
        width = torch.exp2(self.exp[f].double()) / self.n_bins
        b = (mag.double() / width).long().clamp(max=self.n_bins - 1)
        sign = (v < 0).long()
        flat = (f * 2 + sign) * self.n_bins + b
        self.counts.view(-1).index_add_(0, flat, torch.ones_like(flat))

    def edges(self) -> Float[torch.Tensor, "F"]:
        """Upper end of each feature's range (``2**exp``; 0 for a feature that never fired)."""
        top = torch.exp2(self.exp.double()).float()
        return torch.where(self.counts.sum((1, 2)) > 0, top, torch.zeros_like(top))


class Moments:
    """Count of nonzero codes, their sum, and the max code per feature."""

    def __init__(self, n_features: int, device: torch.device | str = "cpu"):
        self.active = torch.zeros(n_features, dtype=torch.long, device=device)
        self.total = torch.zeros(n_features, dtype=torch.float64, device=device)
        self.max = torch.full((n_features,), NEG_INF, device=device)

    def update(self, codes: Float[torch.Tensor, "T F"]) -> None:
        self.active += torch.count_nonzero(codes, dim=0)
        self.total += codes.sum(0)  # float32 per chunk, float64 across chunks
        self.max = torch.maximum(self.max, codes.amax(0))


def sink_mask(x: Float[torch.Tensor, "R S D"], special: torch.Tensor, ratio: float) -> torch.Tensor:
    """Attention-sink positions ``[R, S]`` (bool) of site activations ``x``: the first token after
    a row's BOS, and every token whose activation norm exceeds ``ratio`` times the median norm of
    its row's ordinary tokens (the "massive activations" of Sun et al. 2024; per row, so the result
    does not depend on how rows are batched). ``special`` marks BOS/separators, which are excluded
    already and left out of the median; ``ratio=0`` turns the norm test off."""
    special = special.to(x.device)
    out = torch.zeros_like(special)
    if x.shape[1] > 1:
        out[:, 1] = special[:, 0]
    if ratio > 0:
        norm = x.float().norm(dim=-1).masked_fill(special, float("nan"))
        med = norm.nanmedian(dim=1, keepdim=True).values
        out |= norm > ratio * med  # NaN (special, or a row of only special tokens) compares False
    return out & ~special
