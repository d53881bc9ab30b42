"""Cache a model's activations at hook sites (``interp cache configs/models/smollm2-135m.yaml``).

Re-running the same command after an interruption resumes the cache. ``torchrun --nproc_per_node N
-m interp cache ...`` splits the forward passes over N processes (one GPU each); ``device_map=auto``
spreads a model too large for one GPU over several.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    model: str
    """Model spec: a built-in name (smollm2-135m, gemma3-270m, tiny-llama) or a Hugging Face id."""
    sites: tuple[str, ...]
    """Hook sites to cache, e.g. [blocks.15.hook_resid_post]."""
    n_tokens: int
    """Tokens to cache (1e6 is accepted)."""
    out: str
    """Cache folder (resumed when it holds a partial cache made with the same settings)."""
    text: str = "builtin:stdlib-docs"
    """Text source: builtin:NAME[?split=train|test], a Hugging Face dataset spec, or a file."""
    seq_len: int = 128
    """Tokens per context row."""
    batch_size: int | None = None
    """Sequences per forward pass (None: 16 on CPU, 128 on CUDA)."""
    dtype: str = "float32"
    """Storage dtype: float32, float16 or bfloat16."""
    shuffle_seed: int | None = None
    """Shuffle the documents of the text source with this seed (None: source order)."""
    device_map: str | None = None
    """Hugging Face device map (e.g. auto) for a model larger than one GPU."""


def run(cfg: Config) -> None:
    import interp.models
    from interp import distributed
    from interp.activations import ActivationCache, cache_activations

    model = interp.models.load(cfg.model, device_map=cfg.device_map)
    path = cache_activations(
        model,
        cfg.text,
        list(cfg.sites),
        cfg.n_tokens,
        cfg.out,
        seq_len=cfg.seq_len,
        batch_size=cfg.batch_size,
        dtype=cfg.dtype,
        shuffle_seed=cfg.shuffle_seed,
    )
    if distributed.is_main():
        m = ActivationCache(path).manifest
        print(f"cached {m['n_tokens']} tokens of {m['model']} at {', '.join(m['sites'])} -> {path}")
