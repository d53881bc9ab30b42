"""Benchmark activation caching against the plain Hugging Face forward through the same layers.

Caches a middle layer of the built-in SmolLM2 (tokenising, running TransformerLens hooks with
stop_at_layer, writing shards and checksums) and times tokenising the same text and running the HF
model truncated to the same blocks. Prints tokens/s of both and their ratio (target >= 0.9),
measured in the same run.

    interp bench cache [site=blocks.15.hook_resid_post] [n_tokens=16384] [device=cuda]
"""

import tempfile
import time
from dataclasses import dataclass

import torch

from interp.activations import ActivationCache, cache_activations
from interp.data import tokenize
from interp.models import load, stop_layer

TEXT = "builtin:stdlib-docs"


def hf_forward(model, n_tokens: int, n_layers: int, batch: int) -> float:
    """Seconds to tokenise the same text and run the HF decoder truncated to ``n_layers`` blocks."""
    inner = model.hf_model.model
    layers = inner.layers
    inner.layers = layers[:n_layers]
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            tokens = torch.from_numpy(tokenize(TEXT, model.tokenizer, 128, n_tokens).tokens)
            for a in range(0, len(tokens), batch):
                inner(tokens[a : a + batch].to(model.device))
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start
    finally:
        inner.layers = layers


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    site: str = "blocks.15.hook_resid_post"
    """Hook site cached."""
    n_tokens: int = 16_384
    """Tokens cached (and run through the plain forward)."""
    batch: int = 16
    """Sequences per forward pass, both sides."""
    device: str | None = None
    """Device (None: CUDA when available)."""
    repeats: int = 2
    """Interleaved repeats; the best of each side is reported."""


def run(args: Config) -> None:
    model = load(args.model, device=args.device)
    best_cache, best_ref, n = float("inf"), float("inf"), 0
    for r in range(args.repeats):  # interleaved, best of N: robust to a noisy shared machine
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            path = cache_activations(
                model, TEXT, [args.site], args.n_tokens, tmp, batch_size=args.batch, progress=False
            )
            best_cache = min(best_cache, time.perf_counter() - start)
            n = ActivationCache(path).n_tokens
        best_ref = min(best_ref, hf_forward(model, args.n_tokens, stop_layer([args.site]), args.batch))
    print(f"caching {args.site} of {args.model}: {n} tokens, batch {args.batch}, {model.device}")
    print(f"  plain HF forward ({stop_layer([args.site])} blocks)  {n / best_ref:10.0f} tokens/s")
    print(f"  interp cache_activations       {n / best_cache:10.0f} tokens/s")
    print(f"  ratio cache / forward          {best_ref / best_cache:10.3f}   (target >= 0.9)")
