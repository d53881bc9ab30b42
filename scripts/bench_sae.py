"""Benchmark TopK SAE training: interp's sparse-kernel trainer vs a plain dense-autograd TopK SAE.

Both train one pass over the same ~200k real activations (SmolLM2 middle layer by default:
d_model 576, 16x expansion, k 32, batch 4096, fp32) and are scored by FVU on held-out tokens.
Prints tokens/s of each and the ratio interp / dense, measured in the same run.

    python scripts/bench_sae.py [--cache DIR] [--device cpu|cuda] [--n-tokens 200000]
"""

import argparse
import time
from pathlib import Path

import torch

from interp.activations import ActivationCache, cache_activations
from interp.decomposers.sae import train
from interp.evals.reconstruction import fvu


def dense_topk_train(x_train: torch.Tensor, d_sae: int, k: int, batch: int, lr: float,
                     device: str) -> tuple[float, callable]:
    """Reference: the textbook TopK SAE step (dense encoder, dense decoder, plain autograd)."""
    d = x_train.shape[1]
    gen = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    params = [torch.nn.Parameter(t.to(device)) for t in
              (W_dec.T.clone(), torch.zeros(d_sae), W_dec, x_train[:batch].mean(0))]
    W_enc, b_enc, W_dec, b_dec = params
    opt = torch.optim.Adam(params, lr=lr)

    def forward(x):
        pre = (x - b_dec) @ W_enc + b_enc
        vals, idx = pre.topk(k, dim=1)
        codes = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
        return codes @ W_dec + b_dec

    start = time.perf_counter()
    for a in range(0, len(x_train) - batch + 1, batch):
        x = x_train[a:a + batch].to(device)
        loss = (forward(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--cache", default="runs/bench/smollm2-L15")
    ap.add_argument("--site", default="blocks.15.hook_resid_post")
    ap.add_argument("--n-tokens", type=int, default=200_000)
    ap.add_argument("--held-out", type=int, default=16_384)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    if not (Path(args.cache) / "manifest.json").exists():
        cache_activations(args.model, "builtin:stdlib-docs", [args.site],
                          args.n_tokens + args.held_out, args.cache, batch_size=16)
    cache = ActivationCache(args.cache)
    site = cache.sites[0]
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    x = cache.activations(site).reshape(-1, cache.width(site))[keep].float()
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    x_train, x_test = x[:args.n_tokens], x[-args.held_out:]
    scale = (x_train.shape[1] / x_train[:16384].pow(2).sum(1).mean()).sqrt()
    d_sae = args.expansion * x.shape[1]
    lr = 2e-4 / (d_sae / 2**14) ** 0.5
    cfg = dict(method="topk", d_sae=d_sae, k=args.k, batch_size=args.batch, n_tokens=len(x_train),
               lr=lr, warmup_steps=5, decay_frac=0.0, wandb="disabled", device=args.device,
               exclude_special=False, grad_clip=None)
    train({**cfg, "n_tokens": args.batch * 2}, x_train, progress=False)  # warm-up (allocations, kernels)
    t = time.perf_counter()
    sae = train(cfg, x_train, progress=False)
    if args.device == "cuda":
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - t
    t_ref, ref = dense_topk_train(x_train * scale, d_sae, args.k, args.batch, lr, args.device)
    with torch.no_grad():
        fvu_ours = fvu(x_test, sae.reconstruct(x_test.to(args.device)).cpu())
        fvu_ref = fvu(x_test, (ref(x_test.to(args.device) * scale) / scale).cpu())
    n = (len(x_train) // args.batch) * args.batch
    ours, dense = n / t_ours, n / t_ref
    print(f"TopK SAE training, d_in {x.shape[1]}, d_sae {d_sae}, k {args.k}, batch {args.batch}, "
          f"{n} tokens, {args.device}")
    print(f"  interp (sparse kernels)   {ours:10.0f} tokens/s   held-out FVU {fvu_ours:.4f}")
    print(f"  dense autograd reference  {dense:10.0f} tokens/s   held-out FVU {fvu_ref:.4f}")
    print(f"  ratio interp / dense      {ours / dense:10.2f}x")


if __name__ == "__main__":
    main()
