"""Run a model to its hook sites and take their activations: the one forward pass every stage uses
(activation caches, feature stores, steering directions, SNMF sentences, LIB cuts, quality passes).

The pass stops after the deepest site's block (``stop_layer``). A left-padded batch comes with its
attention mask; position ids then count real tokens only, as in ``interp.models.prompts.forward``
and Hugging Face generation, so each row's activations equal those of the row run alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Float, Int

from interp.models.loader import LoadedModel
from interp.models.sites import stop_layer, validate_site


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda" and x.device.type == "cpu":  # pinned + async: queued behind the last pass
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


@torch.no_grad()
def run_to_sites(
    model: LoadedModel,
    tokens: Int[torch.Tensor, "B S"],
    sites: Sequence[str],
    attention_mask: Int[torch.Tensor, "B S"] | None = None,
) -> dict[str, Float[torch.Tensor, "B S D"]]:
    """Activations ``[B, S, D]`` (on the model's device, heads flattened) of each of ``sites`` for
    token ids ``tokens``, from one forward pass that stops after the deepest site's block.
    ``attention_mask`` (1 = real token) is for left-padded batches: pads are masked out and
    position ids count real tokens only; without it every token attends causally from position 0."""
    sites = list(dict.fromkeys(sites))
    if not sites:
        raise ValueError("give at least one hook site")
    for site in sites:
        validate_site(model, site)
    tokens = _to_device(tokens, model.device)
    kwargs: dict[str, Any] = {}
    if attention_mask is not None:
        if attention_mask.shape != tokens.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match tokens {tuple(tokens.shape)}")
        mask = _to_device(attention_mask, model.device).long()
        kwargs = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp_min(0)}
    got: dict[str, torch.Tensor] = {}

    def grabber(site: str):
        def grab(act: torch.Tensor, hook: Any) -> None:
            got[site] = act.detach()

        return grab

    model.bridge.run_with_hooks(
        tokens,
        fwd_hooks=[(s, grabber(s)) for s in sites],
        stop_at_layer=stop_layer(sites),
        output_attentions=False,
        **kwargs,
    )
    return {s: got[s].reshape(*tokens.shape, -1) for s in sites}
