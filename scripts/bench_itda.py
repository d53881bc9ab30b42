"""Benchmark ITDA construction against TopK SAE training on the same activations and token budget.

Both see the same N real activations (SmolLM2 layer 15 residual stream by default; special
tokens excluded), ITDA in stream order in one greedy pass, the SAE for one epoch with interp's
trainer at the same L0 bound (k). Both are scored by FVU on the same held-out tokens. Prints the
wall-clock and process CPU times (CPU time is the fairer figure on a shared machine), FVUs,
and the ratios ITDA / SAE measured in the same run (the ITDA paper
reports ITDAs at ~1% of an SAE's cost, trained on far more tokens than here).

    python scripts/bench_itda.py [--cache DIR] [--n-tokens 32768] [--k 40] [--cos 0.85]
                                 [--expansion 16] [--device cpu|cuda]
"""

import argparse
import time
from pathlib import Path

import torch

from interp.activations import ActivationCache, cache_activations
from interp.decomposers.itda import ITDA, cache_labels
from interp.decomposers.sae import train
from interp.evals.reconstruction import fvu


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--cache", default="runs/bench/smollm2-L15")
    ap.add_argument("--site", default="blocks.15.hook_resid_post")
    ap.add_argument("--n-tokens", type=int, default=32_768)
    ap.add_argument("--held-out", type=int, default=8_192)
    ap.add_argument("--k", type=int, default=40, help="ITDA pursuit steps = SAE k (same L0 bound)")
    ap.add_argument("--cos", type=float, default=0.85, help="ITDA add-atom cosine threshold")
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--sae-batch", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if not (Path(args.cache) / "manifest.json").exists():
        cache_activations(args.model, "builtin:stdlib-docs", [args.site], args.n_tokens + args.held_out + 4096,
                          args.cache)
    cache = ActivationCache(args.cache)
    site = args.site if args.site in cache.sites else cache.sites[0]
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    x = cache.activations(site).reshape(-1, cache.width(site))[keep].float()
    labels = torch.from_numpy(cache_labels(cache))[keep]
    if len(x) < args.n_tokens + args.held_out:
        raise SystemExit(f"{args.cache} has {len(x)} usable tokens; delete it or lower --n-tokens")
    x_train, lab_train, x_test = x[:args.n_tokens], labels[:args.n_tokens], x[-args.held_out:]

    start, cpu = time.perf_counter(), time.process_time()
    itda = ITDA.fit([(x_train[a:a + 4096], lab_train[a:a + 4096]) for a in range(0, len(x_train), 4096)],
                    k=args.k, cos_threshold=args.cos, device=args.device, progress=False)
    _sync(args.device)
    t_itda, c_itda = time.perf_counter() - start, time.process_time() - cpu

    d_sae = args.expansion * x.shape[1]
    cfg = dict(method="topk", d_sae=d_sae, k=args.k, batch_size=args.sae_batch, n_tokens=len(x_train),
               wandb="disabled", device=args.device, exclude_special=False, warmup_steps=5)
    train({**cfg, "n_tokens": args.sae_batch * 2}, x_train, progress=False)  # warm-up (allocations)
    start, cpu = time.perf_counter(), time.process_time()
    sae = train(cfg, x_train, progress=False)
    _sync(args.device)
    t_sae, c_sae = time.perf_counter() - start, time.process_time() - cpu

    with torch.no_grad():
        test = x_test.to(args.device)
        f_itda = fvu(x_test, torch.cat([itda.decode(itda.encode(c)) for c in test.split(2048)]).cpu())
        f_sae = fvu(x_test, sae.reconstruct(test).cpu())
    print(f"ITDA vs TopK SAE on {len(x_train)} tokens of {cache.manifest['model']} {site} "
          f"(d {x.shape[1]}, L0 <= {args.k}), {args.device}; held-out FVU on {len(x_test)} tokens")
    print(f"  ITDA  cos < {args.cos}: {itda.cfg.n_atoms:6d} atoms  {t_itda:8.1f} s wall {c_itda:8.1f} s CPU"
          f"   FVU {f_itda:.4f}")
    print(f"  TopK SAE {args.expansion}x:   {d_sae:6d} latents {t_sae:7.1f} s wall {c_sae:8.1f} s CPU   FVU "
          f"{f_sae:.4f} (batch {args.sae_batch}, {len(x_train) // args.sae_batch} steps)")
    print(f"  ratio ITDA / SAE: wall time {t_itda / t_sae:.3f}x   CPU time {c_itda / c_sae:.3f}x   "
          f"FVU {f_itda / f_sae:.3f}x")


if __name__ == "__main__":
    main()
