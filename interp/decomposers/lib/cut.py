"""Cut a language model's residual stream into node layers and modules (for LIB).

``residual_block_cut(model, layer)`` returns the two modules of one pre-norm decoder block acting
on the residual stream, ``resid_pre -> resid_mid`` (norm + attention + residual) and
``resid_mid -> resid_post`` (norm + MLP + residual), built from the Hugging Face layer the
TransformerLens bridge wraps, with the model's rotary embeddings and a causal mask. They take
``[B, P, d_model]`` for whole sequences starting at position 0. ``loss_with_site`` measures the
next-token CE loss when a site's activations are replaced (node ablations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from interp.models.loader import LoadedModel

RESID_SITES = ("blocks.{L}.hook_resid_pre", "blocks.{L}.hook_resid_mid", "blocks.{L}.hook_resid_post")


def _decoder_layer(model: "LoadedModel", layer: int):
    hf = model.hf_model
    block = hf.model.layers[layer]
    block = getattr(block, "_original_component", block)
    needed = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
    if not all(hasattr(block, n) for n in needed) or hasattr(block, "pre_feedforward_layernorm"):
        raise ValueError(
            f"{model.name}: residual_block_cut supports Llama-style pre-norm blocks "
            f"({', '.join(needed)}); got {type(block).__name__}"
        )
    return hf, block


def residual_block_cut(model: "LoadedModel", layer: int) -> tuple[list[Callable], list[str]]:
    """([attention sublayer, MLP sublayer], [resid_pre, resid_mid, resid_post] site names)."""
    if not 0 <= layer < model.n_layers:
        raise ValueError(f"layer {layer} out of range 0..{model.n_layers - 1} for {model.name}")
    hf, block = _decoder_layer(model, layer)
    dtype = next(hf.parameters()).dtype  # inputs are cast to the model's dtype and back

    def attention(x_in: torch.Tensor) -> torch.Tensor:
        x = x_in.to(dtype)
        P = x.shape[1]
        pos = torch.arange(P, device=x.device)[None].expand(x.shape[0], P)
        cos, sin = hf.model.rotary_emb(x, pos)
        mask = torch.full((P, P), float("-inf"), dtype=x.dtype, device=x.device).triu(1)[None, None]
        out = block.self_attn(
            hidden_states=block.input_layernorm(x), position_embeddings=(cos, sin), attention_mask=mask
        )
        return x_in + (out[0] if isinstance(out, tuple) else out).to(x_in.dtype)

    def mlp(x_in: torch.Tensor) -> torch.Tensor:
        x = x_in.to(dtype)
        return x_in + block.mlp(block.post_attention_layernorm(x)).to(x_in.dtype)

    return [attention, mlp], [s.format(L=layer) for s in RESID_SITES]


def site_acts(model: "LoadedModel", tokens: torch.Tensor, site: str) -> torch.Tensor:
    """Activations ``[B, P, d]`` at ``site`` for token ids ``[B, P]`` (``interp.models.run_to_sites``
    for one site)."""
    from interp.models.run import run_to_sites

    return run_to_sites(model, tokens, [site])[site]


@torch.no_grad()
def loss_with_site(
    model: "LoadedModel", tokens: torch.Tensor, site: str, replacement: torch.Tensor | None = None
) -> float:
    """Mean next-token CE loss on ``tokens`` with ``site``'s activations replaced (None: clean)."""
    hooks = [] if replacement is None else [(site, lambda act, hook: replacement.to(act.dtype))]
    logits = model.bridge.run_with_hooks(tokens, fwd_hooks=hooks)
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten()))


@torch.no_grad()
def loss_from_resid(
    model: "LoadedModel", tokens: torch.Tensor, layer: int, resid_post: torch.Tensor, batch: int = 8
) -> float:
    """Mean next-token CE loss when the model continues from ``blocks.{layer}.hook_resid_post`` =
    ``resid_post`` (runs only the later blocks, the final norm and the unembedding)."""
    hf = model.hf_model
    fns = [fn for l in range(layer + 1, model.n_layers) for fn in residual_block_cut(model, l)[0]]
    dtype = next(hf.parameters()).dtype
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch):
        x = resid_post[i : i + batch].to(dtype)
        for fn in fns:
            x = fn(x)
        logits = hf.lm_head(hf.model.norm(x))[:, :-1].float()
        tgt = tokens[i : i + batch, 1:]
        total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="sum"))
        count += tgt.numel()
    return total / count
