"""Row sources for the semi-NMF fit: a token-by-neuron matrix read in row blocks, never whole.

``as_rows`` accepts a ``[N, d]`` tensor (any device), an ``ActivationCache`` or a cache path.
A cache is read through its memory map one block of ``chunk`` tokens at a time, so a 10⁶-token
fit never holds the 6 GB activation matrix; only the coefficients ``G [N, k]`` live in memory.
For a cache, ``token_index`` maps each row to its flat position ``seq * S + pos`` in the cache
(BOS/separator/pad tokens left out by default), so coefficients can be traced back to text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from jaxtyping import Float

from interp.activations import ActivationCache
from interp.activations.format import from_storage


class Rows:
    """``n`` rows of width ``d``; ``chunks`` yields ``(start, block)`` as float32 on ``device``."""

    n: int
    d: int
    token_index: np.ndarray | None = None
    model: str | None = None
    site: str | None = None

    def block(self, a: int, b: int) -> torch.Tensor:
        raise NotImplementedError

    def chunks(self, size: int, device: torch.device) -> Iterator[tuple[int, Float[torch.Tensor, "c d"]]]:
        for a in range(0, self.n, size):
            yield a, self.block(a, min(a + size, self.n)).to(device=device, dtype=torch.float32)

    def rows(self, idx: np.ndarray, device: torch.device) -> Float[torch.Tensor, "r d"]:
        """Arbitrary rows (e.g. random tokens for k-means seeding)."""
        raise NotImplementedError


class TensorRows(Rows):
    def __init__(self, x: torch.Tensor, n_tokens: int | None = None):
        if x.ndim != 2:
            raise ValueError(f"activations must be [N, d_mlp], got shape {tuple(x.shape)}")
        self.x = x[:n_tokens] if n_tokens else x
        self.n, self.d = self.x.shape
        if not torch.isfinite(self.x).all():
            raise ValueError("activations contain NaN or inf; check the cache or the model dtype")

    def block(self, a: int, b: int) -> torch.Tensor:
        return self.x[a:b]

    def rows(self, idx: np.ndarray, device: torch.device) -> torch.Tensor:
        return self.x[torch.as_tensor(idx, device=self.x.device)].to(device=device, dtype=torch.float32)


class CacheRows(Rows):
    def __init__(self, cache: ActivationCache, site: str | None, n_tokens: int | None, exclude_special: bool):
        if site is None:
            if len(cache.sites) != 1:
                raise ValueError(f"the cache holds several sites {cache.sites}: say which one (site=...)")
            site = cache.sites[0]
        self.cache, self.site, self.model = cache, site, cache.manifest["model"]
        self.d = cache.width(site)
        keep = (
            ~cache.special_mask()
            if exclude_special
            else np.ones((cache.manifest["n_seqs"], cache.manifest["seq_len"]), dtype=bool)
        )
        self.token_index = np.flatnonzero(keep.reshape(-1))[:n_tokens]
        self.n = len(self.token_index)
        if self.n == 0:
            raise ValueError(f"no tokens to fit in {cache.path} (all excluded)")
        self.flat = cache._raw(site).reshape(-1, self.d)

    def _read(self, flat_idx: np.ndarray) -> torch.Tensor:
        a, b = int(flat_idx[0]), int(flat_idx[-1]) + 1
        if b - a == len(flat_idx):  # contiguous: a slice of the memory map
            arr = np.ascontiguousarray(self.flat[a:b])
        else:
            arr = self.flat[np.sort(flat_idx)]
        return from_storage(arr, self.cache.manifest["dtype"])

    def block(self, a: int, b: int) -> torch.Tensor:
        return self._read(self.token_index[a:b])

    def rows(self, idx: np.ndarray, device: torch.device) -> torch.Tensor:
        order = np.argsort(idx)
        out = self._read(self.token_index[idx[order]])
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        return out[torch.from_numpy(inv)].to(device=device, dtype=torch.float32)


def as_rows(data: Any, site: str | None = None, n_tokens: int | None = None, exclude_special: bool = True) -> Rows:
    """Wrap a tensor, an ``ActivationCache`` or a cache path as a ``Rows`` source."""
    if isinstance(data, Rows):
        return data
    if isinstance(data, (str, Path)):
        data = ActivationCache(data)
    if isinstance(data, ActivationCache):
        return CacheRows(data, site, n_tokens, exclude_special)
    if isinstance(data, torch.Tensor):
        return TensorRows(data, n_tokens)
    if isinstance(data, np.ndarray):
        return TensorRows(torch.from_numpy(data), n_tokens)
    raise TypeError(
        f"cannot fit SNMF on {type(data).__name__}: give a [N, d_mlp] tensor, an ActivationCache or a cache directory"
    )
