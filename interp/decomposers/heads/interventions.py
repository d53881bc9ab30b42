"""Interventions on single singular components of attention heads (Merullo et al. 2024, §3.3, §4).

A head's output ``o = z_h @ W_O[h]`` (z_h: its attention-weighted values, ``attn.hook_z``) lies in
the span of its OV write vectors ``v_i`` (the rows of Vt), so its contribution along component i
is the scalar ``c_i = o . v_i = z_h . (W_O[h] v_i)``. Two ways to change it:

- **Activation side** (``component_hooks``): a forward hook on ``blocks.L.attn.hook_z`` moves z_h
  by ``delta * b_i`` where ``b_i W_O[h] = v_i`` (``b_i = v_i pinv(W_O[h])``), so the head's output
  changes by exactly ``delta * v_i`` and nothing else. Modes: ``scale`` (c_i -> alpha c_i),
  ``set`` (c_i -> alpha, the other components untouched) and ``replace`` (the head's whole output
  becomes ``alpha v_i``, the paper's intervention: no token content passes through the head).
- **Weight side** (``edit_weights``): ``W_O[h] <- W_O[h] (I + sum_i (gamma_i - 1) v_i v_i^T)``, which
  rescales (gamma=0: removes) singular values of the OV circuit. Only W_O is edited: with grouped-
  query attention W_V is shared by several query heads, so the paper's refactoring of W_V and W_O
  would change the other heads of the group too. The original weights are restored on exit.

Scale 1 is the identity, and ``scale`` with alpha=0 equals the weight edit with gamma=0 (tested).
For Gemma the post-attention norm gain is folded into W_O (as in ``HeadSVD``); its per-token RMS
scale sits after the edit in both cases.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from interp.decomposers.heads.svd import HeadSVD, _norm_gain

MODES = ("scale", "set", "replace")


@dataclass(frozen=True)
class ComponentEdit:
    """Component ``index`` of head ``layer.head``'s OV circuit, and the value ``alpha`` for it."""

    layer: int
    head: int
    index: int
    alpha: float = 0.0


def _read_write(svd: HeadSVD, e: ComponentEdit) -> tuple[torch.Tensor, torch.Tensor]:
    """(r [dh], b [dh]): ``c = z . r`` and ``b @ W_O[h] = v`` for the component's write vector v."""
    v = svd.components(e.layer, e.head, "ov")[2][e.index].double()
    W_O = svd.W_O[e.layer, e.head].double()
    return W_O @ v, v @ torch.linalg.pinv(W_O)


def component_hooks(
    svd: HeadSVD, edits: list[ComponentEdit], mode: str = "scale", positions: str = "all"
) -> list[tuple[str, callable]]:
    """Forward hooks (for ``bridge.hooks`` / ``run_with_hooks``) applying ``edits`` on ``attn.hook_z``.

    ``positions``: ``"all"`` or ``"last"`` (only the final token, e.g. the prediction position).
    Edits of one head must name distinct components (their write vectors are orthonormal, so the
    edits do not interfere). ``replace`` takes at most one edit per head.
    """
    if mode not in MODES or positions not in ("all", "last"):
        raise ValueError(f"mode must be one of {MODES} and positions 'all'|'last', got {mode!r}, {positions!r}")
    by_layer: dict[int, list[ComponentEdit]] = {}
    for e in edits:
        svd.components(e.layer, e.head)  # validates the head
        if not 0 <= e.index < svd.cfg.d_head:
            raise ValueError(f"component index {e.index} out of range 0..{svd.cfg.d_head - 1}")
        by_layer.setdefault(e.layer, []).append(e)
    hooks = []
    for layer, es in by_layer.items():
        heads = [e.head for e in es]
        if len(set(zip(heads, (e.index for e in es)))) < len(es) or (
            mode == "replace" and len(set(heads)) < len(heads)
        ):
            raise ValueError(f"layer {layer}: duplicate component edits for one head: {es}")
        rw = [_read_write(svd, e) for e in es]
        R = torch.stack([r for r, _ in rw]).float()  # [E, dh]
        B = torch.stack([b for _, b in rw]).float()  # [E, dh]
        alpha = torch.tensor([e.alpha for e in es])
        hooks.append((f"blocks.{layer}.attn.hook_z", _z_hook(torch.tensor(heads), R, B, alpha, mode, positions)))
    return hooks


def _z_hook(heads, R, B, alpha, mode, positions):
    def hook(z, hook):  # z: [batch, seq, n_heads, d_head]
        sl = slice(None) if positions == "all" else slice(-1, None)
        zz = z[:, sl]
        dev = zz.device
        Rd, Bd, a, hd = R.to(dev, zz.dtype), B.to(dev, zz.dtype), alpha.to(dev, zz.dtype), heads.to(dev)
        zh = zz[:, :, hd]  # [b, s, E, dh]
        c = (zh * Rd).sum(-1, keepdim=True)  # current coefficient of each edited component
        if mode == "replace":
            new = a[:, None] * Bd
            zz = zz.clone()
            zz[:, :, hd] = new.expand_as(zh)
        else:
            delta = (a[:, None] - 1) * c if mode == "scale" else a[:, None] - c
            zz = zz.index_add(2, hd, delta * Bd)
        z = z.clone()
        z[:, sl] = zz
        return z

    return hook


@contextmanager
def edit_weights(model, svd: HeadSVD, edits: list[ComponentEdit]):
    """Rescale OV singular values by editing ``o_proj`` (``alpha`` is the factor gamma; 0 removes
    the component); the original weights are restored when the block exits, even on error."""
    layers = model.hf_model.get_decoder().layers
    dh = svd.cfg.d_head
    saved = {}
    try:
        for e in edits:
            U, S, Vt = svd.components(e.layer, e.head, "ov")
            layer = layers[e.layer]
            o = layer.self_attn.o_proj.weight  # [D, H*dh]; head block is W_O_raw[h].T
            if e.layer not in saved:
                saved[e.layer] = o.detach().clone()
            v = Vt[e.index].double()
            W_fold = svd.W_O[e.layer, e.head].double()  # [dh, D]
            delta = (e.alpha - 1.0) * torch.outer(W_fold @ v, v)
            if svd.cfg.fold_norms and hasattr(layer, "pre_feedforward_layernorm"):
                delta = delta / _norm_gain(layer.post_attention_layernorm, svd.cfg.d_model)
            with torch.no_grad():
                o[:, e.head * dh : (e.head + 1) * dh] += delta.T.to(o.dtype).to(o.device)
        yield
    finally:
        with torch.no_grad():
            for l, w in saved.items():
                layers[l].self_attn.o_proj.weight.copy_(w)
