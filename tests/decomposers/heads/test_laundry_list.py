"""Laundry List generator: structure, determinism, spans, errors; evaluator on the tiny model."""

import numpy as np
import pytest
import torch

from interp.decomposers.heads.laundry_prompts import POOL, make_prompts


@pytest.mark.parametrize("n", [3, 7, 20])
def test_prompts_have_the_task_structure(n):
    ps = make_prompts(n, 30, seed=1)
    assert len(ps) == 30 and ps == make_prompts(n, 30, seed=1) and ps != make_prompts(n, 30, seed=2)
    for p in ps:
        assert p.n_objects == n and len(set(p.objects)) == n and set(p.objects) <= set(POOL)
        assert p.target == " " + p.objects[p.missing_index]
        assert sorted(p.second_order) == sorted(o for i, o in enumerate(p.objects) if i != p.missing_index)
        assert [p.text[a:b] for a, b in p.spans_first] == list(p.objects)
        assert [p.text[a:b] for a, b in p.spans_second] == list(p.second_order)
        assert p.text.endswith("the") and p.spans_second[0][0] > p.spans_first[-1][1]
    positions = {p.missing_index for p in make_prompts(n, 200, seed=0)}
    assert positions == set(range(n))  # every position gets tested


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_objects"):
        make_prompts(23, 5)
    with pytest.raises(ValueError, match="n_prompts"):
        make_prompts(3, 0)


def test_evaluate_on_tiny_model(tiny_model):
    from interp.decomposers.heads.laundry_list import encode, evaluate

    ps = make_prompts(3, 6, seed=0) + make_prompts(5, 6, seed=0)
    res = evaluate(tiny_model, ps, heads=((1, 0), (0, 3)), batch_size=4, progress=False)
    assert res.attn_first.shape == (12, 2, 5) and np.isnan(res.attn_first[:6, :, 3:]).all()
    assert np.all(res.attn_first[~np.isnan(res.attn_first)] >= 0)
    for i, p in enumerate(ps):  # the missing object has no second-list occurrence
        assert np.isnan(res.attn_second[i, :, p.missing_index]).all()
    assert set(res.accuracy()) == {3, 5} and len(res.accuracy("position")) <= 8
    # independent check of the candidate metric on one prompt
    e = encode(tiny_model.tokenizer, ps[7:8])[0]
    with torch.no_grad():
        logits = tiny_model.bridge(torch.tensor([e["ids"]]))[0, -1]
    others = [t for t in e["cand"] if t != e["target"]]
    expect = len(others) == len(e["cand"]) - 1 and logits[e["target"]] > logits[others].max()
    assert res.correct_cand[7] == bool(expect)
    assert res.correct_full[7] == (int(logits.argmax()) == e["target"])
