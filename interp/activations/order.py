"""Deterministic batch order over a [N, S] token grid: the index plan behind every shuffled stream.

Computing the plan needs only the keep-mask, never the activations, so a resumed run can skip
the batches it already trained on without reading them.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def batch_indices(
    keep: np.ndarray,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epochs: int | None = 1,
    skip: int = 0,
    drop_last: bool = False,
    buffer_tokens: int = 1 << 18,
) -> Iterator[np.ndarray]:
    """Yield flat token indices (``seq * S + pos``) of each batch.

    Each epoch permutes the sequences (seeded by ``(seed, epoch)``), groups them into buffers of
    about ``buffer_tokens`` tokens and shuffles the kept tokens within a buffer. A partial batch
    carries over into the next buffer and epoch; at the very end it is yielded unless
    ``drop_last``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, s = keep.shape
    if not keep.any():
        raise ValueError("no tokens left to stream (every token is excluded)")
    per_buffer = max(1, buffer_tokens // s)
    positions = np.arange(s)
    carry = np.empty(0, dtype=np.int64)
    produced, epoch = 0, 0
    while epochs is None or epoch < epochs:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n) if shuffle else np.arange(n)
        for b in range(0, n, per_buffer):
            seqs = order[b : b + per_buffer]
            idx = (seqs[:, None] * s + positions).reshape(-1)[keep[seqs].reshape(-1)]
            if shuffle:
                rng.shuffle(idx)
            carry = np.concatenate([carry, idx])
            while len(carry) >= batch_size:
                if produced >= skip:
                    yield carry[:batch_size]
                carry = carry[batch_size:]
                produced += 1
        epoch += 1
    if len(carry) and not drop_last and produced >= skip:
        yield carry
