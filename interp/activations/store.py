"""Batch sources for training: a live model stream, any cache or iterable, and the normaliser.

``ActivationStore`` runs the model over text and serves shuffled ``[B, D]`` batches from a mixing
buffer, for when caching to disk is not wanted. ``stream(data, ...)`` turns whatever the trainer
was given (an ``ActivationCache``, an ``ActivationStore``, a cache path or an iterable of
tensors) into one batch iterator. ``norm_scale`` estimates the factor that scales activations to
a mean squared norm of D (SAELens' "expected_average_only_in"); it is saved with each artifact.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import xxhash
from jaxtyping import Float

from interp.activations.format import ActivationCache
from interp.activations.order import batch_indices
from interp.models import LoadedModel, load, run_to_sites


class ActivationStore:
    """Shuffled batches of one site, computed on the fly from a live model."""

    def __init__(
        self,
        model: LoadedModel | str,
        text_spec: str,
        site: str,
        n_tokens: int,
        seq_len: int = 128,
        model_batch: int = 16,
        buffer_tokens: int = 1 << 17,
        exclude_special: bool = False,
        shuffle_seed: int | None = None,
    ):
        from interp.data import load_text, tokenize

        self.model = load(model) if isinstance(model, str) else model
        self.site = self.model.validate_site(site)
        self.d_in = self.model.site_width(site)
        self.model.check_seq_len(seq_len)
        self.model_batch, self.buffer_tokens = model_batch, buffer_tokens
        self.exclude_special = exclude_special
        self.text = tokenize(load_text(text_spec, shuffle_seed=shuffle_seed), self.model.tokenizer, seq_len, n_tokens)

    def _buffers(self, exclude_special: bool) -> Iterator[Float[torch.Tensor, "T D"]]:
        tokens = torch.from_numpy(self.text.tokens)
        keep = torch.from_numpy(~self.text.special_mask() if exclude_special else np.ones(tokens.shape, dtype=bool))
        rows = max(self.model_batch, self.buffer_tokens // tokens.shape[1])
        for a in range(0, len(tokens), rows):
            parts = []
            for b in range(a, min(a + rows, len(tokens)), self.model_batch):
                act = run_to_sites(self.model, tokens[b : b + self.model_batch], [self.site])[self.site]
                parts.append(act[keep[b : b + self.model_batch].to(act.device)].float().cpu())
            yield torch.cat(parts)

    def batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        skip: int = 0,
        epochs: int | None = 1,
        exclude_special: bool | None = None,
    ) -> Iterator[Float[torch.Tensor, "B D"]]:
        """Shuffled batches; ``skip`` is honoured by consuming (the model is re-run);
        ``exclude_special`` (default: the store's setting) leaves out BOS/separator/pad tokens."""
        exclude_special = self.exclude_special if exclude_special is None else exclude_special
        gen = torch.Generator().manual_seed(seed)
        epoch_iter = itertools.count() if epochs is None else range(epochs)
        carry = torch.empty(0, self.d_in)
        count = 0
        for _ in epoch_iter:
            for buf in self._buffers(exclude_special):
                carry = torch.cat([carry, buf])
                carry = carry[torch.randperm(len(carry), generator=gen)]
                while len(carry) >= batch_size:
                    if count >= skip:
                        yield carry[:batch_size]
                    carry, count = carry[batch_size:], count + 1
        if len(carry) and count >= skip:
            yield carry


def stream(
    data: Any,
    batch_size: int,
    *,
    site: str | None = None,
    seed: int = 0,
    skip: int = 0,
    exclude_special: bool = False,
    epochs: int | None = None,
) -> Iterator[torch.Tensor]:
    """One iterator of ``[B, D]`` float tensors from any supported data source."""
    if isinstance(data, (str, Path)):
        data = ActivationCache(data)
    if isinstance(data, ActivationCache):
        if site is None:
            if len(data.sites) != 1:
                raise ValueError(f"the cache holds several sites {data.sites}: say which one (site=...)")
            site = data.sites[0]
        return data.batches(site, batch_size, seed=seed, skip=skip, epochs=epochs, exclude_special=exclude_special)
    if isinstance(data, ActivationStore):
        return data.batches(batch_size, seed=seed, skip=skip, epochs=epochs, exclude_special=exclude_special)
    if isinstance(data, torch.Tensor):
        return _tensor_batches(data, batch_size, seed, skip, epochs)
    if isinstance(data, Iterable):
        return itertools.islice(iter(data), skip, None)
    raise TypeError(
        f"cannot train on {type(data).__name__}: give an ActivationCache, a cache path, "
        f"an ActivationStore, a [N, D] tensor or an iterable of [B, D] tensors"
    )


def fingerprint(data: Any) -> str | None:
    """Identifies the data a run trains on (None for an iterable, whose contents are unknown).

    A cache: its request and shard checksums (``ActivationCache.fingerprint``); a live store: the
    model, site and text; a tensor: a hash of its bytes.
    """
    if isinstance(data, (str, Path)):
        data = ActivationCache(data)
    if isinstance(data, ActivationCache):
        return data.fingerprint
    if isinstance(data, ActivationStore):
        blob = f"{data.model.spec}|{data.site}|{data.text.tokens.shape}|".encode() + data.text.tokens.tobytes()
        return "store:" + xxhash.xxh3_64_hexdigest(blob)
    if isinstance(data, torch.Tensor):
        flat = data.detach().cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
        return f"tensor:{tuple(data.shape)}:" + xxhash.xxh3_64_hexdigest(raw.numpy().tobytes())
    return None


def _tensor_batches(
    x: torch.Tensor, batch_size: int, seed: int, skip: int, epochs: int | None
) -> Iterator[torch.Tensor]:
    keep = np.ones((len(x), 1), dtype=bool)
    for idx in batch_indices(keep, batch_size, True, seed, epochs, skip, buffer_tokens=len(x)):
        yield x[torch.from_numpy(idx)]


def norm_scale(batches: Iterable[torch.Tensor], n_tokens: int = 1 << 14) -> float:
    """sqrt(D / E||x||^2) over about ``n_tokens`` tokens: scaled inputs have mean sq. norm D."""
    total, count, d = 0.0, 0, None
    for x in batches:
        d = x.shape[-1]
        total += x.double().pow(2).sum().item()
        count += len(x)
        if count >= n_tokens:
            break
    if not count or total <= 0 or not math.isfinite(total):
        raise ValueError("cannot estimate the normalisation: the data is empty, zero or not finite")
    return math.sqrt(d * count / total)


def prefetch(batches: Iterator[torch.Tensor], device: torch.device | str, depth: int = 2) -> Iterator[torch.Tensor]:
    """Read up to ``depth`` batches ahead on a background thread (same order, same tensors).

    Cache reads (memory-map gathers) then overlap with training; on CUDA each batch is also
    pinned and uploaded asynchronously on a side stream, so the GPU does not wait on the host.
    ``depth=0`` reads in the caller's thread.
    """
    device = torch.device(device)
    if depth <= 0:
        yield from batches
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def produce() -> None:
        try:
            for x in batches:
                if side is not None:
                    with torch.cuda.stream(side):
                        x = x.pin_memory().to(device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(side)
                    ready.put((x, event))
                else:
                    ready.put((x, None))
            ready.put((done, None))
        except BaseException as e:  # re-raised in the consumer
            ready.put((e, None))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while True:
        x, event = ready.get()
        if x is done:
            return
        if isinstance(x, BaseException):
            raise x
        if event is not None:
            torch.cuda.current_stream(device).wait_event(event)
            x.record_stream(torch.cuda.current_stream(device))
        yield x
