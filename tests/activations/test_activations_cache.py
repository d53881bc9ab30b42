"""cache_activations + ActivationCache: round trip against a direct model run, manifest, dtypes."""

import json

import numpy as np
import xxhash
import pytest
import torch

import interp
from interp.activations import ActivationCache
from interp.data import load_text, tokenize

SITES = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]


def test_round_trip_equals_direct_run(tiny_model, clean_cache):
    cache = ActivationCache(clean_cache)
    toks = cache.tokens()
    assert toks.shape == (63, 32) and toks.dtype == torch.int64
    with torch.no_grad():
        _, direct = tiny_model.bridge.run_with_cache(toks, names_filter=SITES)
    for site, d in zip(SITES, (64, 128)):
        acts = cache.activations(site)
        assert acts.shape == (63, 32, d) and acts.dtype == torch.float32
        assert cache.width(site) == d
        torch.testing.assert_close(acts, direct[site], atol=1e-5, rtol=0)
        assert acts.abs().sum(-1).min() > 0  # every row was written (no zero-filled gap)


def test_tokens_and_provenance_match_tokenize(tiny_model, tiny_corpus, clean_cache):
    cache = ActivationCache(clean_cache)
    ref = tokenize(load_text(tiny_corpus), tiny_model.tokenizer, 32, 2000)
    for name in ("tokens", "doc_ids", "char_start", "char_end"):
        np.testing.assert_array_equal(np.asarray(cache.token_array(name)), getattr(ref, name))
    assert (cache.tokens()[:, 0] == tiny_model.tokenizer.bos_token_id).all()
    np.testing.assert_array_equal(cache.special_mask(), ref.special_mask())


def test_manifest_fields(clean_cache, tiny_corpus):
    cache = ActivationCache(clean_cache)
    m = json.loads((clean_cache / "manifest.json").read_text())
    assert m == cache.manifest
    assert m["format"] == "interp-activations/1"
    assert m["model"] == "tiny-llama" and m["sites"] == SITES
    assert m["text"] == tiny_corpus
    assert m["seq_len"] == 32 and m["dtype"] == "float32"
    assert m["n_seqs"] == 63 and m["n_tokens"] == 63 * 32 == cache.n_tokens
    assert m["bos_id"] == 0
    assert m["code_version"] == interp.__version__
    assert m["complete"] is True
    assert cache.sites == SITES
    assert {s: i["width"] for s, i in m["sites_info"].items()} == {SITES[0]: 64, SITES[1]: 128}
    # shard ranges tile [0, n_seqs) in steps of shard_tokens // seq_len rows
    ranges = m["shard_ranges"]
    assert ranges[0][0] == 0 and ranges[-1][1] == 63
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(b - a == 8 for a, b in ranges[:-1]) and len(ranges) == 8
    assert sorted((s["start"], s["end"]) for s in m["shards"]) == [tuple(r) for r in ranges]
    assert cache.missing_shards() == []


def test_manifest_checksums_match_data(clean_cache):
    cache = ActivationCache(clean_cache)
    for shard in cache.manifest["shards"]:
        for site in SITES:
            rows = np.ascontiguousarray(np.load(clean_cache / f"acts/{site}.npy")[shard["start"] : shard["end"]])
            assert shard["xxh3_64"][site] == xxhash.xxh3_64_hexdigest(rows.tobytes())


def test_activation_files_are_plain_npy(clean_cache):
    """Readable without interp or pickle: plain .npy files with the right shapes."""
    for site, d in zip(SITES, (64, 128)):
        arr = np.load(clean_cache / "acts" / f"{site}.npy", allow_pickle=False)
        assert arr.shape == (63, 32, d) and arr.dtype == np.float32
    assert np.load(clean_cache / "tokens.npy", allow_pickle=False).shape == (63, 32)


@pytest.mark.parametrize(
    "dtype, torch_dtype, rtol",
    [
        ("float16", torch.float16, 2**-10),
        ("bfloat16", torch.bfloat16, 2**-7),
    ],
)
def test_low_precision_storage(make_cache, tiny_corpus, clean_cache, tmp_path, dtype, torch_dtype, rtol):
    out = make_cache(tiny_corpus, tmp_path / dtype, dtype=dtype)
    low, ref = ActivationCache(out), ActivationCache(clean_cache)
    assert low.manifest["dtype"] == dtype
    for site in SITES:
        a, r = low.activations(site), ref.activations(site)
        assert a.dtype == torch_dtype and a.shape == r.shape
        # stored values are exactly the float32 activations rounded to the storage dtype
        assert torch.equal(a, r.to(torch_dtype))
        torch.testing.assert_close(a.float(), r, rtol=rtol, atol=1e-6)
        # a low-precision file takes half the bytes of the float32 one
        assert (out / "acts" / f"{site}.npy").stat().st_size < 0.6 * (
            clean_cache / "acts" / f"{site}.npy"
        ).stat().st_size
        # streamed batches come back as float32 by default
        batch = next(low.batches(site, 100, shuffle=False))
        assert batch.dtype == torch.float32
        torch.testing.assert_close(batch, r.reshape(-1, r.shape[-1])[:100], rtol=rtol, atol=1e-6)


def test_single_site_string_and_shuffle_seed(make_cache, tiny_corpus, clean_cache, tmp_path):
    """A site given as a string works; a shuffle seed changes which documents are cached."""
    out = make_cache(tiny_corpus, tmp_path / "one", sites="blocks.0.hook_resid_post", shuffle_seed=3)
    cache = ActivationCache(out)
    assert cache.sites == ["blocks.0.hook_resid_post"]
    assert cache.manifest["shuffle_seed"] == 3
    assert not torch.equal(cache.tokens(), ActivationCache(clean_cache).tokens())


def test_completed_cache_rerun_is_a_no_op(make_cache, tiny_corpus, tmp_path, monkeypatch):
    out = make_cache(tiny_corpus, tmp_path / "c")
    before = ActivationCache(out).activations(SITES[1]).clone()

    def fail(*a, **k):
        raise AssertionError("a complete cache must not be recomputed")

    monkeypatch.setattr("interp.activations.cache._fill_shard", fail)
    assert make_cache(tiny_corpus, tmp_path / "c") == out
    assert torch.equal(ActivationCache(out).activations(SITES[1]), before)


def test_unknown_cached_site(clean_cache):
    with pytest.raises(ValueError, match="blocks.1.hook_resid_post"):
        ActivationCache(clean_cache).activations("blocks.1.hook_resid_post")


def test_missing_cache_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        ActivationCache(tmp_path / "nothing")
