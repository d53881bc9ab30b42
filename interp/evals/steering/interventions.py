"""Interventions at a hook site, and batched KV-cached generation that runs under them.

``steer(model, direction, site, alpha, positions, mode)`` is a context manager that edits the
activation at ``site`` (a TransformerLens hook of the bridge) in every forward pass made inside
it, including the prefill and the cached decode steps of ``generate``:

- ``add``: x + α·v (activation addition; Turner et al. 2023, the SNMF paper's steering);
- ``project``: x − (x·v̂)v̂ (the direction projected out; α unused);
- ``clamp``: x + (α − x·v̂)v̂ (the component along v̂ set to α);
- ``ablate``: x − (decode(c_f·e_f) − decode(0)) with c_f = encode(x)_f, i.e. feature f's
  reconstruction subtracted (needs ``decomposer`` and ``feature``).

``v`` is scaled to unit norm unless ``normalize=False``, so α is an absolute ℓ2 step at the site.
``positions="all"`` edits every position (prompt and generated; the SNMF paper's protocol);
``"generated"`` edits the positions whose next-token predictions are generated: the last prompt
position and every later one. Prompts are left-padded, so every row's prompt ends at column P−1;
``generate`` tells the hook P. A forward pass made outside ``generate`` counts its whole input as
the prompt (only its last position is edited) unless ``prompt_length(P)`` says otherwise.

The hook is a plain torch forward hook on the bridge's ``HookPoint``; it is removed when the
context exits, on exceptions too, and nothing else about the model is touched.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import torch
from jaxtyping import Float

from interp.models import LoadedModel
from interp.models.prompts import batches, encode_prompts, left_pad, pad_id

MODES = ("add", "project", "clamp", "ablate")
POSITIONS = ("all", "generated")
_PROMPT_LEN: contextvars.ContextVar[int | None] = contextvars.ContextVar("prompt_len", default=None)
_ACTIVE: dict[int, int] = {}  # id(bridge) -> number of open steering contexts


def active_interventions(model: LoadedModel) -> int:
    """How many ``steer`` contexts are open on ``model`` right now."""
    return _ACTIVE.get(id(model.bridge), 0)


@contextlib.contextmanager
def prompt_length(n: int) -> Iterator[None]:
    """Declare that the inputs of forward passes inside are prompts of ``n`` (left-padded) columns
    followed by continuation tokens (for ``positions="generated"`` outside ``generate``)."""
    token = _PROMPT_LEN.set(int(n))
    try:
        yield
    finally:
        _PROMPT_LEN.reset(token)


def _position_mask(seq: int, positions: str, device: torch.device) -> torch.Tensor | None:
    """Columns of a [B, S, ...] call to edit (None: all)."""
    if positions == "all":
        return None
    p = _PROMPT_LEN.get()
    if p is None or seq < p:  # no declared prompt: the whole input is the prompt; S < P: a cached step
        first = seq - 1 if p is None else 0
    else:
        first = p - 1
    return torch.arange(seq, device=device) >= first


def check_direction(model: LoadedModel, direction: torch.Tensor, site: str) -> int:
    """Validate the site and the direction's width before any compute; return the width."""
    model.validate_site(site)
    width = model.site_width(site)
    if not isinstance(direction, torch.Tensor) or direction.ndim != 1:
        raise ValueError(
            f"direction must be a 1-D tensor [D], got {getattr(direction, 'shape', type(direction).__name__)}"
        )
    if direction.shape[0] != width:
        raise ValueError(
            f"direction has width {direction.shape[0]} but site {site!r} of {model.name} has "
            f"width {width}; map the direction to this site first (e.g. neuron-space "
            f"features to hook_mlp_out with residual_directions)"
        )
    if not torch.isfinite(direction).all():
        raise ValueError("direction contains NaN or inf")
    return width


