"""Fluency of steered text without an LLM judge, built so that degenerate text scores near 0.

AxBench (Wu et al. 2025) and the SNMF paper (Shafran et al. 2025) rate fluency 0–2 with GPT-4o-mini;
offline we combine three measurements, each in [0, 1], by their product:

- ``likelihood``: ``min(1, exp(nll_ref − nll))``, the continuation's mean per-token NLL given its
  prompt under the unsteered model against ``nll_ref``, the mean NLL of ordinary human-written
  sentences (by default the neutral sentences of ``interp.data.concepts``) under the same model.
  Text as likely as ordinary prose scores 1; word salad scores exp(−Δnll). The reference is fixed
  text, not the unsteered generations: normalising by the model's own generations rated
  ``'s-----…`` as fluent (0.886) when generation itself was broken, since everything was compared
  with equally broken text;
- ``repetition``: ``min(1, d2 / 0.9)`` with d2 the fraction of distinct 2-grams, the smaller of two
  counts: over the text's units (words, and every punctuation character on its own, so ``-----``
  is five repeated units; the old word-split count saw it as one word and scored it 1.0) and over
  the model's tokens (``umselfselfself…`` or ``ellumellum himselfellum…`` are one or a few
  "words" but tokens repeating in a loop). A model finds its own loops very likely, so the
  likelihood alone rates ``the the the`` (or those loops) as fluent. 0.9: real unsteered SmolLM2
  continuations of 32 tokens have d2 0.84–1.0 (human-written sentences 1.0), steered loops 0.03–0.3;
- ``content``: ``min(1, w / min_words)`` with w the number of distinct words (units holding a
  letter): an empty continuation, punctuation or one word repeated carries no content.

The concept score is multiplied by ``content`` as well (``scores.score_generations``), so a
continuation without words is never on-concept. Measured on written and real examples by
``tests/evals/steering/test_steering_fluency.py`` and ``runs/score_probe`` (see the README's
steering section).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from interp.evals.steering.interventions import active_interventions
from interp.models import LoadedModel
from interp.models.prompts import batches, encode_prompts, forward, left_pad, pad_id

_UNIT = re.compile(r"\w+|[^\w\s]")
DISTINCT_FLOOR = 0.9  # d2 at or above which the repetition factor is 1 (ordinary prose: >= 0.95)
MIN_WORDS = 8  # distinct words at or above which the content factor is 1


def text_units(text: str) -> list[str]:
    """Words (runs of word characters) and every other non-space character as its own unit."""
    return _UNIT.findall(text)


def distinct_ngrams(text: str | Sequence, n: int = 2) -> float:
    """Fraction of distinct n-grams of ``text_units(text)`` (or of a given sequence of units, e.g.
    token ids); 1.0 when there are fewer than n units."""
    units = text_units(text) if isinstance(text, str) else list(text)
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def distinct_words(text: str) -> int:
    """How many different words (units holding a letter, case-folded) the text has."""
    return len({u.casefold() for u in text_units(text) if any(c.isalpha() for c in u)})


def content_factor(texts: Sequence[str], min_words: int = MIN_WORDS) -> np.ndarray:
    """``min(1, distinct_words / min_words)`` per text: 0 for empty or word-less text."""
    return np.array([min(1.0, distinct_words(t) / min_words) for t in texts], dtype=float)


def repetition_factor(texts: Sequence[str], tokenizer: Any = None, floor: float = DISTINCT_FLOOR) -> np.ndarray:
    """``min(1, d2 / floor)`` per text, d2 the fraction of distinct 2-grams of its units, or the
    smaller of that and the same over ``tokenizer``'s tokens when one is given."""
    d2 = np.array([distinct_ngrams(t) for t in texts], dtype=float)
    if tokenizer is not None and len(texts):
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        d2 = np.minimum(d2, [distinct_ngrams(i) for i in ids])
    return np.minimum(1.0, d2 / floor)


@torch.no_grad()
def continuation_nll(
    model: LoadedModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 16, add_bos: bool = True
) -> np.ndarray:
    """Mean per-token NLL of each continuation given its prompt under the model as it is (call it
    outside ``steer``); NaN for an empty continuation. An empty prompt scores the text after BOS."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if active_interventions(model):
        raise RuntimeError("fluency must be measured under the unsteered model: call it outside steer()")
    heads = encode_prompts(model, prompts, add_bos)
    tails = model.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
    out = np.full(len(prompts), np.nan)
    for part in batches(len(heads), batch_size):
        seqs = [h + list(t) for h, t in zip(heads[part], tails[part])]
        ids, mask = left_pad(seqs, pad_id(model.tokenizer), model.device)
        logp = F.log_softmax(forward(model, ids, mask)[:, :-1].float(), -1)
        tok_lp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        width = ids.shape[1]
        for r, t in enumerate(tails[part]):
            if len(t):
                out[part.start + r] = -tok_lp[r, width - 1 - len(t) :].mean().item()
    return out


def reference_nll(model: LoadedModel, texts: Sequence[str] | None = None) -> float:
    """Mean per-token NLL of ordinary human-written ``texts`` (default: the built-in neutral
    sentences) after BOS: the level ``likelihood`` counts as fully fluent."""
    if texts is None:
        from interp.data.concepts import neutral_sentences

        texts = neutral_sentences()
    if not len(texts):
        raise ValueError("give at least one reference text for the fluency score")
    return float(np.nanmean(continuation_nll(model, [""] * len(texts), list(texts))))


def fluency_parts(
    model: LoadedModel, prompts: Sequence[str], texts: Sequence[str], nll_ref: float, min_words: int = MIN_WORDS
) -> dict[str, np.ndarray]:
    """Per text: nll, likelihood, repetition, content and fluency (their product; 0 when empty)."""
    nll = continuation_nll(model, prompts, texts)
    likelihood = np.nan_to_num(np.minimum(1.0, np.exp(nll_ref - nll)), nan=0.0)
    repetition, content = repetition_factor(texts, model.tokenizer), content_factor(texts, min_words)
    return {
        "nll": nll,
        "likelihood": likelihood,
        "repetition": repetition,
        "content": content,
        "fluency": likelihood * repetition * content,
    }
