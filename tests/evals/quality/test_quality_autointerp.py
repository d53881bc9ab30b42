"""Autointerp: detection and fuzzing scores of a feature whose explanation is known, with the
offline embedding reader (a keyword judge, and the real MiniLM), an endpoint reader through a fake
transport, and example collection."""

import numpy as np
import pytest

from interp.data.concepts import load_concepts, neutral_sentences
from interp.errors import DataError
from interp.evals.quality import autointerp as ai

VOCAB = [" the", " ocean", " sea", " tax", " law", " court", " paper", " red", " walk", " city", " of", " and"]


class _Tok:
    def decode(self, ids):
        return "".join(VOCAB[i] for i in ids)


class _Fixed:
    def __init__(self, text):
        self.text, self.name = text, "fixed-test-explainer"

    def explain(self, examples):
        return self.text


def _ocean_feature(n_seq=60, seq=24, seed=0):
    """Token ids and a feature that fires (0.5..2) exactly on ' ocean' / ' sea', in half the sequences."""
    rng = np.random.default_rng(seed)
    tokens = rng.choice(np.arange(3, len(VOCAB)), size=(n_seq, seq))
    for s in range(0, n_seq, 2):
        tokens[s, rng.choice(seq, 2, replace=False)] = rng.choice([1, 2], 2)
    acts = np.isin(tokens, [1, 2]) * rng.uniform(0.5, 2.0, size=tokens.shape)
    return tokens, acts[..., None]


def test_known_explanation_scores_high_and_wrong_one_low(keyword_judge):
    tokens, acts = _ocean_feature()
    scorer = ai.EmbeddingScorer(keyword_judge(("ocean", "sea")))
    right = ai.interpret(tokens, acts, [7], _Tok(), _Fixed("the ocean or the sea"), scorer)[0]
    wrong = ai.interpret(tokens, acts, [7], _Tok(), _Fixed("tax court"), scorer)[0]
    assert right["feature"] == 7 and right["explanation"] == "the ocean or the sea"
    assert right["detection"] == 1.0 and right["fuzzing"] == 1.0
    assert wrong["detection"] < 0.5 and wrong["fuzzing"] < 0.5
    assert right["scorer"] == ai.OFFLINE_SCORER and right["n_negative"] > 0
    assert all("<<" in t for t in right["top_examples"])


def test_llm_reader_through_a_fake_endpoint():
    def transport(url, payload, headers):
        prompt = payload["messages"][0]["content"]
        if "what do the marked tokens have in common" in prompt:
            reply = "Explanation: words about the ocean"
        else:
            text = prompt.split("Text: ", 1)[1]
            marked = [seg.split(">>")[0] for seg in text.split("<<")[1:]]
            hit = any(w in m for m in marked for w in ("ocean", "sea")) if marked else "ocean" in text or "sea" in text
            reply = "1" if hit else "0"
        return {"choices": [{"message": {"content": reply}}]}

    tokens, acts = _ocean_feature()
    reader = ai.LLMReader("http://endpoint.invalid/v1", "judge-model", transport=transport)
    row = ai.interpret(tokens, acts, [3], _Tok(), reader, reader)[0]
    assert row["explanation"] == "words about the ocean"
    assert row["detection"] == 1.0 and row["fuzzing"] == 1.0
    assert row["explainer"] == row["scorer"] == "llm: judge-model at http://endpoint.invalid/v1"


def test_examples_top_quantile_negative():
    tokens, acts = _ocean_feature()
    ex = ai.collect_examples([[VOCAB[t] for t in row] for row in tokens], acts[..., 0], n_top=5, n_negative=7)
    peaks = [max(e.acts) for e in ex.top]
    assert peaks == sorted(peaks, reverse=True) and peaks[0] == acts.max()
    assert len(ex.negative) == 7 and all(max(e.acts) == 0 for e in ex.negative)
    assert all(max(e.acts) > 0 for e in ex.quantile)
    with pytest.raises(DataError):
        ai.collect_examples([["x"] * 4] * 3, np.zeros((3, 4)))


def test_auroc():
    assert ai.auroc(np.array([2.0, 3.0]), np.array([1.0, 0.0])) == 1.0
    assert ai.auroc(np.array([1.0]), np.array([1.0])) == 0.5


def test_local_explainer_runs(tiny_model):
    tokens, acts = _ocean_feature(n_seq=10)
    ex = ai.collect_examples([[VOCAB[t] for t in row] for row in tokens], acts[..., 0])
    out = ai.LocalExplainer(tiny_model, max_new_tokens=4).explain(ex)
    assert isinstance(out, str) and out and "\n" not in out


@pytest.mark.slow
def test_offline_minilm_detection_on_concept_sentences():
    """Real sentence embeddings: ocean sentences vs neutral ones, right and wrong explanations."""
    scorer = ai.EmbeddingScorer()
    ocean = list(load_concepts(["ocean"])[0].sentences)
    neutral = neutral_sentences()
    right = ai.auroc(
        scorer.detection("the sea, waves and the ocean", ocean),
        scorer.detection("the sea, waves and the ocean", neutral),
    )
    wrong = ai.auroc(
        scorer.detection("tax forms and accounting", ocean), scorer.detection("tax forms and accounting", neutral)
    )
    assert right > 0.95 and wrong < 0.7
