"""Vocabulary projection of feature directions ("logit lens" for features).

A residual-stream direction is read out the way the model reads its last residual stream: through
the final norm and the unembedding. The norm is applied as the model's own module, so its weight
(and Gemma's ``1 + w`` convention) are honoured; its per-vector rescaling is a positive scalar per
direction and does not change the ranking of tokens. Directions that live elsewhere (e.g. MLP
neuron space) must be mapped to the residual stream first.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int

from interp.models.loader import LoadedModel


class VocabProjection(NamedTuple):
    top_ids: Int[torch.Tensor, "F K"]
    top_logits: Float[torch.Tensor, "F K"]
    bottom_ids: Int[torch.Tensor, "F K"]
    bottom_logits: Float[torch.Tensor, "F K"]


@torch.no_grad()
def direction_logits(
    model: LoadedModel, directions: Float[torch.Tensor, "F D"], apply_final_norm: bool = True
) -> Float[torch.Tensor, "F V"]:
    """Logits of each direction: ``unembed(final_norm(d))`` (``d @ W_U`` without the norm)."""
    if directions.ndim != 2 or directions.shape[1] != model.d_model:
        raise ValueError(
            f"directions must be [F, d_model={model.d_model}], got {tuple(directions.shape)}; "
            "map neuron-space features to the residual stream first"
        )
    hf = model.hf_model
    w = hf.get_output_embeddings().weight  # [V, D]
    x = directions.to(device=w.device, dtype=w.dtype)
    if apply_final_norm:
        x = hf.get_decoder().norm(x)
    return (x @ w.T).float()


@torch.no_grad()
def vocab_projection(
    model: LoadedModel,
    directions: Float[torch.Tensor, "F D"],
    k: int = 10,
    apply_final_norm: bool = True,
    chunk: int = 256,
) -> VocabProjection:
    """Top and bottom ``k`` tokens of every direction's logits, computed in chunks of features."""
    parts = []
    for i in range(0, len(directions), chunk):
        logits = direction_logits(model, directions[i : i + chunk], apply_final_norm)
        top, bottom = logits.topk(k, dim=1), logits.topk(k, dim=1, largest=False)
        parts.append((top.indices, top.values, bottom.indices, bottom.values))
    return VocabProjection(*(torch.cat(p).cpu() for p in zip(*parts)))
