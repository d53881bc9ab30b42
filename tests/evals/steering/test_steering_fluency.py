"""Fluency and concept scores catch degenerate text: written examples (one token repeated, dashes,
empty continuations, a looping phrase) must score far below ordinary sentences, also when the
unsteered baseline is itself degenerate (the broken-generation case that once scored 0.886)."""

import numpy as np
import pytest

from interp.evals.steering import score_generations
from interp.evals.steering.fluency import (
    content_factor,
    continuation_nll,
    distinct_ngrams,
    distinct_words,
    fluency_parts,
    reference_nll,
    repetition_factor,
    text_units,
)

ORDINARY = [
    " the weather will be nice tomorrow, so we should go for a walk in the park after lunch.",
    " my grandmother's house, which stood at the end of a long dirt road near the river.",
    " it is important to read the instructions carefully before you start building the shelf.",
    " the waves rolled onto the beach while the fishermen pulled their boats above the tide line.",
]
DEGENERATE = [
    "'s-----------------------",
    " the-----------------------------",
    "",
    " the the the the the the the the the the the the the the the the",
    " ocean ocean ocean ocean ocean ocean ocean ocean ocean ocean",
    " I think that I think that I think that I think that I think that",
    "\n\n\n\n\n\n\n\n",
    " ................................",
]
LOOPS = [  # real SmolLM2 continuations of "I think that" steered far past the KL budgets
    "umselfselfselfselfselfselfselfselfselfselfselfselfselfselfselfselfselfselfselfself",
    "ellumellum himselfellumellum himself himselfellum himselfellum himselfellumellumellum",
]
PROMPT = "I think that"


def test_text_units_split_punctuation_runs():
    assert text_units("'s-----") == ["'", "s", "-", "-", "-", "-", "-"]
    assert text_units(" the cat, the cat.") == ["the", "cat", ",", "the", "cat", "."]
    assert distinct_ngrams(" a b a b") == pytest.approx(2 / 3)
    assert distinct_ngrams("") == 1.0 and distinct_ngrams("one") == 1.0
    assert distinct_ngrams([5, 6, 5, 6, 5]) == pytest.approx(2 / 4)
    assert distinct_words(" The the THE cat 42 --") == 2


def test_repetition_and_content_factors_on_written_examples():
    rep, content = repetition_factor(ORDINARY), content_factor(ORDINARY)
    np.testing.assert_array_equal(rep, 1.0)
    np.testing.assert_array_equal(content, 1.0)
    worst = np.minimum(repetition_factor(DEGENERATE), content_factor(DEGENERATE))
    assert (worst <= 0.4).all(), dict(zip(DEGENERATE, worst))


def test_fluency_parts_is_the_product(tiny_model):
    texts = ORDINARY[:2] + DEGENERATE[:3]
    parts = fluency_parts(tiny_model, [PROMPT] * len(texts), texts, nll_ref=5.0)
    nll = continuation_nll(tiny_model, [PROMPT] * len(texts), texts)
    np.testing.assert_allclose(parts["likelihood"], np.nan_to_num(np.minimum(1, np.exp(5.0 - nll)), nan=0.0))
    np.testing.assert_allclose(
        parts["fluency"], parts["likelihood"] * content_factor(texts) * repetition_factor(texts, tiny_model.tokenizer)
    )
    ids = tiny_model.tokenizer(texts, add_special_tokens=False)["input_ids"]
    d2 = np.minimum([distinct_ngrams(t) for t in texts], [distinct_ngrams(i) for i in ids])
    np.testing.assert_allclose(repetition_factor(texts, tiny_model.tokenizer), np.minimum(1, d2 / 0.9))
    assert parts["fluency"][4] == 0  # empty
    ref = reference_nll(tiny_model, ["The river flows north.", "We left at noon."])
    assert ref == pytest.approx(
        np.mean(continuation_nll(tiny_model, ["", ""], ["The river flows north.", "We left at noon."]))
    )


def test_degenerate_text_is_not_on_concept(tiny_model, keyword_judge):
    judge = keyword_judge(("ocean", "wave", "sea"))
    texts = ["-----------", "", " ocean ocean ocean ocean ocean", " the sea and the waves at the ocean shore today"]
    s = score_generations(
        tiny_model, [PROMPT] * 4, texts, ["the ocean and the sea"], [" we went home", " ok"], judge=judge
    )
    assert s.concept[0] == 0 and s.concept[1] == 0
    assert s.concept[2] < s.concept[3] and s.combined[2] < 0.1


@pytest.mark.slow
def test_smollm2_scores_rank_degenerate_far_below_ordinary():
    """The user's path on the built-in model and the real embedding judge; the unsteered baseline is
    the degenerate output broken generation produced, which must not make degenerate text fluent."""
    import interp.models

    model = interp.models.load("smollm2-135m", device="cpu")
    texts = ORDINARY + DEGENERATE + LOOPS
    concept = ["the ocean and the sea", "Waves crashed against the rocks of the coast."]
    broken = ["'s-----------------------", " the-----------------------------"]
    s = score_generations(model, [PROMPT] * len(texts), texts, concept, broken)
    good, bad = s.fluency[: len(ORDINARY)], s.fluency[len(ORDINARY) :]
    assert good.min() >= 0.6, good
    assert bad.max() <= 0.25, dict(zip(DEGENERATE + LOOPS, bad))
    # dashes, empty text, newlines and dots carry no words: never on-concept, even against a broken baseline
    nowords = [i for i, t in enumerate(DEGENERATE) if not distinct_words(t)]
    assert (s.concept[len(ORDINARY) :][nowords] == 0).all()
    assert (s.combined[len(ORDINARY) :] <= 0.25).all()
    assert s.concept[3] >= 0.3  # the ocean sentence is on-concept
