"""Fixtures for the activation tests: a cache builder with fixed small arguments, one clean cache."""

import pytest

SITES = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]
# 2000 tokens at seq_len 32 -> 63 rows; shards of 256 tokens -> 8 rows -> 8 shards (last has 7).
CACHE_ARGS = dict(n_tokens=2000, seq_len=32, batch_size=8, shard_tokens=256, progress=False)


def _run_cache(model, corpus, out, sites=SITES, **over):
    from interp.activations import cache_activations

    return cache_activations(model, corpus, sites, out_dir=out, **{**CACHE_ARGS, **over})


@pytest.fixture(scope="session")
def make_cache(tiny_model):
    """``make_cache(corpus, out, sites=SITES, **overrides)`` caches the tiny model with CACHE_ARGS."""
    return lambda corpus, out, **kw: _run_cache(tiny_model, corpus, out, **kw)


@pytest.fixture(scope="session")
def clean_cache(make_cache, _tiny_corpus_file, tmp_path_factory):
    """An uninterrupted cache of SITES over the tiny corpus (shared: never modify it)."""
    return make_cache(str(_tiny_corpus_file), tmp_path_factory.mktemp("clean") / "cache")
