"""ActivationStore (live model stream), stream() dispatch and norm_scale."""

import itertools
import math

import numpy as np
import pytest
import torch

from interp.activations import ActivationCache, ActivationStore, norm_scale, stream

SITE = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def cached_flat(clean_cache):
    return ActivationCache(clean_cache).activations(SITE).reshape(-1, 64).clone()


@pytest.fixture(scope="module")
def store(tiny_model, _tiny_corpus_file):
    # small buffers so that several model buffers are mixed and carried over
    return ActivationStore(
        tiny_model, str(_tiny_corpus_file), SITE, n_tokens=2000, seq_len=32, model_batch=8, buffer_tokens=512
    )


def _sorted_rows(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[np.lexsort(a.T[::-1])]


def _match_rows(got: torch.Tensor, ref: torch.Tensor, atol: float = 1e-5) -> None:
    """``got`` holds the same multiset of rows as ``ref`` (up to float tolerance).

    Every row of ``got`` has a row of ``ref`` within ``atol``, and vice versa, and the row sums
    agree; plus an exact comparison of the sorted rows when the values are bit-identical.
    """
    assert got.shape == ref.shape
    dist = torch.cdist(got.double(), ref.double())
    assert dist.min(1).values.max() < atol and dist.min(0).values.max() < atol
    torch.testing.assert_close(got.double().sum(0), ref.double().sum(0), atol=1e-3, rtol=1e-6)
    np.testing.assert_allclose(_sorted_rows(got), _sorted_rows(ref), atol=atol, rtol=0)


def test_store_rows_are_the_cached_activations(store, cached_flat):
    assert store.d_in == 64
    batches = list(store.batches(100, seed=0))
    assert all(b.shape == (100, 64) for b in batches[:-1]) and batches[-1].shape == (16, 64)
    _match_rows(torch.cat(batches), cached_flat)


def test_store_is_shuffled_and_seeded(store, cached_flat):
    a = torch.cat(list(store.batches(256, seed=1)))
    b = torch.cat(list(store.batches(256, seed=1)))
    c = torch.cat(list(store.batches(256, seed=2)))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a, cached_flat)


def test_store_skip_yields_the_tail(store):
    full = list(store.batches(200, seed=4))
    tail = list(store.batches(200, seed=4, skip=3))
    assert len(tail) == len(full) - 3
    assert all(torch.equal(x, y) for x, y in zip(tail, full[3:]))


def test_store_exclude_special(tiny_model, tiny_corpus, clean_cache, cached_flat):
    s = ActivationStore(tiny_model, tiny_corpus, SITE, n_tokens=2000, seq_len=32, exclude_special=True)
    got = torch.cat(list(s.batches(128)))
    keep = np.asarray(ActivationCache(clean_cache).token_array("char_start")).reshape(-1) != -1
    _match_rows(got, cached_flat[torch.from_numpy(keep)])


def test_store_endless_epochs(store):
    got = list(itertools.islice(store.batches(500, epochs=None), 9))  # 2016 tokens per epoch
    assert [len(b) for b in got] == [500] * 9


def test_store_mlp_site_width(tiny_model, tiny_corpus):
    s = ActivationStore(tiny_model, tiny_corpus, "blocks.1.mlp.hook_post", n_tokens=256, seq_len=32)
    assert s.d_in == 128
    assert next(s.batches(64)).shape == (64, 128)


def test_store_unknown_site(tiny_model, tiny_corpus):
    with pytest.raises(ValueError, match="Closest valid sites"):
        ActivationStore(tiny_model, tiny_corpus, "blocks.0.hook_resid_pots", n_tokens=256)


# -- norm_scale ------------------------------------------------------------------------------------


def test_norm_scale_hand_computation(store, cached_flat):
    want = math.sqrt(64 / cached_flat.double().pow(2).sum(1).mean().item())
    got = norm_scale(store.batches(256, seed=0), n_tokens=10**9)
    assert got == pytest.approx(want, rel=1e-6)
    # after scaling, the mean squared norm is D
    assert (cached_flat.double() * got).pow(2).sum(1).mean().item() == pytest.approx(64, rel=1e-6)


def test_norm_scale_uses_about_n_tokens():
    """It stops after the batch that reaches n_tokens: later batches do not count."""
    batches = [torch.ones(10, 4), torch.ones(10, 4), torch.full((10, 4), 100.0)]
    assert norm_scale(iter(batches), n_tokens=20) == pytest.approx(1.0)
    mean_sq = (20 * 4 + 10 * 4 * 100**2) / 30
    assert norm_scale(iter(batches), n_tokens=25) == pytest.approx(math.sqrt(4 / mean_sq))


@pytest.mark.parametrize(
    "batches", [[], [torch.zeros(4, 3)], [torch.full((4, 3), float("nan"))], [torch.full((2, 3), float("inf"))]]
)
def test_norm_scale_rejects_empty_zero_or_non_finite(batches):
    with pytest.raises(ValueError, match="normalisation"):
        norm_scale(iter(batches))


# -- stream() dispatch -----------------------------------------------------------------------------


def test_stream_from_cache_path_and_object(clean_cache):
    cache = ActivationCache(clean_cache)
    a = list(stream(str(clean_cache), 100, site=SITE, epochs=1, seed=3))
    b = list(stream(cache, 100, site=SITE, epochs=1, seed=3))
    c = list(cache.batches(SITE, 100, seed=3))
    assert len(a) == len(b) == len(c) == 21
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c))


def test_stream_multi_site_cache_needs_site(clean_cache):
    with pytest.raises(ValueError, match="site"):
        stream(ActivationCache(clean_cache), 10)


def test_stream_from_tensor_covers_rows_and_is_endless():
    x = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    got = list(itertools.islice(stream(x, 4, seed=0), 10))  # epochs=None: endless
    assert all(b.shape == (4, 3) for b in got)
    first_epoch = torch.cat(got)[:10]
    assert sorted(first_epoch[:, 0].tolist()) == x[:, 0].tolist()
    skipped = list(itertools.islice(stream(x, 4, seed=0, skip=3), 7))
    assert all(torch.equal(a, b) for a, b in zip(skipped, got[3:]))


def test_stream_from_iterable_and_bad_type():
    data = [torch.full((2, 3), float(i)) for i in range(5)]
    assert [b[0, 0].item() for b in stream(data, 2, skip=2)] == [2.0, 3.0, 4.0]
    with pytest.raises(TypeError, match="cannot train on"):
        stream(3.5, 2)
