"""Activations of short texts run one by one (not packed), as the SNMF paper extracts them from
its concept sentences: each text starts its own sequence with BOS, so no context leaks between
texts. Texts are batched by right padding, which a causal model never attends to."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float

from interp.decomposers.semi_nmf.interpret import TokenGrid
from interp.models import LoadedModel, run_to_sites


def _ids(model: LoadedModel, text: str) -> list[int]:
    tok = model.tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return [bos] + tok(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def sentence_activations(
    model: LoadedModel, texts: Sequence[str], site: str, batch_size: int = 32, skip_first: int = 0
) -> tuple[Float[torch.Tensor, "T D"], TokenGrid]:
    """Activations at ``site`` of every non-BOS token of every text ``[T, D]``, and their grid
    (group id = the text's index). ``skip_first`` also leaves out each text's first tokens after
    BOS (the paper keeps them; in SmolLM2 the first position carries outsized MLP activations
    that attract features regardless of the text)."""
    model.validate_site(site)
    if not texts:
        raise ValueError("give at least one text")
    ids = [_ids(model, t) for t in texts]
    s = max(len(i) for i in ids)
    tokens = np.zeros((len(ids), s), dtype=np.int64)
    groups = np.full((len(ids), s), -1, dtype=np.int64)
    for r, i in enumerate(ids):
        tokens[r, : len(i)] = i
        groups[r, 1 + skip_first : len(i)] = r
    parts = []
    order = np.argsort([len(i) for i in ids], kind="stable")  # similar lengths share a batch
    for a in range(0, len(ids), batch_size):
        b = order[a : a + batch_size]
        width = max(len(ids[r]) for r in b)
        act = run_to_sites(model, torch.from_numpy(tokens[b, :width]), [site])[site].float().cpu()
        keep = torch.from_numpy(groups[b, :width] >= 0)
        flat = (torch.from_numpy(b)[:, None] * s + torch.arange(width))[keep]
        parts.append((flat, act[keep]))
    flat = torch.cat([p[0] for p in parts])
    acts = torch.cat([p[1] for p in parts])
    order = flat.argsort()
    return acts[order], TokenGrid(tokens, groups, flat[order].numpy())