def _editor(direction: torch.Tensor, alpha: float, mode: str, decomposer: Any, feature: int | None):
    """A function flat activations [N, D] -> edited [N, D]."""
    if mode == "add":
        return lambda x: x + alpha * direction.to(x)
    if mode == "project":
        return lambda x: x - (x @ direction.to(x))[:, None] * direction.to(x)
    if mode == "clamp":
        return lambda x: x + (alpha - x @ direction.to(x))[:, None] * direction.to(x)

    def ablate(x: torch.Tensor) -> torch.Tensor:
        p = next(iter(decomposer.parameters()), None)
        xd = x.to(p.dtype if p is not None else x.dtype)
        codes = decomposer.encode_dense(xd)
        only = torch.zeros_like(codes)
        only[:, feature] = codes[:, feature]
        return x - (decomposer.decode(only) - decomposer.decode(torch.zeros_like(codes))).to(x)

    return ablate


@contextlib.contextmanager
def steer(
    model: LoadedModel,
    direction: Float[torch.Tensor, "D"] | None,
    site: str,
    alpha: float = 0.0,
    positions: str = "all",
    mode: str = "add",
    normalize: bool = True,
    decomposer: Any = None,
    feature: int | None = None,
) -> Iterator[None]:
    """Apply an intervention at ``site`` to every forward pass of ``model`` inside the context."""
    if mode not in MODES:
        raise ValueError(f"unknown steering mode {mode!r}; choose one of {MODES}")
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; choose one of {POSITIONS}")
    if mode == "ablate":
        if decomposer is None or feature is None:
            raise ValueError("mode='ablate' needs decomposer= and feature= (whose reconstruction to subtract)")
        if direction is None:
            direction = decomposer.directions()[feature]
    if direction is None:
        raise ValueError(f"mode={mode!r} needs a direction")
    check_direction(model, direction, site)
    v = direction.detach().float()
    if normalize or mode in ("project", "clamp"):
        norm = v.norm()
        if norm == 0:
            raise ValueError("direction is the zero vector")
        v = v / norm
    edit = _editor(v.to(model.device), float(alpha), mode, decomposer, feature)

    def hook(module: Any, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        flat = out.reshape(out.shape[0], out.shape[1], -1)  # heads flattened (attn.hook_z)
        mask = _position_mask(flat.shape[1], positions, flat.device)
        sel = flat if mask is None else flat[:, mask]
        edited = edit(sel.reshape(-1, sel.shape[-1])).reshape(sel.shape)
        if mask is None:
            return edited.reshape(out.shape)
        new = flat.clone()
        new[:, mask] = edited
        return new.reshape(out.shape)

    handle = model.bridge.hook_dict[site].register_forward_hook(hook)
    key = id(model.bridge)
    _ACTIVE[key] = _ACTIVE.get(key, 0) + 1
    try:
        yield
    finally:
        handle.remove()
        _ACTIVE[key] -= 1
        if not _ACTIVE[key]:
            del _ACTIVE[key]


@torch.no_grad()
def generate(
    model: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 32,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = 30,
    top_p: float | None = 0.3,
    batch_size: int = 16,
    add_bos: bool = True,
) -> list[str]:
    """Continuations (text only) of ``prompts``, sampled with the KV cache in left-padded batches.

    Whatever ``steer`` contexts are open apply. ``temperature=0`` is greedy. Defaults follow the
    SNMF paper's generation settings (top-k 30, top-p 0.3, temperature 1). Sampling is seeded
    per batch (the global RNG state is restored afterwards).
    """
    from transformers import GenerationConfig

    seqs = encode_prompts(model, prompts, add_bos)
    tok = model.tokenizer
    sample = temperature > 0
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else 1.0,
        top_k=(top_k or 0) if sample else None,
        top_p=(top_p or 1.0) if sample else None,
        pad_token_id=pad_id(tok),
        eos_token_id=tok.eos_token_id,
        use_cache=True,
    )
    out: list[str] = []
    for b, part in enumerate(batches(len(seqs), batch_size)):
        ids, mask = left_pad(seqs[part], pad_id(tok), model.device)
        with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
            torch.manual_seed(seed * 100_003 + b)
            with prompt_length(ids.shape[1]):
                gen = model.hf_model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
        out += tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
    return out
