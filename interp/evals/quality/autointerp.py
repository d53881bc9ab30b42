"""Automatic interpretability: explain a feature from its contexts, then score the explanation.

Follows Delphi (Paulo et al. 2024, "Automatically Interpreting Millions of Features in LLMs"):
the explainer sees top-activating contexts and contexts sampled across activation quantiles, with
the activating tokens marked ``<<like this>>``; the explanation is scored by
- detection: can a reader tell activating contexts (from every quantile) from non-activating ones
  given the explanation;
- fuzzing: can a reader tell contexts whose marked tokens are the activating ones from the same
  contexts with the same number of other tokens marked.
Each score is the AUROC of the reader's scores (0.5: chance).

Explainer and scorer are pluggable. With ``base_url`` + ``model`` (any OpenAI-compatible endpoint)
both are that LLM, with Delphi-style prompts. Offline (default) the explainer is the built-in
instruct model and the scorer is the sentence-embedding model (all-MiniLM-L6-v2): a context's score
is its cosine similarity with the explanation (fuzzing: the marked tokens' similarity). Every
output names its explainer and scorer; the offline scorer is labelled ``OFFLINE_SCORER``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int

from interp.errors import DataError

OFFLINE_SCORER = "offline: all-MiniLM-L6-v2 embedding similarity (not an LLM reader)"
EXPLAIN_PROMPT = (
    "You are looking at text where one hidden feature of a language model fires. "
    "The tokens where it fires are marked <<like this>>. Examples:\n{examples}\n"
    "In one short phrase, what do the marked tokens have in common?"
)
DETECT_PROMPT = (
    "A feature of a language model is described as: {explanation}\n"
    "Does the feature fire somewhere in this text? Answer 1 for yes or 0 for no, nothing else.\n"
    "Text: {text}"
)
FUZZ_PROMPT = (
    "A feature of a language model is described as: {explanation}\n"
    "In the text below, some tokens are marked <<like this>>. Are the marked tokens ones where "
    "this feature fires? Answer 1 for yes or 0 for no, nothing else.\nText: {text}"
)


@dataclass(frozen=True)
class Example:
    """A context window: its tokens (text pieces) and the feature's activation on each."""

    tokens: tuple[str, ...]
    acts: tuple[float, ...]

    def text(self, marked: Sequence[int] | None = None) -> str:
        """The window as text; tokens in ``marked`` (default: the active ones) wrapped in << >>."""
        marked = set(np.flatnonzero(np.asarray(self.acts) > 0) if marked is None else marked)
        return "".join(f"<<{t}>>" if i in marked else t for i, t in enumerate(self.tokens))

    @property
    def plain(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True)
class FeatureExamples:
    """The examples of one feature: top, per-quantile activating, and non-activating."""

    top: tuple[Example, ...]
    quantile: tuple[Example, ...]
    negative: tuple[Example, ...]


def _window(pieces: list[list[str]], acts: np.ndarray, s: int, p: int, half: int) -> Example:
    a, b = max(0, p - half), min(acts.shape[1], p + half + 1)
    return Example(tuple(pieces[s][a:b]), tuple(float(v) for v in acts[s, a:b]))


