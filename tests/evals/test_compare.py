"""Model comparison: alignment of two tokenizations on shared character boundaries, and the whole
pipeline on the tiny model compared with itself."""

import numpy as np
import pytest

from interp.activations import ActivationCache, cache_activations
from interp.evals.compare import aligned_rows, compare_models


def test_aligned_rows_pairs_tokens_ending_at_the_same_character():
    # doc 0 "hello world": A = <bos> hel|lo| world, B = <bos> hello| wor|ld; B splits 'o' of doc 1 in two
    a = np.array([[0, -1, -1, -1], [0, 0, 0, 3], [0, 1, 3, 5], [0, 2, 5, 11], [1, 0, 0, 1]])
    b = np.array([[0, -1, -1, -1], [0, 0, 0, 5], [0, 1, 5, 9], [0, 2, 9, 11], [1, 0, 0, 1], [1, 1, 0, 1]])
    ra, rb = aligned_rows(a, b)
    assert ra.tolist() == [2, 3, 4] and rb.tolist() == [1, 3, 5]  # ends 5, 11 of doc 0; doc 1: last piece


@pytest.fixture(scope="module")
def tiny_cache(tiny_model, _tiny_corpus_file, tmp_path_factory):
    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    path = cache_activations(
        tiny_model,
        str(_tiny_corpus_file),
        sites,
        1024,
        tmp_path_factory.mktemp("cmp") / "c",
        seq_len=32,
        progress=False,
    )
    return ActivationCache(path), sites


def test_a_model_compared_with_itself(tiny_cache):
    cache, sites = tiny_cache
    r = compare_models(
        cache,
        cache,
        sites,
        sites,
        {"k": 8, "cos_threshold": 0.8, "batch_size": 256, "device": "cpu"},
        n_baseline=256,
        progress=False,
    )
    special = cache.special_mask().sum()
    assert r["aligned_tokens"] == cache.n_tokens - special
    jac = np.array(r["matrices"]["jaccard"]["ab"])
    np.testing.assert_allclose(jac, r["matrices"]["jaccard"]["aa"])
    np.testing.assert_allclose(np.diag(jac), 1)
    assert 0 < jac[0, 1] < 1
    assert r["model_similarity"]["a_vs_b"] == 1
    assert r["boundary_overlap"]["jaccard"] == 1 and r["model_similarity"]["ceiling"] == 1
    np.testing.assert_allclose(r["jaccard_ceiling"]["ab"], 1)  # dictionaries built on aligned rows only
    np.testing.assert_allclose(r["jaccard_ceiling"]["ab_normalised"], jac)
    for metric in ("jaccard", "cka", "svcca", "relative"):
        np.testing.assert_allclose(np.diag(r["matrices"][metric]["ab"]), 1, rtol=1e-4)
        assert r["matching"][metric]["a_to_b"]["best"] == [0, 1]
        assert r["matching"][metric]["a_to_b"]["score"] == 1
