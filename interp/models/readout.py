"""The neuron -> residual readout: where an MLP's hidden activations go next, its output projection
W_out and, for models with a post-MLP norm (Gemma 2/3), that norm, looked up through the
TransformerLens bridge. The one implementation behind SNMF's ``residual_directions`` (Shafran,
Geiger & Geva 2025, arXiv 2506.10920, read features through W_out) and the steering directions
mapped to ``hook_mlp_out``."""

from __future__ import annotations

import torch
from jaxtyping import Float

from interp.models.loader import LoadedModel


def _original(module):
    return getattr(module, "original_component", module)


def mlp_out_weight(model: LoadedModel, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
    """``W_out`` of block ``layer`` in row convention (``h @ W_out`` is the MLP's output)."""
    if not 0 <= layer < model.n_layers:
        raise ValueError(f"layer {layer} does not exist: {model.name} has layers 0..{model.n_layers - 1}")
    try:
        out = _original(model.bridge.blocks[layer].mlp.out)
    except AttributeError as e:
        raise ValueError(
            f"cannot find the MLP output projection of {model.name} block {layer} "
            f"(expected bridge.blocks[{layer}].mlp.out)"
        ) from e
    w = out.weight.detach()
    if isinstance(out, torch.nn.Linear):  # nn.Linear stores [out, in]
        return w.T
    if w.shape == (model.d_mlp, model.d_model):  # GPT-2's Conv1D stores [in, out]
        return w
    raise ValueError(f"unexpected MLP output weight of shape {tuple(w.shape)} in {model.name} block {layer}")


def post_mlp_norm(model: LoadedModel, layer: int):
    """The norm applied to the MLP output before it joins the residual stream, or None."""
    norm = getattr(model.bridge.blocks[layer], "ln2_post", None)
    return None if norm is None else _original(norm)


@torch.no_grad()
def to_residual(
    model: LoadedModel, layer: int, dirs: Float[torch.Tensor, "F d_mlp"], post_norm: bool = True
) -> Float[torch.Tensor, "F d_model"]:
    """``dirs @ W_out`` (then the post-MLP norm when the model has one and ``post_norm``): the exact
    change at ``blocks.{layer}.hook_mlp_out`` (before any post-MLP norm) when ``post_norm`` is off,
    since the projection's bias cancels."""
    w = mlp_out_weight(model, layer)
    if dirs.shape[-1] != w.shape[0]:
        raise ValueError(
            f"directions have width {dirs.shape[-1]} but {model.name} block {layer} "
            f"has d_mlp={w.shape[0]}: wrong model or layer for this decomposer"
        )
    out = dirs.to(device=w.device, dtype=w.dtype) @ w
    norm = post_mlp_norm(model, layer) if post_norm else None
    return (norm(out) if norm is not None else out).float()