def collect_examples(
    pieces: list[list[str]],
    acts: Float[np.ndarray, "B S"],
    n_top: int = 10,
    n_quantiles: int = 5,
    per_quantile: int = 4,
    n_negative: int = 20,
    half_window: int = 12,
    seed: int = 0,
) -> FeatureExamples:
    """Examples of one feature from per-token activations ``acts`` over sequences of text ``pieces``;
    each sequence gives at most one example, centred on its largest activation."""
    rng = np.random.default_rng(seed)
    peak = acts.max(1)
    active = np.flatnonzero(peak > 0)
    if len(active) < 2:
        raise DataError("the feature fires in fewer than 2 sequences: pick a livelier feature")
    by_peak = active[np.argsort(-peak[active], kind="stable")]
    top = [_window(pieces, acts, s, int(acts[s].argmax()), half_window) for s in by_peak[:n_top]]
    quantile = []
    for part in np.array_split(by_peak, n_quantiles):
        for s in rng.choice(part, min(per_quantile, len(part)), replace=False) if len(part) else []:
            quantile.append(_window(pieces, acts, s, int(acts[s].argmax()), half_window))
    silent = np.flatnonzero(peak <= 0)
    negative = [
        _window(pieces, acts, s, int(rng.integers(acts.shape[1])), half_window)
        for s in rng.choice(silent, min(n_negative, len(silent)), replace=False)
    ]
    return FeatureExamples(tuple(top), tuple(quantile), tuple(negative))


class Explainer(Protocol):
    name: str

    def explain(self, examples: FeatureExamples) -> str: ...


class Scorer(Protocol):
    name: str

    def detection(self, explanation: str, texts: Sequence[str]) -> np.ndarray: ...

    def fuzzing(self, explanation: str, marked_texts: Sequence[str], marked_tokens: Sequence[str]) -> np.ndarray: ...


