"""Cost of the corruption check (lazy per-shard xxh3) and the folder lock on a cache read, and of
the weight digest check on loading an artifact.

    interp bench integrity [n_tokens=1048576] [width=128] [dtype=float32] [train=true]
    interp bench integrity artifact=true [d_in=576] [d_sae=9216]

Writes a synthetic cache in the library's format (random activations, real per-shard checksums)
to a temporary folder, then reads one shuffled epoch of [4096, width] batches through
``ActivationCache.batches`` with verification and without it, alternating, three times each.
Prints the medians and their ratio, and the time to take and release the folder lock. With
``train=1`` it also trains a TopK SAE (d_sae = 16 x width, k = 32) for one epoch on the cache,
with and without verification, on the CPU, to set the check beside training. With
``artifact=true`` it instead saves a TopK SAE artifact of ``d_in x d_sae`` (random weights) and
times ``interp.decomposers.load`` with the xxh3 check of its weights and without it (the digest
removed from config.json, as in an artifact saved before digests), alternating, seven times each.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interp._io import file_digest, folder_lock, write_json_atomic
from interp.activations.disk import allocate
from interp.activations.format import FORMAT, ActivationCache, site_file, storage_dtype

SITE = "blocks.0.hook_resid_post"


def synthetic_cache(out: Path, n_tokens: int, width: int, dtype: str, seq_len: int = 128) -> ActivationCache:
    n = n_tokens // seq_len
    (out / "acts").mkdir(parents=True)
    for name in ("tokens", "doc_ids", "char_start", "char_end"):
        np.save(out / f"{name}.npy", np.zeros((n, seq_len), dtype=np.int64))
    allocate(out / site_file(SITE), storage_dtype(dtype), (n, seq_len, width))
    rows = max(1, (1 << 16) // seq_len)
    manifest = {
        "format": FORMAT,
        "model": "synthetic",
        "sites": [SITE],
        "text": "synthetic",
        "n_tokens_requested": n_tokens,
        "seq_len": seq_len,
        "dtype": dtype,
        "shuffle_seed": None,
        "n_seqs": n,
        "n_tokens": n * seq_len,
        "sites_info": {SITE: {"width": width, "file": site_file(SITE)}},
        "shard_ranges": [[a, min(a + rows, n)] for a in range(0, n, rows)],
        "shards": [],
        "complete": False,
    }
    write_json_atomic(out / "manifest.json", manifest)
    cache = ActivationCache(out, check=False)
    arr, rng = cache.writable(SITE), np.random.default_rng(0)
    for a, b in manifest["shard_ranges"]:
        arr[a:b] = rng.standard_normal((b - a, seq_len, width)).astype(storage_dtype(dtype))
        arr.flush()
        cache.record_shard(a, b, {SITE: cache._digest(SITE, a, b)})
    cache.finish()
    return ActivationCache(out)


def epoch_seconds(path: Path, verify: bool) -> float:
    cache = ActivationCache(path)
    if not verify:
        cache.verify = lambda site, rows=None: None
    t = time.perf_counter()
    for _ in cache.batches(SITE, 4096, seed=0):
        pass
    return time.perf_counter() - t


def train_seconds(path: Path, verify: bool) -> float:
    from unittest import mock

    from interp.decomposers.sae import train

    cfg = dict(
        method="topk",
        k=32,
        batch_size=4096,
        n_tokens=ActivationCache(path).n_tokens,
        wandb="disabled",
        device="cpu",
        exclude_special=False,
    )
    patch = mock.patch.object(ActivationCache, "verify", lambda self, site, rows=None: None)
    t = time.perf_counter()
    with mock.MagicMock() if verify else patch:
        train(cfg, path, progress=False)
    return time.perf_counter() - t


def artifact_load_seconds(d_in: int, d_sae: int, root: Path) -> dict[str, list[float]]:
    """Times of ``load`` on one artifact with its weight digest ("checked") and with it removed
    ("plain"), and of the digest alone ("digest")."""
    import json

    import torch

    from interp.decomposers import load
    from interp.decomposers.sae import TopKConfig, TopKSAE

    torch.manual_seed(0)
    art = TopKSAE(TopKConfig(d_in=d_in, d_sae=d_sae, k=32)).save(root / "artifact")
    config = json.loads((art / "config.json").read_text())
    bare = {k: v for k, v in config.items() if k != "xxh3"}
    load(art)  # warm the page cache
    runs: dict[str, list[float]] = {"plain": [], "checked": [], "digest": []}
    for _ in range(7):
        t = time.perf_counter()
        file_digest(art / "weights.safetensors")
        runs["digest"].append(time.perf_counter() - t)
        for check in ("plain", "checked"):
            write_json_atomic(art / "config.json", config if check == "checked" else bare)
            t = time.perf_counter()
            load(art)
            runs[check].append(time.perf_counter() - t)
    return runs


@dataclass(frozen=True)
class Config:
    n_tokens: int = 1 << 20
    """Tokens of the synthetic cache."""
    width: int = 128
    """Activation width."""
    dtype: str = "float32"
    """Storage dtype."""
    dir: str | None = None
    """Folder of the temporary cache (None: the system's temp folder)."""
    train: bool = False
    """Also time one CPU epoch of TopK training on the cache with and without verification."""
    artifact: bool = False
    """Instead of the cache: time loading a TopK SAE artifact with and without its weight digest check."""
    d_in: int = 576
    """Artifact input width (with artifact=true; 576: SmolLM2-135M's residual stream)."""
    d_sae: int = 9216
    """Artifact features (with artifact=true)."""


def run(cfg: Config) -> None:
    if cfg.artifact:
        with tempfile.TemporaryDirectory(dir=cfg.dir) as tmp:
            runs = artifact_load_seconds(cfg.d_in, cfg.d_sae, Path(tmp))
        plain, checked = np.median(runs["plain"]), np.median(runs["checked"])
        mb = cfg.d_in * cfg.d_sae * 2 * 4 / 1e6
        print(
            f"load of a TopK SAE artifact {cfg.d_in} x {cfg.d_sae} (~{mb:.0f} MB of float32 weights), page cache warm:"
        )
        print(
            f"  without digest check  {plain * 1e3:.1f} ms   (runs {', '.join(f'{r * 1e3:.1f}' for r in runs['plain'])})"
        )
        print(
            f"  with digest check     {checked * 1e3:.1f} ms   (runs {', '.join(f'{r * 1e3:.1f}' for r in runs['checked'])})"
        )
        print(f"  ratio                 {checked / plain:.3f}")
        print(f"  xxh3 of the weights file alone: {np.median(runs['digest']) * 1e3:.1f} ms")
        return
    n_tokens, width, dtype = cfg.n_tokens, cfg.width, cfg.dtype
    with tempfile.TemporaryDirectory(dir=cfg.dir) as tmp:
        path = Path(tmp) / "cache"
        synthetic_cache(path, n_tokens, width, dtype)
        epoch_seconds(path, True)  # warm the page cache
        runs = {True: [], False: []}
        for _ in range(3):
            for verify in (False, True):
                runs[verify].append(epoch_seconds(path, verify))
        t = time.perf_counter()
        for _ in range(100):
            with folder_lock(path):
                pass
        lock_ms = (time.perf_counter() - t) * 10
        trained = {v: train_seconds(path, v) for v in (False, True)} if cfg.train else None
    plain, checked = np.median(runs[False]), np.median(runs[True])
    print(f"{n_tokens:,} tokens x {width} ({dtype}), one shuffled epoch of 4096-token batches:")
    print(f"  without verification  {plain:.3f} s   (runs {', '.join(f'{r:.3f}' for r in runs[False])})")
    print(f"  with verification     {checked:.3f} s   (runs {', '.join(f'{r:.3f}' for r in runs[True])})")
    print(f"  ratio                 {checked / plain:.3f}")
    print(f"  folder lock take+release: {lock_ms:.3f} ms")
    if trained:
        print(
            f"  one epoch of TopK training (CPU): {trained[False]:.1f} s without, {trained[True]:.1f} s with "
            f"verification (ratio {trained[True] / trained[False]:.3f})"
        )
