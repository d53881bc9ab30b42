"""Steered generation throughput: ``generate`` (left-padded batch, KV cache, one hook) against the
loop people write by hand (one prompt at a time, the whole sequence re-run every step with the hook),
greedy, in the same run. Prints new tokens/s of both and their ratio, and checks they agree.

``interp bench steer [model=smollm2-135m] [prompts=8] [tokens=24] [device=cpu]``
"""

import time
from dataclasses import dataclass

import torch

from interp.models.prompts import encode_prompts, forward, left_pad, pad_id
from interp.evals.steering import generate, steer
from interp.models import load


@torch.no_grad()
def naive(model, prompts, n_new):
    out = []
    for ids in encode_prompts(model, prompts):
        seq = list(ids)
        for _ in range(n_new):
            x, m = left_pad([seq], pad_id(model.tokenizer), model.device)
            seq.append(int(forward(model, x, m)[0, -1].argmax()))
        out.append(model.tokenizer.decode(seq[len(ids) :], skip_special_tokens=True))
    return out


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    prompts: int = 8
    """Prompts generated from (one batch)."""
    tokens: int = 24
    """New tokens per prompt."""
    device: str | None = None
    """Device (None: CUDA when available)."""


def run(a: Config) -> None:
    model = load(a.model, device=a.device)
    site = f"blocks.{model.n_layers // 2}.hook_resid_post"
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    base = [
        "I think that",
        "The weather today is",
        "My favourite food is",
        "Once upon a time",
        "The best way to learn is",
        "In the city there",
    ]
    prompts = [base[i % len(base)] for i in range(a.prompts)]
    with steer(model, v, site, 4.0):
        generate(model, prompts[:1], max_new_tokens=2, temperature=0)  # warm-up
        t = time.perf_counter()
        ours = generate(model, prompts, max_new_tokens=a.tokens, temperature=0, batch_size=a.prompts)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        ref = naive(model, prompts, a.tokens)
        t_ref = time.perf_counter() - t
    n = a.prompts * a.tokens
    agree = sum(o == r[: len(o)] or r.startswith(o) for o, r in zip(ours, ref))
    print(f"{model.name} {site}, {a.prompts} prompts x {a.tokens} new tokens, steered (greedy)")
    print(f"  generate (batched, KV cache): {n / t_ours:8.1f} tok/s")
    print(f"  naive loop (no cache):        {n / t_ref:8.1f} tok/s")
    print(f"  ratio: {t_ref / t_ours:.2f}x   identical continuations: {agree}/{a.prompts}")
