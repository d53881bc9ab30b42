"""Benchmark ITDA construction against TopK SAE training on the same activations and token budget.

Both see the same N real activations (SmolLM2 layer 15 residual stream by default; special
tokens excluded), ITDA in stream order in one greedy pass, the SAE for one epoch with interp's
trainer at the same L0 bound (k). Both are scored by FVU on the same held-out tokens. Prints the
wall-clock and process CPU times (CPU time is the fairer figure on a shared machine), FVUs,
and the ratios ITDA / SAE measured in the same run (the ITDA paper
reports ITDAs at ~1% of an SAE's cost, trained on far more tokens than here).

    interp bench itda [cache=DIR] [n_tokens=32768] [k=40] [cos=0.85] [expansion=16] [device=cpu|cuda]
"""

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.activations import ActivationCache, cache_activations
from interp.decomposers.itda import ITDA, cache_labels
from interp.errors import DataError
from interp.decomposers.sae import train
from interp.evals.reconstruction import fvu


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec (used when the cache has to be made)."""
    cache: str = "runs/bench/smollm2-L15"
    """Activation cache (made on first use)."""
    site: str = "blocks.15.hook_resid_post"
    """Hook site."""
    n_tokens: int = 32_768
    """Training tokens, both sides."""
    held_out: int = 8_192
    """Held-out tokens for FVU."""
    k: int = 40
    """ITDA pursuit steps = SAE k (same L0 bound)."""
    cos: float = 0.85
    """ITDA add-atom cosine threshold."""
    expansion: int = 16
    """SAE d_sae / d_in."""
    sae_batch: int = 1024
    """SAE tokens per step."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device."""


def run(args: Config) -> None:
    if not (Path(args.cache) / "manifest.json").exists():
        cache_activations(
            args.model, "builtin:stdlib-docs", [args.site], args.n_tokens + args.held_out + 4096, args.cache
        )
    cache = ActivationCache(args.cache)
    site = args.site if args.site in cache.sites else cache.sites[0]
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    x = cache.activations(site).reshape(-1, cache.width(site))[keep].float()
    labels = torch.from_numpy(cache_labels(cache))[keep]
    if len(x) < args.n_tokens + args.held_out:
        raise DataError(f"{args.cache} has {len(x)} usable tokens; delete it or lower n_tokens")
    x_train, lab_train, x_test = x[: args.n_tokens], labels[: args.n_tokens], x[-args.held_out :]

    start, cpu = time.perf_counter(), time.process_time()
    itda = ITDA.fit(
        [(x_train[a : a + 4096], lab_train[a : a + 4096]) for a in range(0, len(x_train), 4096)],
        k=args.k,
        cos_threshold=args.cos,
        device=args.device,
        progress=False,
    )
    _sync(args.device)
    t_itda, c_itda = time.perf_counter() - start, time.process_time() - cpu

    d_sae = args.expansion * x.shape[1]
    cfg = dict(
        method="topk",
        d_sae=d_sae,
        k=args.k,
        batch_size=args.sae_batch,
        n_tokens=len(x_train),
        wandb="disabled",
        device=args.device,
        exclude_special=False,
        warmup_steps=5,
    )
    train({**cfg, "n_tokens": args.sae_batch * 2}, x_train, progress=False)  # warm-up (allocations)
    start, cpu = time.perf_counter(), time.process_time()
    sae = train(cfg, x_train, progress=False)
    _sync(args.device)
    t_sae, c_sae = time.perf_counter() - start, time.process_time() - cpu

    with torch.no_grad():
        test = x_test.to(args.device)
        f_itda = fvu(x_test, torch.cat([itda.decode(itda.encode(c)) for c in test.split(2048)]).cpu())
        f_sae = fvu(x_test, sae.reconstruct(test).cpu())
    print(
        f"ITDA vs TopK SAE on {len(x_train)} tokens of {cache.manifest['model']} {site} "
        f"(d {x.shape[1]}, L0 <= {args.k}), {args.device}; held-out FVU on {len(x_test)} tokens"
    )
    print(
        f"  ITDA  cos < {args.cos}: {itda.cfg.n_atoms:6d} atoms  {t_itda:8.1f} s wall {c_itda:8.1f} s CPU"
        f"   FVU {f_itda:.4f}"
    )
    print(
        f"  TopK SAE {args.expansion}x:   {d_sae:6d} latents {t_sae:7.1f} s wall {c_sae:8.1f} s CPU   FVU "
        f"{f_sae:.4f} (batch {args.sae_batch}, {len(x_train) // args.sae_batch} steps)"
    )
    print(
        f"  ratio ITDA / SAE: wall time {t_itda / t_sae:.3f}x   CPU time {c_itda / c_sae:.3f}x   "
        f"FVU {f_itda / f_sae:.3f}x"
    )
