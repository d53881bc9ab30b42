"""Benchmark TopK SAE training: interp's trainer vs a plain dense-autograd TopK SAE, and vs
EleutherAI's sparsify ``SparseCoder`` when that package is installed (``pip install eai-sparsify``).

All train one pass over the same ~200k real activations (SmolLM2 by default: d_model 576, 16x
expansion, k 32, batch 4096, fp32) with the same hyperparameters (Adam, constant lr, no AuxK, no
clipping, same initial b_dec and input scaling), and are scored by FVU on held-out tokens, so the
comparison is of the kernels. Prints tokens/s of each and the ratios, measured in the same run.

With ``variants=true`` it instead trains every registered SAE method through the same trainer at
the same width and budget and prints each one's training tokens/s as a ratio to TopK's: over the
whole run, and over its second half. The second half is the steady state: L1/L0-penalised SAEs
and BA/GBA from a zero bias start dense (a dense step costs ~3x a TopK step) and run on the sparse
kernels once their codes are sparse. Each method takes its settings from ``settings`` (default
the LLM sweep's config: its fixed settings and the middle of its sparsity list, with the config's
``sae`` block for lr and warm-up), or its own config defaults with ``settings=none`` (k from
``k`` where the method has one).

    interp bench sae [cache=DIR] [site=S] [device=cpu|cuda] [n_tokens=200000]
    interp bench sae variants=true [settings=configs/experiments/sweep_sae.yaml|none] [expansion=8]
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from interp.activations import ActivationCache, cache_activations
from interp.decomposers import REGISTRY
from interp.decomposers.sae import SAE, train
from interp.evals.reconstruction import fvu

Forward = Callable[[torch.Tensor], torch.Tensor]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def _unit_rows(W_dec: torch.Tensor) -> None:
    """Remove the gradient component parallel to each (unit-norm) decoder row."""
    W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec


def dense_topk(x_train, d_sae, k, batch, lr, device) -> tuple[float, Forward]:
    """The textbook TopK SAE step: dense encoder, dense decoder, plain autograd."""
    d = x_train.shape[1]
    gen = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    params = [
        torch.nn.Parameter(t.to(device)) for t in (W_dec.T.clone(), torch.zeros(d_sae), W_dec, x_train[:batch].mean(0))
    ]
    W_enc, b_enc, W_dec, b_dec = params
    opt = torch.optim.Adam(params, lr=lr)

    def forward(x):
        pre = (x - b_dec) @ W_enc + b_enc
        vals, idx = pre.topk(k, dim=1)
        codes = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
        return codes @ W_dec + b_dec

    start = time.perf_counter()
    for a in range(0, len(x_train) - batch + 1, batch):
        x = x_train[a : a + batch].to(device)
        loss = (forward(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        _unit_rows(W_dec)
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
    _sync(device)
    return time.perf_counter() - start, forward


def sparsify_topk(x_train, d_sae, k, batch, lr, device) -> tuple[float, Forward] | None:
    """sparsify's SparseCoder (fused encoder, embedding-bag decoder) under the same Adam loop."""
    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except ImportError:
        return None
    sae = SparseCoder(x_train.shape[1], SparseCoderConfig(num_latents=d_sae, k=k), device=device)
    with torch.no_grad():
        sae.b_dec.copy_(x_train[:batch].mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    start = time.perf_counter()
    for a in range(0, len(x_train) - batch + 1, batch):
        out = sae(x_train[a : a + batch].to(device))
        opt.zero_grad()
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()
    _sync(device)
    return time.perf_counter() - start, lambda x: sae(x).sae_out


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec (used when the cache has to be made)."""
    cache: str = "runs/bench/smollm2-L15"
    """Activation cache (made on first use)."""
    site: str = "blocks.15.hook_resid_post"
    """Hook site cached."""
    n_tokens: int = 200_000
    """Training tokens (one pass)."""
    held_out: int = 16_384
    """Held-out tokens for FVU."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device."""
    expansion: int = 16
    """d_sae / d_in."""
    k: int = 32
    """Active latents per token (TopK)."""
    batch: int = 4096
    """Tokens per step."""
    variants: bool = False
    """Time every registered SAE method against TopK instead."""
    settings: str = "configs/experiments/sweep_sae.yaml"
    """With variants: per-method settings from this sweep config, or none for each config's defaults."""


def run(args: Config) -> None:
    if not (Path(args.cache) / "manifest.json").exists():
        cache_activations(args.model, "builtin:stdlib-docs", [args.site], args.n_tokens + args.held_out, args.cache)
    cache = ActivationCache(args.cache)
    site = cache.sites[0]
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    x = cache.activations(site).reshape(-1, cache.width(site))[keep].float()
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    x_train, x_test = x[: args.n_tokens], x[-args.held_out :]
    if args.variants:
        return bench_variants(args, x_train, x_test)
    scale = (x_train.shape[1] / x_train[:16384].pow(2).sum(1).mean()).sqrt()
    d_sae = args.expansion * x.shape[1]
    lr = 2e-4 / (d_sae / 2**14) ** 0.5
    cfg = dict(
        method="topk",
        d_sae=d_sae,
        k=args.k,
        batch_size=args.batch,
        n_tokens=len(x_train),
        lr=lr,
        warmup_steps=1,
        decay_frac=0.0,
        aux_alpha=0.0,
        grad_clip=None,
        eps=1e-8,
        wandb="disabled",
        device=args.device,
        exclude_special=False,
    )
    train({**cfg, "n_tokens": args.batch * 2}, x_train, progress=False)  # warm-up (allocations, kernels)
    start = time.perf_counter()
    sae = train(cfg, x_train, progress=False)
    _sync(args.device)
    results = {"interp (sparse kernels)": (time.perf_counter() - start, sae.reconstruct)}
    x_scaled = x_train * scale
    for name, contender in (("dense autograd reference", dense_topk), ("sparsify SparseCoder", sparsify_topk)):
        contender(x_scaled[: args.batch * 2], d_sae, args.k, args.batch, lr, args.device)  # warm-up, JIT
        if (result := contender(x_scaled, d_sae, args.k, args.batch, lr, args.device)) is not None:
            results[name] = result
    n = (len(x_train) // args.batch) * args.batch
    print(
        f"TopK SAE training, d_in {x.shape[1]}, d_sae {d_sae}, k {args.k}, batch {args.batch}, "
        f"{n} tokens, {args.device}"
    )
    speed = {}
    for name, (seconds, forward) in results.items():
        with torch.no_grad():
            raw = name.startswith("interp")  # the others were trained on scaled inputs
            x_hat = forward(x_test.to(args.device)) if raw else forward(x_test.to(args.device) * scale) / scale
        speed[name] = n / seconds
        print(f"  {name:<26}{speed[name]:10.0f} tokens/s   held-out FVU {fvu(x_test, x_hat.cpu()):.4f}")
    ours = speed["interp (sparse kernels)"]
    for name in list(speed)[1:]:
        print(f"  ratio interp / {name}: {ours / speed[name]:.2f}x")


class _StepClock:
    """Time stamps of every optimiser step, taken through the ``after_step`` hook the trainer calls."""

    def __init__(self, cls: type[SAE], device: str):
        self.cls, self.device, self.stamps = cls, device, []
        self.original = cls.__dict__.get("after_step")

    def __enter__(self):
        inner = self.cls.after_step

        def after_step(sae, xn, out, step):
            inner(sae, xn, out, step)
            _sync(self.device)
            self.stamps.append(time.perf_counter())

        self.cls.after_step = after_step
        return self

    def __exit__(self, *exc):
        if self.original is None:
            del self.cls.after_step
        else:
            self.cls.after_step = self.original


def variant_settings(path: str) -> dict[str, dict]:
    """Per-method settings from a sweep config: its ``sae`` lr and warm-up, the method's fixed
    settings and the middle value of its sparsity list ({} for every method with ``none``)."""
    if path == "none":
        return {}
    from interp.cli import load_config

    cfg = load_config(path)
    shared = {k: v for k, v in cfg.get("sae", {}).items() if k in ("lr", "warmup_steps")}
    out = {}
    for method, spec in cfg["methods"].items():
        out[method] = dict(shared)
        for key, value in spec.items():
            out[method][key] = value[len(value) // 2] if isinstance(value, list) else value
    return out


def bench_variants(args, x_train, x_test) -> None:
    """Every registered SAE method through the one trainer, same width, data, batch and budget."""
    d_sae = args.expansion * x_train.shape[1]
    settings = variant_settings(args.settings)
    methods = sorted((m for m, c in REGISTRY.items() if issubclass(c, SAE)), key=lambda m: m != "topk")
    print(
        f"SAE variants, d_in {x_train.shape[1]}, d_sae {d_sae}, batch {args.batch}, "
        f"{(len(x_train) // args.batch) * args.batch} tokens, {args.device}, settings {args.settings}; "
        f"ratio = variant time / TopK time"
    )
    rows = {}
    for method in methods:
        fields = {f.name for f in dataclasses.fields(REGISTRY[method].config_cls)}
        cfg = dict(
            method=method,
            d_sae=d_sae,
            batch_size=args.batch,
            n_tokens=len(x_train),
            wandb="disabled",
            device=args.device,
            exclude_special=False,
            **({"k": args.k} if "k" in fields else {}),
        )
        cfg |= settings.get(method, {})
        train({**cfg, "n_tokens": args.batch * 2}, x_train, progress=False)  # warm-up
        with _StepClock(REGISTRY[method], args.device) as clock:
            start = time.perf_counter()
            sae = train(cfg, x_train, progress=False)
        stamps = [start] + clock.stamps
        half = len(stamps) // 2
        whole = args.batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])
        late = args.batch * (len(stamps) - 1 - half) / (stamps[-1] - stamps[half])
        with torch.no_grad():
            x_hat = sae.reconstruct(x_test.to(args.device)).cpu()
            l0 = (sae.encode(x_test.to(args.device)) != 0).float().sum(1).mean().item()
        rows[method] = (whole, late, fvu(x_test, x_hat), l0)
    base = rows.get("topk")
    for method, (whole, late, err, l0) in rows.items():
        ratio = f"{base[0] / whole:5.2f}x  {base[1] / late:5.2f}x" if base else "   n/a"
        print(
            f"  {method:<10}{whole:9.0f} tok/s (2nd half {late:7.0f})  ratio {ratio}   "
            f"held-out FVU {err:.4f}  L0 {l0:7.1f}"
        )
