"""Activation cache: run a model over packed text once and keep its activations on disk.

Layout of a cache directory (see DESIGN.md, "Activation cache"):

    manifest.json                  what is cached and which shards are complete (with checksums)
    tokens.npy doc_ids.npy         [N, S] int64 token ids and provenance, row-aligned with the
    char_start.npy char_end.npy    activations (char offsets are -1 for BOS/separator tokens)
    acts/<site>.npy                [N, S, D] activations, one pre-allocated .npy per site

A *shard* is a range of rows ``[start, end)`` of every site's file. The manifest lists a shard only
after its rows are written and flushed, with an xxh3-64 digest per site, and the manifest itself is replaced
atomically, so an interrupted run never leaves a listed shard incomplete. Running the same command
again verifies the listed shards, recomputes any that are missing or damaged, and finishes.
One model pass fills every requested site, and the pass stops after the deepest site's block.

Under ``torchrun`` each rank runs the model on its own share of the shards (every world-size-th
missing shard) and writes into the same pre-allocated files; rank 0 tokenises once (packing
documents into rows is one sequential pass, cheap beside the forward passes), keeps the manifest,
and folds the other ranks' shard journals into it, so one manifest describes the union. An
interrupted distributed run resumes per rank, with any number of ranks.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xxhash
from tqdm.auto import tqdm

import interp
from interp import distributed as _dist
from interp._io import check_same_request, job_lock, read_json, write_atomic, write_json_atomic
from interp.activations.disk import allocate, check_free_space
from interp.activations.format import FORMAT, STORAGE_TORCH, TOKEN_FILES, ActivationCache, site_file, storage_dtype
from interp.errors import ConfigError, DataError
from interp.models import LoadedModel, load, run_to_sites, site_width


def _request(
    model: LoadedModel,
    text_spec: str,
    sites: list[str],
    n_tokens: int,
    seq_len: int,
    dtype: str,
    shuffle_seed: int | None,
) -> dict:
    return {
        "model": model.spec,
        "sites": sites,
        "text": text_spec,
        "n_tokens_requested": n_tokens,
        "seq_len": seq_len,
        "dtype": dtype,
        "shuffle_seed": shuffle_seed,
    }


def _start(model: LoadedModel, request: dict, out: Path, shard_tokens: int, widths: dict[str, int]) -> dict:
    """Tokenise, write token files and pre-allocated activation files, then the manifest."""
    from interp.data import load_text, tokenize

    text = load_text(request["text"], shuffle_seed=request["shuffle_seed"])
    toks = tokenize(text, model.tokenizer, request["seq_len"], request["n_tokens_requested"])
    n, s = toks.tokens.shape
    itemsize = storage_dtype(request["dtype"]).itemsize
    check_free_space(out, n * s * (sum(widths.values()) * itemsize + 8 * len(TOKEN_FILES)))
    (out / "acts").mkdir(exist_ok=True)
    for name in TOKEN_FILES:
        arr = getattr(toks, name)
        write_atomic(out / f"{name}.npy", lambda f, a=arr: np.save(f, a, allow_pickle=False), binary=True)
    for site, d in widths.items():
        allocate(out / site_file(site), storage_dtype(request["dtype"]), (n, s, d))
    rows = max(1, shard_tokens // s)
    manifest = {
        "format": FORMAT,
        **request,
        "model_name": model.name,
        "code_version": interp.__version__,
        "n_seqs": n,
        "n_tokens": n * s,
        "bos_id": toks.bos_id,
        "pad_id": model.tokenizer.pad_token_id,
        "sites_info": {site: {"width": d, "file": site_file(site)} for site, d in widths.items()},
        "shard_ranges": [[a, min(a + rows, n)] for a in range(0, n, rows)],
        "shards": [],
        "complete": False,
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


class _ShardWriter:
    """Writes activations into the memory maps on a background thread, so the next forward pass
    runs while the last batch is copied off the device, stored and checksummed (running xxh3-64)."""

    def __init__(self, arrays: dict[str, np.memmap], dtype: str):
        self.arrays, self.dtype = arrays, dtype
        self.digest = {site: xxhash.xxh3_64() for site in arrays}
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, site: str, row: int, act: torch.Tensor) -> None:
        """Queue ``act [b, S, D]`` for rows ``row:row+b`` (device copy is asynchronous)."""
        store = act.to(STORAGE_TORCH[self.dtype])
        host = torch.empty(store.shape, dtype=store.dtype, pin_memory=store.is_cuda)
        host.copy_(store, non_blocking=store.is_cuda)
        event = torch.cuda.Event() if store.is_cuda else None
        if event is not None:
            event.record()
        self._check()
        self.queue.put((site, row, host, event))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                if self.error is None:
                    site, row, host, event = item
                    if event is not None:
                        event.synchronize()
                    data = host.view(torch.int16).numpy().view(np.uint16) if self.dtype == "bfloat16" else host.numpy()
                    self.arrays[site][row : row + len(data)] = data
                    self.digest[site].update(memoryview(np.ascontiguousarray(data)).cast("B"))
            except BaseException as e:  # surfaced in the main thread by _check
                self.error = e
            finally:
                self.queue.task_done()

    def _check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing activations failed: {self.error}") from self.error

    def finish(self) -> dict[str, str]:
        """Wait for every queued batch; flush; return the shard's xxh3-64 digest per site."""
        self.queue.join()
        self.queue.put(None)
        self.thread.join()
        self._check()
        for arr in self.arrays.values():
            arr.flush()
        return {site: h.hexdigest() for site, h in self.digest.items()}


