"""Prompts as a model sees them: token ids with BOS, left-padded batches, and their forward pass.

Shared by steering, calibration and scoring (``interp.evals.steering``) and by anything else that runs
a batch of prompts through a ``LoadedModel``. Left padding puts every prompt's last token in the last
column; position ids count real tokens only, as in Hugging Face generation.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from jaxtyping import Float, Int

from interp.models.loader import LoadedModel


def bos_id(tokenizer: Any) -> int | None:
    for attr in ("bos_token_id", "eos_token_id"):
        if getattr(tokenizer, attr, None) is not None:
            return getattr(tokenizer, attr)
    return None


def pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        if getattr(tokenizer, attr, None) is not None:
            return getattr(tokenizer, attr)
    return 0


def encode_prompts(model: LoadedModel, prompts: Sequence[str], add_bos: bool = True) -> list[list[int]]:
    """Token ids of each prompt, with the model's BOS (or EOS as separator) in front, as in the
    activation caches the decomposers were trained on."""
    if isinstance(prompts, str) or not len(prompts):
        raise ValueError("give a non-empty list of prompts (strings)")
    tok = model.tokenizer
    ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
    bos = bos_id(tok) if add_bos else None
    ids = [([bos] if bos is not None else []) + list(i) for i in ids]
    empty = [p for p, i in zip(prompts, ids) if not i]
    if empty:
        raise ValueError(f"{len(empty)} prompt(s) tokenize to nothing (e.g. {empty[0]!r}); use add_bos=True")
    return ids


def left_pad(
    seqs: Sequence[Sequence[int]], pad: int, device: Any = "cpu"
) -> tuple[Int[torch.Tensor, "B S"], Int[torch.Tensor, "B S"]]:
    """Left-padded ids and attention mask (every row ends at the last column)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if len(s):
            ids[r, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[r, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def forward(
    model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, last_only: bool = False
) -> Float[torch.Tensor, "B S V"]:
    """Logits of a left-padded batch (position ids count real tokens only, as in generation);
    ``last_only`` computes the unembedding for the last position only ([B, 1, V])."""
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    kw = {"logits_to_keep": 1} if last_only else {}
    return model.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw).logits


def batches(n: int, size: int) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(n, a + size))
