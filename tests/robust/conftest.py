"""Fixtures for the robustness tests: a small cache maker over the tiny Llama, SAE configs, data."""

import pytest
import torch

SITE = "blocks.0.hook_resid_post"
CACHE_ARGS = dict(n_tokens=1024, seq_len=32, batch_size=8, shard_tokens=256, progress=False)


def small_cfg(**kw):
    base = dict(
        method="topk",
        d_sae=32,
        k=4,
        batch_size=64,
        n_tokens=64 * 12,
        lr=3e-3,
        wandb="disabled",
        seed=0,
        norm_scale_tokens=256,
        warmup_steps=2,
        device="cpu",
        prefetch=0,
    )
    return {**base, **kw}


def low_rank(n=1024, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) @ torch.randn(4, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)


@pytest.fixture
def make_cache(tiny_model):
    """``make_cache(corpus, out, **overrides)`` caches SITE of the tiny model."""
    from interp.activations import cache_activations

    return lambda corpus, out, **kw: cache_activations(tiny_model, corpus, [SITE], out_dir=out, **{**CACHE_ARGS, **kw})


@pytest.fixture
def other_corpus(tmp_path):
    """A second corpus, different from ``tiny_corpus``."""
    path = tmp_path / "other.txt"
    path.write_text(
        "\n\n".join(f"Paragraph {i}: the quick brown fox number {i} jumps over {i * 7} lazy dogs." for i in range(80))
        + "\n"
    )
    return str(path)
