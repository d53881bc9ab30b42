"""Streaming batches out of a cache, and the batch-order plan (interp.activations.order)."""

import itertools

import numpy as np
import pytest
import torch

from interp.activations import ActivationCache
from interp.activations.order import batch_indices

SITE = "blocks.0.hook_resid_post"


def _sorted_rows(a) -> np.ndarray:
    a = np.asarray(a)
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def cache(clean_cache):
    return ActivationCache(clean_cache)


@pytest.fixture(scope="module")
def flat(cache):
    return cache.activations(SITE).reshape(-1, 64).clone()


# -- ActivationCache.batches ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [100, 64, 2016, 5000])
def test_every_token_exactly_once_per_epoch(cache, flat, batch_size):
    batches = list(cache.batches(SITE, batch_size, shuffle=True, seed=1))
    assert all(b.shape == (min(batch_size, 2016), 64) for b in batches[:-1])
    got = torch.cat(batches)
    assert got.shape == flat.shape
    np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(flat))


def test_shuffled_order_differs_from_file_order(cache, flat):
    got = torch.cat(list(cache.batches(SITE, 64, shuffle=True, seed=0)))
    assert not torch.equal(got, flat)
    first = next(cache.batches(SITE, 64, shuffle=True, seed=0))
    assert not torch.equal(first, flat[:64])


def test_unshuffled_is_file_order(cache, flat):
    got = torch.cat(list(cache.batches(SITE, 100, shuffle=False)))
    assert torch.equal(got, flat)


def test_same_seed_same_stream_different_seed_different(cache):
    a = list(cache.batches(SITE, 128, seed=7))
    b = list(cache.batches(SITE, 128, seed=7))
    c = list(cache.batches(SITE, 128, seed=8))
    assert len(a) == len(b) == len(c)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("skip", [0, 1, 5, 15, 16, 40])
def test_skip_yields_the_tail(cache, skip):
    full = list(cache.batches(SITE, 128, seed=3))  # 2016 / 128 -> 15 full batches + 1 partial
    assert len(full) == 16
    tail = list(cache.batches(SITE, 128, seed=3, skip=skip))
    assert len(tail) == len(full[skip:])
    assert all(torch.equal(x, y) for x, y in zip(tail, full[skip:]))


def test_skip_with_endless_epochs(cache):
    full = list(itertools.islice(cache.batches(SITE, 100, seed=2, epochs=None), 50))
    tail = list(itertools.islice(cache.batches(SITE, 100, seed=2, epochs=None, skip=30), 20))
    assert all(torch.equal(x, y) for x, y in zip(tail, full[30:]))


def test_exclude_special_drops_exactly_bos_and_separators(cache, flat):
    char_start = np.asarray(cache.token_array("char_start")).reshape(-1)
    n_special = int((char_start == -1).sum())
    assert n_special >= 63  # at least one BOS per row
    got = torch.cat(list(cache.batches(SITE, 100, seed=0, exclude_special=True)))
    assert len(got) == flat.shape[0] - n_special
    np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(flat[torch.from_numpy(char_start != -1)]))


def test_two_epochs_each_token_twice_in_new_order(cache, flat):
    batches = list(cache.batches(SITE, 256, seed=0, epochs=2))
    got = torch.cat(batches)
    assert len(got) == 2 * len(flat)
    np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(torch.cat([flat, flat])))
    assert not torch.equal(got[: len(flat)], got[len(flat) :])
    # batches straddle the epoch boundary: only the very last one may be short
    assert all(len(b) == 256 for b in batches[:-1])


def test_drop_last(cache):
    sizes = [len(b) for b in cache.batches(SITE, 500, seed=0, drop_last=True)]
    assert sizes == [500] * 4
    sizes = [len(b) for b in cache.batches(SITE, 500, seed=0)]
    assert sizes == [500] * 4 + [16]


def test_dtype_and_width(clean_cache):
    cache = ActivationCache(clean_cache)
    b = next(cache.batches("blocks.1.mlp.hook_post", 32, dtype=torch.float64))
    assert b.shape == (32, 128) and b.dtype == torch.float64


def test_unknown_site_in_batches(cache):
    with pytest.raises(ValueError, match="not in the cache"):
        next(cache.batches("blocks.1.hook_resid_post", 32))


# -- batch_indices -------------------------------------------------------------------------------


def _all(gen):
    return [np.asarray(b) for b in gen]


def test_batch_indices_cover_every_kept_token_once():
    rng = np.random.default_rng(0)
    keep = rng.random((10, 7)) > 0.3
    batches = _all(batch_indices(keep, 4, shuffle=True, seed=5, buffer_tokens=14))
    flat = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(flat), np.flatnonzero(keep.reshape(-1)))
    assert all(len(b) == 4 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 4


def test_batch_indices_carry_across_buffers():
    """Buffers of 2 sequences (6 tokens) and batches of 4: batches straddle buffers."""
    keep = np.ones((5, 3), dtype=bool)
    batches = _all(batch_indices(keep, 4, shuffle=True, seed=1, buffer_tokens=6))
    assert [len(b) for b in batches] == [4, 4, 4, 3]
    flat = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(flat), np.arange(15))
    # locality: the first 6 tokens streamed come from the first buffer's 2 sequences, etc.
    seqs = flat // 3
    for start in range(0, 15, 6):
        assert len(set(seqs[start : start + 6].tolist())) <= 2
    # the 2nd batch holds the last 2 tokens of buffer 1 and the first 2 of buffer 2
    assert set(batches[1][:2] // 3).isdisjoint(set(batches[1][2:] // 3))


def test_batch_indices_unshuffled_is_arange():
    keep = np.ones((4, 5), dtype=bool)
    flat = np.concatenate(_all(batch_indices(keep, 6, shuffle=False, buffer_tokens=10)))
    np.testing.assert_array_equal(flat, np.arange(20))


def test_batch_indices_drop_last_and_carry_across_epochs():
    keep = np.ones((3, 3), dtype=bool)  # 9 tokens
    batches = _all(batch_indices(keep, 4, seed=0, epochs=2))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 2]  # 18 tokens, carried across the epoch
    counts = np.bincount(np.concatenate(batches), minlength=9)
    assert (counts == 2).all()
    dropped = _all(batch_indices(keep, 4, seed=0, epochs=2, drop_last=True))
    assert [len(b) for b in dropped] == [4, 4, 4, 4]
    assert all(np.array_equal(a, b) for a, b in zip(dropped, batches))


def test_batch_indices_deterministic_and_seeded():
    keep = np.ones((20, 4), dtype=bool)
    a = _all(batch_indices(keep, 8, seed=3))
    b = _all(batch_indices(keep, 8, seed=3))
    c = _all(batch_indices(keep, 8, seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_batch_indices_endless_and_skip():
    keep = np.ones((3, 2), dtype=bool)
    gen = batch_indices(keep, 4, seed=0, epochs=None)
    first = [next(gen) for _ in range(10)]
    skipped = batch_indices(keep, 4, seed=0, epochs=None, skip=6)
    assert all(np.array_equal(next(skipped), x) for x in first[6:])
    assert _all(batch_indices(keep, 4, seed=0, epochs=1, skip=100)) == []


def test_batch_indices_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        next(batch_indices(np.ones((2, 2), bool), 0))
    with pytest.raises(ValueError, match="no tokens"):
        next(batch_indices(np.zeros((2, 2), bool), 2))
