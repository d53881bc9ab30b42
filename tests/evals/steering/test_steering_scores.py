"""Steering scores against direct computations; the embedding judge on written examples; the LLM
judge's prompt/parse logic through a stub transport (no network)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interp.evals.steering import (
    LLMJudge,
    bootstrap_ci,
    continuation_nll,
    harmonic,
    output_score,
    parse_rating,
    score_generations,
    steer,
)
from interp.evals.steering.fluency import distinct_ngrams, reference_nll
from interp.models.prompts import encode_prompts

SITE = "blocks.1.hook_resid_post"


def test_continuation_nll_matches_direct(tiny_model):
    prompts, conts = ["The river", "Hi", "A cat"], [" flows north.", " there, friend", ""]
    got = continuation_nll(tiny_model, prompts, conts)
    for p, c, g in zip(prompts, conts, got):
        if not c:
            assert math.isnan(g)
            continue
        head = encode_prompts(tiny_model, [p])[0]
        tail = tiny_model.tokenizer(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = F.log_softmax(tiny_model.hf_model(ids).logits[0], -1)
        direct = -np.mean([logp[len(head) + i - 1, t].item() for i, t in enumerate(tail)])
        assert g == pytest.approx(direct, abs=1e-4)
    with pytest.raises(RuntimeError, match="outside steer"):
        with steer(tiny_model, torch.randn(tiny_model.d_model), SITE, 1.0):
            continuation_nll(tiny_model, prompts, conts)


def test_output_score_matches_direct(tiny_model):
    v = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(0))
    prompts, toks = ["The river", "Hi there"], [70, 71, 72]
    got = output_score(tiny_model, v, SITE, 4.0, prompts, toks)
    diffs = []
    for p in prompts:
        ids = torch.tensor([encode_prompts(tiny_model, [p])[0]])
        with torch.no_grad():
            base = F.softmax(tiny_model.hf_model(ids).logits[0, -1], -1)[toks].sum()
            with steer(tiny_model, v, SITE, 4.0):
                st = F.softmax(tiny_model.hf_model(ids).logits[0, -1], -1)[toks].sum()
        diffs.append((st - base).item())
    assert got == pytest.approx(np.mean(diffs), abs=1e-6)


def test_harmonic_and_bootstrap():
    np.testing.assert_allclose(harmonic([1, 0.5, 0, 1], [1, 1, 1, 0]), [1, 2 / 3, 0, 0])
    groups = [[0.1, 0.2, 0.3], [0.5], [0.9, 0.7]]
    mean, lo, hi = bootstrap_ci(groups, n_boot=500, seed=4)
    assert mean == pytest.approx(np.mean([0.2, 0.5, 0.8]))
    # the same two-level resampling, written as a loop over the same random draws
    rng = np.random.default_rng(4)
    sizes = np.array([3, 1, 2])
    pick = rng.integers(0, 3, size=(500, 3))
    u = rng.random((500, 3, 3))
    boot = [
        np.mean(
            [np.mean([groups[g][int(u[b, j, c] * sizes[g])] for c in range(sizes[g])]) for j, g in enumerate(pick[b])]
        )
        for b in range(500)
    ]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert bootstrap_ci([[0.4, 0.4], [0.4]])[1:] == pytest.approx((0.4, 0.4))


def test_score_generations_matches_formulas(tiny_model, keyword_judge):
    judge = keyword_judge(("cat", "dog", "stock"))
    prompts = ["I think that", "I think that", "I think that"]
    gens, base = [" the cat and the cat", " stock stock stock stock", "---"], [" it rained", " we left"]
    concept = ["cat", "a cat sat"]
    s = score_generations(tiny_model, prompts, gens, concept, base, judge=judge, min_words=2)
    b_sim = judge.similarity(base, concept).mean()
    ceil = judge.similarity(concept, concept).mean()
    sim = judge.similarity(gens, concept)
    content = np.array([1.0, 0.5, 0.0])  # distinct words {the, cat, and}, {stock}, none; min_words 2
    np.testing.assert_allclose(s.concept, np.clip((sim - b_sim) / (ceil - b_sim), 0, 1) * content)
    ref = reference_nll(tiny_model)
    assert s.baseline["nll"] == pytest.approx(ref)
    nll = continuation_nll(tiny_model, prompts, gens)
    ids = tiny_model.tokenizer(gens, add_special_tokens=False)["input_ids"]
    d2 = np.minimum([3 / 4, 1 / 3, 1 / 2], [distinct_ngrams(i) for i in ids])  # units: words, each "-"
    np.testing.assert_allclose(s.fluency, np.minimum(1, np.exp(ref - nll)) * np.minimum(1, d2 / 0.9) * content)
    np.testing.assert_allclose(s.combined, harmonic(s.concept, s.fluency))
    np.testing.assert_array_equal(s.success, (s.concept >= 0.5) & (s.fluency >= 0.5))
    assert s.concept[0] > 0 and s.concept[1] == 0 and s.combined[1] == 0 and s.fluency[2] == 0


@pytest.mark.slow
def test_embedding_judge_ranks_on_concept_first():
    from interp.evals.steering import embedding_judge

    judge = embedding_judge()
    cases = [
        (
            ["cooking and recipes"],
            "Stir the onions in butter, then add garlic and simmer the sauce.",
            "The committee will vote on the new tax bill next Tuesday.",
        ),
        (
            ["the ocean and the sea"],
            "Waves crashed against the reef as the tide came in over the sand.",
            "She compiled the program and fixed three segmentation faults.",
        ),
        (
            ["sadness and grief"],
            "He wept quietly at the funeral, unable to bear the loss.",
            "The recipe needs two cups of flour and a pinch of salt.",
        ),
    ]
    for concept, on, off in cases:
        sim = judge.similarity([on, off], concept)
        assert sim[0] > sim[1] + 0.1, (concept, sim)


def test_llm_judge_prompt_and_parse_with_stub_transport():
    sent = []
    replies = iter(
        [
            "The concept is clearly present. Rating: [[2]]",
            "I cannot say.",  # concepts
            "Mostly fluent. Rating: [[1]]",
            "Rating: [[2]]",
        ]
    )  # then fluency

    def transport(url, payload, headers):
        sent.append((url, payload, headers))
        return {"choices": [{"message": {"content": next(replies)}}]}

    judge = LLMJudge("http://judge.local/v1/", "tiny-judge", api_key="k", transport=transport)
    out = judge.score(["cats purr", "meow"], "cats")
    assert sent[0][0] == "http://judge.local/v1/chat/completions"
    assert sent[0][2] == {"Authorization": "Bearer k"}
    assert sent[0][1]["model"] == "tiny-judge" and sent[0][1]["temperature"] == 0.0
    assert (
        "cats purr" in sent[0][1]["messages"][0]["content"]
        and "[Concept Start]\ncats" in sent[0][1]["messages"][0]["content"]
    )
    np.testing.assert_array_equal(out["concept"], [2, np.nan])
    np.testing.assert_array_equal(out["fluency"], [1, 2])
    assert out["combined"][0] == pytest.approx(4 / 3) and np.isnan(out["combined"][1]) and out["unparsed"] == 1
    assert parse_rating("Rating: [[0]] ... final Rating: [[ 1.5 ]]") == 1.5
    assert parse_rating("Rating: [[7]]") is None and parse_rating("") is None
    with pytest.raises(ValueError, match="unexpected reply"):
        LLMJudge("http://x/v1", "m", transport=lambda *a: {"error": "nope"}).concept("t", "c")
