"""Directions to steer with: difference in means of a site's activations between two prompt sets,
decomposer features at their own site, and neuron-space (``mlp.hook_post``) features mapped exactly
to ``hook_mlp_out`` through the block's output projection."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Float

from interp.models.prompts import batches, bos_id, encode_prompts, left_pad, pad_id
from interp.models import LoadedModel, run_to_sites, site_layer, to_residual


@torch.no_grad()
def site_activations(
    model: LoadedModel,
    site: str,
    prompts: Sequence[str],
    batch_size: int = 16,
    add_bos: bool = True,
    exclude_bos: bool = True,
) -> list[Float[torch.Tensor, "T D"]]:
    """Activations at ``site`` of every real token of each prompt (pads, and BOS unless asked,
    left out); the forward pass stops after the site's block."""
    model.validate_site(site)
    seqs = encode_prompts(model, prompts, add_bos)
    skip = 1 if (add_bos and exclude_bos and bos_id(model.tokenizer) is not None) else 0
    out: list[torch.Tensor] = []
    for part in batches(len(seqs), batch_size):
        ids, mask = left_pad(seqs[part], pad_id(model.tokenizer), model.device)
        x = run_to_sites(model, ids, [site], mask)[site]
        width = ids.shape[1]
        out += [x[r, width - len(s) + skip :].float().cpu() for r, s in enumerate(seqs[part])]
    return out


def diff_in_means(
    model: LoadedModel, site: str, positive_prompts: Sequence[str], negative_prompts: Sequence[str], **kw: Any
) -> Float[torch.Tensor, "D"]:
    """mean(activation over every token of the positive prompts) − the same over the negative ones
    (the SNMF paper's DiffMeans baseline; BOS and pads excluded). Not normalised: ``steer``
    normalises by default."""
    if not len(positive_prompts) or not len(negative_prompts):
        raise ValueError("diff_in_means needs non-empty positive and negative prompt sets")
    pos = torch.cat(site_activations(model, site, positive_prompts, **kw))
    neg = torch.cat(site_activations(model, site, negative_prompts, **kw))
    if not len(pos) or not len(neg):
        raise ValueError("a prompt set has no tokens besides BOS")
    return pos.mean(0) - neg.mean(0)


def residual_directions(
    model: LoadedModel, directions: Float[torch.Tensor, "F N"], layer: int
) -> Float[torch.Tensor, "F D"]:
    """MLP-neuron-space directions of block ``layer`` (``mlp.hook_post``) as their exact effect at
    ``blocks.{layer}.hook_mlp_out``: ``directions @ W_out`` (``interp.models.readout.to_residual``
    without the post-MLP norm; W_out's bias cancels), whatever the decomposer."""
    return to_residual(model, layer, directions, post_norm=False)


def decomposer_direction(
    decomposer: Any, feature: int, model: LoadedModel, site: str | None = None
) -> tuple[Float[torch.Tensor, "D"], str]:
    """Feature ``feature``'s direction at ``site`` (default: the artifact's own site). A neuron-space
    feature (``mlp.hook_post``) is mapped through W_out when ``site`` is the same block's
    ``hook_mlp_out``; any other change of site is refused."""
    own = decomposer.cfg.site
    site = site or own
    dirs = decomposer.directions()
    if not 0 <= feature < len(dirs):
        raise ValueError(f"feature {feature} out of range: the decomposer has {len(dirs)} features")
    if site == own:
        return dirs[feature].detach().float().cpu(), site
    layer = site_layer(own or "")
    if own and own.endswith("mlp.hook_post") and site == f"blocks.{layer}.hook_mlp_out":
        return residual_directions(model, dirs[feature : feature + 1], layer)[0].cpu(), site
    raise ValueError(
        f"cannot map a feature at {own!r} to {site!r}: steer at {own!r}"
        + (f" or blocks.{layer}.hook_mlp_out" if own and own.endswith("mlp.hook_post") else "")
    )
