"""The benchmark suite: every figure a ratio against a reference measured in the same run.

    interp bench suite [device=cpu|cuda] [n_tokens=24576] [out=runs/bench/bench.json]

1. caching throughput vs the plain HF forward through the same blocks (same text, same batch);
2. cache read throughput (shuffled training batches) vs a raw sequential read of the same file;
3. SAE training tokens/s of every registered variant vs the dense-autograd TopK baseline (and vs
   interp's TopK), fp32, plus TopK under bf16 autocast on CUDA;
4. the sparse TopK decoder (forward + backward) vs the dense ``codes @ W_dec`` it replaces;
5. SAE training with 2 processes (torchrun, gloo/NCCL) vs 1 process using the same cores/GPUs;
6. peak training memory per token, interp TopK vs the dense baseline (separate processes; CUDA).
Prints a table and writes JSON. Sized to finish in under 10 minutes on a 2-core CPU.
"""

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp._io import write_json_atomic
from interp.activations import ActivationCache, cache_activations
from interp.cli.bench.cache import TEXT, hf_forward
from interp.cli.bench.sae import dense_topk
from interp.decomposers import REGISTRY
from interp.decomposers.sae import SAE, train
from interp.decomposers.sae.ops import sparse_decode
from interp.models import load, stop_layer


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    site: str = "blocks.15.hook_resid_post"
    """Hook site cached and trained on."""
    cache: str = "runs/bench/smollm2-L15-suite"
    """Activation cache (made on first use)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device."""
    n_tokens: int = 24_576
    """SAE training tokens per contender."""
    cache_tokens: int = 8192
    """Tokens for the caching figure."""
    model_batch: int | None = None
    """Sequences per forward pass (None: 128 on CUDA, 16 on CPU)."""
    batch: int = 4096
    """SAE tokens per step."""
    k: int = 32
    """Active latents per token (TopK)."""
    expansion: int = 16
    """d_sae / d_in."""
    repeats: int = 5
    """Repeats of the decoder timing."""
    out: str = "runs/bench/bench.json"
    """The JSON written."""
    worker: str | None = None
    """Internal: run one timed worker (interp, dense or idle) in this process and print JSON."""