def explain_prompt(examples: FeatureExamples, n: int = 8) -> str:
    shown = (list(examples.top[: n // 2]) + list(examples.quantile))[:n]
    return EXPLAIN_PROMPT.format(examples="\n".join(f"{i + 1}. {e.text()}" for i, e in enumerate(shown)))


class LocalExplainer:
    """Explanations from a local instruct model (``interp.models.load``; greedy, 24 new tokens)."""

    def __init__(self, model: Any, max_new_tokens: int = 24):
        self.model, self.max_new_tokens = model, max_new_tokens
        self.name = f"offline: {model.name} (local instruct model)"

    def explain(self, examples: FeatureExamples) -> str:
        from interp.evals.steering.interventions import generate

        msg = [{"role": "user", "content": explain_prompt(examples)}]
        tok = self.model.tokenizer
        prompt = (
            tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
            if getattr(tok, "chat_template", None)
            else msg[0]["content"] + "\nAnswer:"
        )
        out = generate(self.model, [prompt], max_new_tokens=self.max_new_tokens, temperature=0, add_bos=False)[0]
        return clean_explanation(out)


def clean_explanation(text: str) -> str:
    """The first non-empty line, without quotes or a leading label."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    return re.sub(r"^(explanation|answer)\s*:\s*", "", line.strip().strip('"'), flags=re.I).strip() or "(empty)"


class EmbeddingScorer:
    """The offline reader: cosine similarity between the explanation and each text (fuzzing: the
    marked tokens) under a sentence-embedding judge with ``embed(texts) -> unit rows``."""

    name = OFFLINE_SCORER

    def __init__(self, judge: Any = None):
        if judge is None:
            from interp.evals.steering.scores import embedding_judge

            judge = embedding_judge()
        self.judge = judge

    def detection(self, explanation: str, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros(0)
        return self.judge.embed(list(texts)) @ self.judge.embed([explanation])[0]

    def fuzzing(self, explanation: str, marked_texts: Sequence[str], marked_tokens: Sequence[str]) -> np.ndarray:
        return self.detection(explanation, marked_tokens)


class LLMReader:
    """Explainer and scorer through an OpenAI-compatible chat endpoint (Delphi-style prompts)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, transport: Any = None):
        from interp.evals.steering.judge import LLMJudge

        self.judge = LLMJudge(base_url, model, api_key, transport=transport)
        self.name = f"llm: {model} at {base_url}"

    def explain(self, examples: FeatureExamples) -> str:
        return clean_explanation(self.judge.ask(explain_prompt(examples)))

    def _yes(self, prompt: str) -> float:
        m = re.search(r"[01]", self.judge.ask(prompt))
        return float(m.group()) if m else 0.5

    def detection(self, explanation: str, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._yes(DETECT_PROMPT.format(explanation=explanation, text=t)) for t in texts])

    def fuzzing(self, explanation: str, marked_texts: Sequence[str], marked_tokens: Sequence[str]) -> np.ndarray:
        return np.array([self._yes(FUZZ_PROMPT.format(explanation=explanation, text=t)) for t in marked_texts])


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    diff = np.asarray(pos)[:, None] - np.asarray(neg)[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def score_feature(explanation: str, ex: FeatureExamples, scorer: Scorer, seed: int = 0) -> dict[str, float]:
    """Detection and fuzzing AUROC of ``explanation`` on held-out (quantile / negative) examples."""
    det = auroc(
        scorer.detection(explanation, [e.plain for e in ex.quantile]),
        scorer.detection(explanation, [e.plain for e in ex.negative]),
    )
    rng = np.random.default_rng(seed)
    right, wrong, right_tok, wrong_tok = [], [], [], []
    for e in ex.quantile:
        on = np.flatnonzero(np.asarray(e.acts) > 0)
        off = np.flatnonzero(np.asarray(e.acts) <= 0)
        if not len(on) or len(off) < len(on):
            continue
        fake = rng.choice(off, len(on), replace=False)
        right.append(e.text(on)), wrong.append(e.text(fake))
        right_tok.append(" ".join(e.tokens[i].strip() for i in on))
        wrong_tok.append(" ".join(e.tokens[i].strip() for i in fake))
    fuzz = (
        auroc(scorer.fuzzing(explanation, right, right_tok), scorer.fuzzing(explanation, wrong, wrong_tok))
        if right
        else float("nan")
    )
    return {"detection": det, "fuzzing": fuzz, "n_activating": len(ex.quantile), "n_negative": len(ex.negative)}


def interpret(
    tokens: Int[np.ndarray, "B S"],
    acts: Float[np.ndarray, "B S K"],
    features: Sequence[int],
    tokenizer: Any,
    explainer: Explainer,
    scorer: Scorer,
    seed: int = 0,
    **examples_kw: Any,
) -> list[dict[str, Any]]:
    """One row per feature: its explanation, detection and fuzzing scores, and who made them.
    ``acts[..., j]`` are the activations of feature ``features[j]`` on ``tokens``."""
    pieces = [[tokenizer.decode([int(t)]) for t in row] for row in tokens]
    rows = []
    for j, f in enumerate(features):
        ex = collect_examples(pieces, acts[..., j], seed=seed + j, **examples_kw)
        explanation = explainer.explain(ex)
        rows.append(
            {
                "feature": int(f),
                "explanation": explanation,
                **score_feature(explanation, ex, scorer, seed),
                "explainer": explainer.name,
                "scorer": scorer.name,
                "top_examples": [e.text() for e in ex.top[:5]],
            }
        )
    return rows


def pick_features(acts: torch.Tensor, candidates: Sequence[int], n: int, min_sequences: int = 8) -> list[int]:
    """The first ``n`` of ``candidates`` (columns of ``acts [B, S, K]``) firing in ``min_sequences``
    or more sequences: column positions, in order."""
    fired = (acts > 0).any(1).sum(0)
    return [j for j in range(len(candidates)) if int(fired[j]) >= min_sequences][:n]


def write_rows(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """``out/autointerp.csv`` and ``out/autointerp.parquet`` (each written atomically): one row per
    explained feature, ``artifact`` first (the browser attaches a store's rows by it). Returns the parquet."""
    import pandas as pd

    from interp._io import write_atomic

    out = Path(out)
    df = pd.DataFrame(rows)
    df["top_examples"] = df["top_examples"].map(list)
    write_atomic(out / "autointerp.csv", lambda f: df.to_csv(f, index=False))
    write_atomic(out / "autointerp.parquet", lambda f: df.to_parquet(f), binary=True)
    return out / "autointerp.parquet"
