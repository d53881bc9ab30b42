"""Model passes shared by the quality metrics: every decomposer at its own site, one model pass.

``token_pass``: packed text through the model once per batch with every site captured (clean
logits), one zero-ablated pass per site and one spliced pass per decomposer (the CE/KL terms of
SAEBench's core eval), feeding each decomposer's ``CoreTotals`` and keeping the activations of a
few sampled features per decomposer for automatic interpretability.
``capture_texts``: site activations of each text's tokens (BOS left out), all sites in one pass.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from interp.models.prompts import encode_prompts, pad_id
from interp.evals.quality.core import CoreTotals
from interp.evals.reconstruction import _ce_terms, dec_dtype
from interp.models import LoadedModel, run_to_sites


@torch.no_grad()
def codes_of(dec: Any, x: Float[torch.Tensor, "N D"]) -> Float[torch.Tensor, "N F"]:
    """Dense codes of ``x`` (``encode_dense``: ITDA's sparse pairs scattered), float32."""
    return dec.encode_dense(x.to(dec_dtype(dec))).detach().float()


def row_dot(dec: Any, codes: Float[torch.Tensor, "N F"]) -> Callable[[torch.Tensor], Float[torch.Tensor, "N F"]]:
    """``probe -> [N, F]``: each token's decoder row of every feature (what one unit of its code
    adds to the reconstruction, in the activation's units) dotted with ``probe``, as the gradient
    of ``decode(codes) @ probe`` with respect to the codes. Exact for every decoder that is affine
    in the codes token by token: an SAE's rows are its unit directions over ``norm_scale``, top-AFA
    scales each token by its own standard deviation (``codes`` must come from the last ``encode``
    of this decomposer, which top-AFA's decode reads), semi-NMF's and LIB's rows have their own norms.
    """

    def fn(probe: Float[torch.Tensor, "D"]) -> Float[torch.Tensor, "N F"]:
        with torch.enable_grad():
            c = codes.to(dec_dtype(dec)).detach().requires_grad_(True)
            (grad,) = torch.autograd.grad((dec.decode(c).to(probe.dtype) @ probe).sum(), c)
        return grad

    return fn


def _kl(logp: torch.Tensor, logp_clean: torch.Tensor) -> float:
    return F.kl_div(logp, logp_clean, log_target=True, reduction="sum").item()


@torch.no_grad()
def _batch(
    model: LoadedModel,
    decs: Sequence[Any],
    sites: Sequence[str],
    tokens: torch.Tensor,
    special: torch.Tensor,
    seq0: int,
    totals: Sequence[CoreTotals],
    samples: Sequence[list[torch.Tensor]],
    sampled: Sequence[torch.Tensor],
) -> None:
    tokens, special = tokens.to(model.device), special.to(model.device)
    got: dict[str, torch.Tensor] = {}

    def grab(site: str):
        def hook_fn(act, hook):
            got[site] = act

        return hook_fn

    def run(site: str, replacement: torch.Tensor) -> torch.Tensor:
        return model.bridge.run_with_hooks(
            tokens, fwd_hooks=[(site, lambda a, hook: replacement.reshape(a.shape).to(a.dtype))]
        )

    clean = model.bridge.run_with_hooks(tokens, fwd_hooks=[(s, grab(s)) for s in sorted(set(sites))])
    keep, scored = ~special, ~special[:, 1:]
    ce_clean, logp_clean = _ce_terms(clean, tokens, scored)
    ablated = {}
    for s in sorted(set(sites)):
        x = got[s].reshape(*tokens.shape, -1)
        ce, logp = _ce_terms(run(s, torch.where(keep[..., None], torch.zeros_like(x), x)), tokens, scored)
        ablated[s] = (ce, _kl(logp, logp_clean))
    seq = (torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand_as(tokens))[keep]
    for i, (dec, site) in enumerate(zip(decs, sites)):
        x = got[site].reshape(*tokens.shape, -1)
        codes = codes_of(dec, x[keep])
        if samples[i] is not None:
            full = codes.new_zeros(*tokens.shape, len(sampled[i]))
            full[keep] = codes[:, sampled[i]]
            samples[i].append(full.cpu())
        x_hat = dec.decode(codes.to(dec_dtype(dec))).to(x.dtype)
        totals[i].add_acts(x[keep], x_hat, codes, seq + seq0)
        spliced = x.clone()
        spliced[keep] = x_hat
        ce, logp = _ce_terms(run(site, spliced), tokens, scored)
        totals[i].add_loss(ce_clean, ce, ablated[site][0], _kl(logp, logp_clean), ablated[site][1], int(scored.sum()))


def token_pass(
    model: LoadedModel,
    decs: Sequence[Any],
    sites: Sequence[str],
    tokens: Int[np.ndarray, "B S"],
    special: np.ndarray,
    batch_size: int = 8,
    sampled: Sequence[torch.Tensor | None] = (),
    progress: bool = True,
) -> tuple[list[CoreTotals], list[torch.Tensor | None]]:
    """Core totals per decomposer, and the activations ``[B, S, K]`` of its ``sampled`` feature ids
    (None where a decomposer's reconstruction does not apply: it raises NotImplementedError)."""
    totals = [CoreTotals(int(dec.directions().shape[0])) for dec in decs]
    sampled = list(sampled) or [None] * len(decs)
    samples: list[list | None] = [[] if s is not None else None for s in sampled]
    toks, spec = torch.from_numpy(tokens), torch.from_numpy(special)
    for a in tqdm(range(0, len(toks), batch_size), disable=not progress, desc="quality: token pass"):
        _batch(model, decs, sites, toks[a : a + batch_size], spec[a : a + batch_size], a, totals, samples, sampled)
    return totals, [torch.cat(s) if s is not None else None for s in samples]


@torch.no_grad()
def capture_texts(
    model: LoadedModel,
    texts: Sequence[str],
    sites: Sequence[str],
    max_tokens: int = 128,
    batch_size: int = 16,
    desc: str = "quality: texts",
) -> dict[str, list[torch.Tensor]]:
    """Per site, each text's activations ``[T, D]`` over its first ``max_tokens`` tokens after BOS.
    Right-padded batches without a mask: in a causal model the pads after a text cannot change it."""
    seqs = [s[: max_tokens + 1] for s in encode_prompts(model, texts)]
    sites = sorted(set(sites))
    out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    for a in tqdm(range(0, len(seqs), batch_size), desc=desc, leave=False):
        part = seqs[a : a + batch_size]
        width = max(len(s) for s in part)
        ids = torch.full((len(part), width), pad_id(model.tokenizer), dtype=torch.long)
        for r, s in enumerate(part):
            ids[r, : len(s)] = torch.tensor(s)
        acts = run_to_sites(model, ids, sites)
        for site in sites:
            act = acts[site].float().cpu()
            out[site] += [act[r, 1 : len(s)] for r, s in enumerate(part)]
    return out