@torch.inference_mode()
def _fill_shard(
    model: LoadedModel, cache: ActivationCache, start: int, end: int, batch_size: int, bar: tqdm
) -> dict[str, str]:
    sites = list(cache.manifest["sites_info"])
    writer = _ShardWriter({s: cache.writable(s) for s in sites}, cache.manifest["dtype"])
    tokens = torch.from_numpy(np.array(cache.token_array("tokens")[start:end]))
    for a in range(0, end - start, batch_size):
        batch = tokens[a : a + batch_size]
        for site, act in run_to_sites(model, batch, sites).items():
            writer.put(site, start + a, act)
        bar.update(batch.numel())
    return writer.finish()


def cache_activations(
    model: LoadedModel | str,
    text_spec: str,
    sites: str | Sequence[str],
    n_tokens: int,
    out_dir: str | Path,
    seq_len: int = 128,
    batch_size: int | None = None,
    dtype: str = "float32",
    shard_tokens: int = 1 << 16,
    shuffle_seed: int | None = None,
    progress: bool = True,
) -> Path:
    """Cache ``sites`` of ``model`` over ``n_tokens`` tokens of ``text_spec`` into ``out_dir``.

    Resumable: call it again with the same arguments after an interruption (or after damage to a
    shard) and it completes the cache; the result equals an uninterrupted run. ``dtype`` is the
    storage dtype (float32, float16 or bfloat16). ``batch_size`` (sequences per forward pass)
    defaults to 16 on CPU and 128 on CUDA, where bigger batches hide the bridge's per-module Python
    overhead. Returns the cache path.
    """
    out = Path(out_dir)
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ConfigError("give at least one hook site to cache")
    _check_counts(n_tokens=n_tokens, shard_tokens=shard_tokens, batch_size=batch_size)
    storage_dtype(dtype)  # validates
    if out.exists() and not out.is_dir():
        raise DataError(f"out_dir {out} is an existing file; a cache is a folder: choose another path")
    model = load(model) if isinstance(model, str) else model
    widths = {site: site_width(model, site) for site in sites}  # validates, before any write
    model.check_seq_len(seq_len)
    batch_size = batch_size or (128 if model.device.type == "cuda" else 16)
    request = _request(model, text_spec, sites, int(n_tokens), int(seq_len), dtype, shuffle_seed)
    with job_lock(out, "activation cache folder"):
        _cache(model, request, out, shard_tokens, widths, batch_size, progress)
    return out


def _check_counts(**counts: Any) -> None:
    """Each count is a positive whole number (``1e6`` is accepted; ``"1e6"``, ``0`` or ``2.5`` are not)."""
    for name, value in counts.items():
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if value is not None and (not whole or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _cache(
    model: LoadedModel,
    request: dict,
    out: Path,
    shard_tokens: int,
    widths: dict[str, int],
    batch_size: int,
    progress: bool,
) -> None:
    """Create, repair or finish the cache at ``out`` (the folder is held by this process)."""
    sites, seq_len = request["sites"], request["seq_len"]
    rank, world = _dist.world()
    with _dist.main_first():  # rank 0 creates or repairs the cache; the others then open it
        if (out / "manifest.json").exists():
            check_same_request(
                read_json(out / "manifest.json", "activation cache manifest"), request, out, "activation cache"
            )
        elif rank == 0:
            _start(model, request, out, shard_tokens, widths)
        cache = ActivationCache(out, check=False)
        if rank == 0:
            cache.merge_journals()
            cache.repair()
    todo = cache.missing_shards()[rank::world]
    done_tokens = cache.manifest["n_tokens"] - sum(b - a for a, b in cache.missing_shards()) * seq_len
    desc = f"caching {len(sites)} site(s) of {model.name}"
    if world > 1:  # rank 0 shows its own share
        desc, done_tokens = f"{desc} (rank 0 of {world})", 0
        total = sum(b - a for a, b in todo) * seq_len
    with tqdm(
        total=total if world > 1 else cache.manifest["n_tokens"],
        initial=done_tokens,
        unit="tok",
        disable=not (progress and rank == 0),
        desc=desc,
    ) as bar:
        for start, end in todo:
            sums = _fill_shard(model, cache, start, end, batch_size, bar)
            cache.record_shard(start, end, sums, rank)
    _dist.barrier()
    if rank == 0:
        cache.merge_journals()
        cache.finish()
    _dist.barrier()
