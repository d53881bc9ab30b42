"""The cases shared by the distributed workers and the single-process references."""

import torch

CACHE_ARGS = dict(
    sites=["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"],
    n_tokens=2048,
    seq_len=32,
    batch_size=4,
    shard_tokens=256,
)


DP_METHODS = ["topk", "batchtopk", "gba"]  # batch-level selection and bias adaptation are global across ranks


def sae_config(method: str = "topk") -> dict:
    sparsity = dict(update_every=2) if method == "gba" else dict(k=6, aux_k=16)
    return dict(
        method=method,
        d_sae=96,
        **sparsity,
        batch_size=64,
        n_tokens=64 * 24,
        lr=3e-3,
        warmup_steps=2,
        dead_tokens=256,
        seed=3,
        wandb="disabled",
        device="cpu",
        log_every=8,
        checkpoint_every=10_000,
    )


def sae_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(48, 16, generator=g), dim=1)
    codes = torch.rand(2048, 48, generator=g) * (torch.rand(2048, 48, generator=g) < 0.08)
    return codes @ dirs + 0.5 + 0.01 * torch.randn(2048, 16, generator=g)
