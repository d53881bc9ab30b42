"""Evaluate a model on the Laundry List task: accuracy per list length and per item position, and
where chosen heads attend from the prediction position (Merullo et al. 2024, §5).

Metric (the paper does not say which it used, so both are reported):
- ``correct_full``: the target's first token is the argmax over the whole vocabulary;
- ``correct_cand``: the target's first-token logit is higher than every other listed object's
  first-token logit (the N-way choice among the candidates).
Prompts are run without padding, in batches of equal token length, so position ids are those of
the unbatched prompt and the prediction position is the last token. A BOS token is prepended
when the tokenizer has one. Extra forward hooks (interventions) can be passed in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.decomposers.heads.laundry_prompts import LaundryPrompt


@dataclass
class LaundryResult:
    """Per-prompt outcomes. Attention arrays are [P, n_heads, max N] (NaN past a prompt's N): the
    attention from the last position to each first-list object's tokens (``attn_first``) and to its
    re-listed occurrence in the second sentence (``attn_second``; NaN for the missing object)."""

    n_objects: np.ndarray
    missing_index: np.ndarray
    correct_full: np.ndarray
    correct_cand: np.ndarray
    predicted_index: np.ndarray  # first-list index of the candidate with the highest first-token logit
    collisions: int  # prompts where two candidates share a first token
    heads: tuple[tuple[int, int], ...]
    attn_first: np.ndarray
    attn_second: np.ndarray

    def accuracy(self, by: str = "n_objects", metric: str = "cand") -> dict:
        """Mean accuracy grouped by list length (``by="n_objects"``) or by (N, position of the
        missing item in the first list) (``by="position"``)."""
        correct = self.correct_cand if metric == "cand" else self.correct_full
        keys = self.n_objects if by == "n_objects" else list(zip(self.n_objects, self.missing_index))
        groups = defaultdict(list)
        for k, c in zip(keys, correct):
            groups[tuple(int(x) for x in k) if isinstance(k, tuple) else int(k)].append(c)
        return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def _token_spans(offsets, spans, shift: int) -> list[list[int]]:
    """Token indices overlapping each character span (``shift`` accounts for a prepended BOS)."""
    return [[i + shift for i, (a, b) in enumerate(offsets) if a < end and b > start] for start, end in spans]


def encode(tokenizer, prompts: list[LaundryPrompt]) -> list[dict]:
    """Token ids, target/candidate first tokens and object token positions of each prompt."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    out = []
    for p in prompts:
        enc = tokenizer(p.text, add_special_tokens=False, return_offsets_mapping=True)
        first = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in p.candidates]
        second = dict(zip(p.second_order, _token_spans(enc["offset_mapping"], p.spans_second, len(bos))))
        out.append(
            {
                "ids": bos + enc["input_ids"],
                "cand": first,
                "target": first[p.missing_index],
                "first_pos": _token_spans(enc["offset_mapping"], p.spans_first, len(bos)),
                "second_pos": [second.get(o) for o in p.objects],
            }
        )
    return out


def _attn_to(pattern_row: torch.Tensor, positions: list[list[int] | None], width: int) -> np.ndarray:
    row = np.full(width, np.nan)
    for i, pos in enumerate(positions):
        if pos:
            row[i] = float(pattern_row[pos].sum())
    return row


@torch.no_grad()
def evaluate(
    model,
    prompts: list[LaundryPrompt],
    heads: tuple[tuple[int, int], ...] = (),
    hooks: list | tuple = (),
    batch_size: int = 32,
    progress: bool = True,
) -> LaundryResult:
    """Run ``model`` (a ``LoadedModel``; load it with ``attn_implementation="eager"`` when ``heads``
    is given) on ``prompts`` with optional forward ``hooks`` [(hook_name, fn)] active."""
    enc = encode(model.tokenizer, prompts)
    by_len = defaultdict(list)
    for i, e in enumerate(enc):
        by_len[len(e["ids"])].append(i)
    batches = [idx[j : j + batch_size] for idx in by_len.values() for j in range(0, len(idx), batch_size)]
    width = max(p.n_objects for p in prompts)
    P, nh = len(prompts), len(heads)
    full, cand = np.zeros(P, bool), np.zeros(P, bool)
    a1, a2 = np.full((P, nh, width), np.nan), np.full((P, nh, width), np.nan)
    pred = np.zeros(P, int)
    rows: dict[int, torch.Tensor] = {}  # layer -> attention of the last position [B, H, S]

    def keep_last(pattern, hook):
        rows[int(hook.name.split(".")[1])] = pattern[:, :, -1].float().cpu()

    pattern_hooks = [(f"blocks.{l}.attn.hook_pattern", keep_last) for l in sorted({l for l, _ in heads})]
    with model.bridge.hooks(fwd_hooks=list(hooks) + pattern_hooks):
        for idx in tqdm(batches, desc="laundry list", disable=not progress):
            last = model.bridge(torch.tensor([enc[i]["ids"] for i in idx], device=model.device))[:, -1].float().cpu()
            for b, i in enumerate(idx):
                e, row = enc[i], last[b]
                others = [t for t in e["cand"] if t != e["target"]]
                full[i] = int(row.argmax()) == e["target"]
                cand[i] = len(others) == len(e["cand"]) - 1 and bool(row[e["target"]] > row[others].max())
                pred[i] = int(row[e["cand"]].argmax())
                for k, (l, h) in enumerate(heads):
                    a1[i, k] = _attn_to(rows[l][b, h], e["first_pos"], width)
                    a2[i, k] = _attn_to(rows[l][b, h], e["second_pos"], width)
    collisions = sum(len(set(e["cand"])) < len(e["cand"]) for e in enc)
    return LaundryResult(
        n_objects=np.array([p.n_objects for p in prompts]),
        missing_index=np.array([p.missing_index for p in prompts]),
        correct_full=full,
        correct_cand=cand,
        predicted_index=pred,
        collisions=collisions,
        heads=tuple(heads),
        attn_first=a1,
        attn_second=a2,
    )