def _now(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def bench_caching(args) -> dict:
    model = load(args.model, device=args.device)
    n, batch = args.cache_tokens, args.model_batch or (128 if args.device.startswith("cuda") else 16)
    with tempfile.TemporaryDirectory() as tmp:
        start = _now(args.device)
        cache_activations(model, TEXT, [args.site], n, tmp, batch_size=batch, progress=False)
        cached = _now(args.device) - start
    plain = hf_forward(model, n, stop_layer([args.site]), batch)
    return {"cache_tok_s": n / cached, "forward_tok_s": n / plain, "ratio": plain / cached}


def bench_read(cache: ActivationCache, site: str, batch: int) -> dict:
    path = cache.path / cache.manifest["sites_info"][site]["file"]
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    raw = time.perf_counter() - start
    start = time.perf_counter()
    n = sum(len(x) for x in cache.batches(site, batch, shuffle=True))
    shuffled = time.perf_counter() - start
    return {
        "read_tok_s": n / shuffled,
        "raw_tok_s": cache.n_tokens / raw,
        "ratio": (n / shuffled) / (cache.n_tokens / raw),
    }


def _sae_cfg(method: str, args, d_sae: int, n: int, **kw) -> dict:
    """Same width, batch, budget and lr for every variant; ``k`` where the variant has one."""
    fields = {f.name for f in dataclasses.fields(REGISTRY[method].config_cls)}
    cfg = dict(
        method=method,
        d_sae=d_sae,
        batch_size=args.batch,
        n_tokens=n,
        lr=1e-4,
        warmup_steps=1,
        wandb="disabled",
        device=args.device,
        exclude_special=False,
        log_every=10_000,
        checkpoint_every=10_000,
    )
    return cfg | ({"k": args.k} if "k" in fields else {}) | kw


def _train_speed(x: torch.Tensor, cfg: dict) -> float:
    train(cfg | {"n_tokens": cfg["batch_size"]}, x, progress=False)  # warm-up
    start = _now(cfg["device"])
    train(cfg, x, progress=False)
    return len(x) // cfg["batch_size"] * cfg["batch_size"] / (_now(cfg["device"]) - start)


def bench_variants(x: torch.Tensor, args) -> dict:
    d_sae = args.expansion * x.shape[1]
    dense_topk(x[: args.batch], d_sae, args.k, args.batch, 1e-4, args.device)  # warm-up
    seconds, _ = dense_topk(x, d_sae, args.k, args.batch, 1e-4, args.device)
    out = {"dense_topk_tok_s": len(x) // args.batch * args.batch / seconds}
    methods = sorted(m for m, cls in REGISTRY.items() if issubclass(cls, SAE))
    for method in methods:
        out[f"{method}_tok_s"] = _train_speed(x, _sae_cfg(method, args, d_sae, len(x)))
    if args.device.startswith("cuda"):  # bf16 is a GPU fast path (without AMX, CPU bf16 is ~40x slower)
        out["topk_bf16_tok_s"] = _train_speed(x, _sae_cfg("topk", args, d_sae, len(x), autocast="bfloat16"))
    for key in [k for k in out if k != "dense_topk_tok_s"]:
        out[key.replace("_tok_s", "_vs_dense")] = out[key] / out["dense_topk_tok_s"]
        out[key.replace("_tok_s", "_vs_topk")] = out[key] / out["topk_tok_s"]
    return out


def bench_decoder(args, d: int) -> dict:
    f, b, k, dev = args.expansion * d, args.batch, args.k, args.device
    W = torch.nn.functional.normalize(torch.randn(f, d, device=dev), dim=1).requires_grad_()
    idx = torch.rand(b, f, device=dev).topk(k, dim=1).indices
    vals = torch.rand(b, k, device=dev, requires_grad=True)
    grad = torch.randn(b, d, device=dev)

    def sparse():
        sparse_decode(vals, idx, W).backward(grad)

    def dense():
        codes = torch.zeros(b, f, device=dev).scatter(1, idx, vals)
        (codes @ W).backward(grad)

    times = {}
    for name, fn in (("sparse", sparse), ("dense", dense)):
        fn()
        start = _now(dev)
        for _ in range(args.repeats):
            fn()
        times[name] = (_now(dev) - start) / args.repeats
    return {
        "sparse_ms": 1e3 * times["sparse"],
        "dense_ms": 1e3 * times["dense"],
        "speedup": times["dense"] / times["sparse"],
    }


def _worker(args) -> None:
    """Subprocess entry: train TopK on the cached activations, print seconds and peak memory."""
    x = _load_x(args)
    d_sae = args.expansion * x.shape[1]
    if args.worker == "dense":
        dense_topk(x[: args.batch], d_sae, args.k, args.batch, 1e-4, args.device)
        seconds = dense_topk(x, d_sae, args.k, args.batch, 1e-4, args.device)[0]
    elif args.worker == "interp":
        cfg = _sae_cfg("topk", args, d_sae, len(x))
        train(cfg | {"n_tokens": args.batch}, x, progress=False)
        start = _now(args.device)
        train(cfg, x, progress=False)
        seconds = _now(args.device) - start
    else:  # "idle": data loaded, nothing trained (the memory baseline)
        seconds = 0.0
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"seconds": seconds, "peak_bytes": peak, "tokens": len(x) // args.batch * args.batch}))


def _spawn(args, worker: str, procs: int = 1, threads: int | None = None) -> dict:
    keys = {
        "worker": worker,
        "cache": args.cache,
        "site": args.site,
        "device": args.device,
        "n_tokens": args.n_tokens,
        "batch": args.batch,
        "k": args.k,
        "expansion": args.expansion,
    }
    base = ["-m", "interp", "bench", "suite", *(f"{k}={v}" for k, v in keys.items())]
    launcher = (
        [sys.executable]
        if procs == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads or os.cpu_count()))
    done = subprocess.run(launcher + base, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_processes(args) -> dict:
    cores = os.cpu_count() or 2
    one = _spawn(args, "interp", 1, threads=cores)
    two = _spawn(args, "interp", 2, threads=max(1, cores // 2))
    return {
        "one_proc_tok_s": one["tokens"] / one["seconds"],
        "two_proc_tok_s": two["tokens"] / two["seconds"],
        "ratio": one["seconds"] / two["seconds"],
    }


def bench_memory(args) -> dict:
    if not args.device.startswith("cuda"):  # the RSS high-water mark is set by loading the data
        return {"skipped": "peak memory per token is measured on CUDA (torch.cuda.max_memory_allocated)"}
    idle, ours, dense = (_spawn(args, w)["peak_bytes"] for w in ("idle", "interp", "dense"))
    per = {name: max(0, peak - idle) / args.batch for name, peak in (("interp", ours), ("dense", dense))}
    return {
        "interp_bytes_per_token": per["interp"],
        "dense_bytes_per_token": per["dense"],
        "ratio": per["interp"] / max(per["dense"], 1),
    }


def _load_x(args) -> torch.Tensor:
    cache = ActivationCache(args.cache)
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    x = cache.activations(args.site).reshape(-1, cache.width(args.site))[keep].float()
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))][: args.n_tokens]
    return x * (x.shape[1] / x[:8192].pow(2).sum(1).mean()).sqrt()


def run(args: Config) -> None:
    if args.worker:
        return _worker(args)
    if not (Path(args.cache) / "manifest.json").exists():
        cache_activations(args.model, TEXT, [args.site], args.n_tokens + 4096, args.cache, batch_size=args.model_batch)
    cache = ActivationCache(args.cache)
    x = _load_x(args)
    results = {
        "device": args.device,
        "model": args.model,
        "site": args.site,
        "d_in": x.shape[1],
        "d_sae": args.expansion * x.shape[1],
        "k": args.k,
        "batch": args.batch,
        "sae_tokens": len(x),
    }
    steps = [
        ("caching", lambda: bench_caching(args)),
        ("cache_read", lambda: bench_read(cache, args.site, args.batch)),
        ("sae_variants", lambda: bench_variants(x, args)),
        ("decoder", lambda: bench_decoder(args, x.shape[1])),
        ("processes", lambda: bench_processes(args)),
        ("memory", lambda: bench_memory(args)),
    ]
    for name, fn in steps:
        start = time.perf_counter()
        results[name] = fn()
        print(
            f"[{time.perf_counter() - start:6.1f} s] {name}: "
            + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in results[name].items()),
            flush=True,
        )
    write_json_atomic(Path(args.out), results)
    print(f"wrote {args.out}")
