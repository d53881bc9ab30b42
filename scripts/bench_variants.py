"""Training throughput of the top-AFA and (G)BA SAEs against TopK at the same width, same run.

    python scripts/bench_variants.py [--cache DIR] [--d-in 576] [--expansion 16] [--k 32]
                                     [--batch 4096] [--steps 20] [--methods topafa,ba,gba]

Data: activations from ``--cache`` (any activation cache) or, by default, heavy-tailed synthetic
vectors (sparse non-negative mixtures of random directions plus noise) of width ``--d-in``. Each
method trains ``--steps`` steps through the one trainer after a warm-up; prints tokens/s and the
ratio TopK / method (the issue's bar: at most 1.5), with each method's mean L0.
"""

import argparse
import time

import torch

import interp.decomposers  # noqa: F401
from interp.activations import ActivationCache
from interp.decomposers.sae import train


def _data(args) -> torch.Tensor:
    if args.cache:
        cache = ActivationCache(args.cache)
        return cache.activations(cache.sites[0]).reshape(-1, cache.width(cache.sites[0])).float()
    g = torch.Generator().manual_seed(0)
    n, atoms = args.batch * (args.steps + 2), 4 * args.d_in
    dictionary = torch.randn(atoms, args.d_in, generator=g)
    codes = torch.relu(torch.randn(n, atoms, generator=g) - 2.0) * torch.rand(n, 1, generator=g) * 3
    return codes @ dictionary + 0.1 * torch.randn(n, args.d_in, generator=g)


def _time(method: str, extra: dict, x: torch.Tensor, args) -> tuple[float, float]:
    cfg = dict(method=method, expansion_factor=args.expansion, batch_size=args.batch, wandb="disabled",
               device=args.device, warmup_steps=1, exclude_special=False, **extra)
    train({**cfg, "n_tokens": args.batch * 2}, x, progress=False)  # warm-up
    start = time.perf_counter()
    sae = train({**cfg, "n_tokens": args.batch * args.steps}, x, progress=False)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        l0 = (sae.encode(x[:args.batch].to(args.device)) > 0).sum(1).float().mean().item()
    return args.batch * args.steps / seconds, l0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache")
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--methods", default="topafa,ba,gba")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    x = _data(args)
    ref, ref_l0 = _time("topk", {"k": args.k}, x, args)
    print(f"SAE training throughput, d_in {x.shape[1]}, d_sae {args.expansion * x.shape[1]}, batch {args.batch}, "
          f"{args.steps} steps, {args.device}")
    print(f"  {'topk k=' + str(args.k):<12}{ref:10.0f} tokens/s   L0 {ref_l0:7.1f}")
    for method in args.methods.split(","):
        speed, l0 = _time(method, {}, x, args)
        print(f"  {method:<12}{speed:10.0f} tokens/s   L0 {l0:7.1f}   topk/{method} time ratio {ref / speed:.2f}x")


if __name__ == "__main__":
    main()
