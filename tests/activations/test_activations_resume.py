"""Resumability and damage handling of the activation cache, and bad input.

Every scenario ends by comparing with an uninterrupted cache of the same request (exactly).
"""

import json
import os

import numpy as np
import pytest
import torch

import interp.activations.cache as cache_mod
from interp.activations import ActivationCache, cache_activations

SITES = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]


def _assert_same_cache(path, clean):
    a, b = ActivationCache(path), ActivationCache(clean)
    assert a.manifest["complete"] and a.missing_shards() == []
    assert torch.equal(a.tokens(), b.tokens())
    for site in SITES:
        assert torch.equal(a.activations(site), b.activations(site)), site


def _count_fills(monkeypatch, fail_on=None, exc=KeyboardInterrupt):
    """Wrap _fill_shard: count calls and raise ``exc`` on call number ``fail_on``."""
    calls = []
    real = cache_mod._fill_shard

    def wrapped(*args, **kwargs):
        calls.append(args[2:4])
        if fail_on is not None and len(calls) == fail_on:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "_fill_shard", wrapped)
    return calls


def _data_offset(path):
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0)(f)
        return f.tell()


def test_resume_after_interrupt(make_cache, tiny_corpus, clean_cache, tmp_path, monkeypatch):
    out = tmp_path / "c"
    _count_fills(monkeypatch, fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        make_cache(tiny_corpus, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2 and manifest["complete"] is False
    with pytest.raises(ValueError, match="incomplete"):
        ActivationCache(out)
    partial = ActivationCache(out, check=False)
    assert len(partial.missing_shards()) == 6

    monkeypatch.undo()
    calls = _count_fills(monkeypatch)
    assert make_cache(tiny_corpus, out) == out
    assert len(calls) == 6  # continues where it stopped: the 2 finished shards are not redone
    _assert_same_cache(out, clean_cache)


def test_interrupt_inside_a_shard_never_lists_it(make_cache, tiny_corpus, clean_cache, tmp_path, monkeypatch):
    """Stopped half-way through a shard's model batches: only fully written shards are listed."""
    out = tmp_path / "c"
    real, n = cache_mod.run_to_sites, []

    def run_sites(*args, **kwargs):
        n.append(1)
        if len(n) == 4:  # shards are 8 rows, batches 4 rows: the 2nd batch of the 2nd shard
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "run_to_sites", run_sites)
    with pytest.raises(KeyboardInterrupt):
        make_cache(tiny_corpus, out, batch_size=4)
    part = ActivationCache(out, check=False)
    assert [(s["start"], s["end"]) for s in part.manifest["shards"]] == [(0, 8)]
    monkeypatch.undo()
    make_cache(tiny_corpus, out, batch_size=4)
    _assert_same_cache(out, clean_cache)


def test_resume_after_interrupt_in_first_shard(make_cache, tiny_corpus, clean_cache, tmp_path, monkeypatch):
    out = tmp_path / "c"
    _count_fills(monkeypatch, fail_on=1)
    with pytest.raises(KeyboardInterrupt):
        make_cache(tiny_corpus, out)
    with pytest.raises(ValueError, match="incomplete"):
        ActivationCache(out)
    monkeypatch.undo()
    make_cache(tiny_corpus, out)
    _assert_same_cache(out, clean_cache)


def test_truncated_file_is_detected_and_repaired(make_cache, tiny_corpus, clean_cache, tmp_path, monkeypatch):
    out = make_cache(tiny_corpus, tmp_path / "c")
    f = out / "acts" / f"{SITES[1]}.npy"
    size = f.stat().st_size
    os.truncate(f, size - 1000)  # the last shard loses its tail
    with pytest.raises(ValueError, match="truncated"):
        ActivationCache(out)
    calls = _count_fills(monkeypatch)
    make_cache(tiny_corpus, out)
    assert calls == [(56, 63)]  # only the damaged shard is recomputed
    assert f.stat().st_size == size
    _assert_same_cache(out, clean_cache)


def test_file_truncated_to_header_is_repaired(make_cache, tiny_corpus, clean_cache, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    f = out / "acts" / f"{SITES[0]}.npy"
    os.truncate(f, _data_offset(f))
    with pytest.raises(ValueError, match="truncated"):
        ActivationCache(out)
    make_cache(tiny_corpus, out)
    _assert_same_cache(out, clean_cache)


def test_flipped_bytes_are_recomputed(make_cache, tiny_corpus, clean_cache, tmp_path, monkeypatch):
    out = make_cache(tiny_corpus, tmp_path / "c")
    f = out / "acts" / f"{SITES[0]}.npy"
    size = f.stat().st_size
    with open(f, "r+b") as fh:  # rows 24..31 are shard 3 (0-based); flip bytes inside row 28
        pos = _data_offset(f) + 28 * 32 * 64 * 4 + 100
        fh.seek(pos)
        old = fh.read(16)
        fh.seek(pos)
        fh.write(bytes(b ^ 0xFF for b in old))
    assert f.stat().st_size == size
    assert not torch.equal(
        ActivationCache(out).activations(SITES[0], verify=False), ActivationCache(clean_cache).activations(SITES[0])
    )
    calls = _count_fills(monkeypatch)
    make_cache(tiny_corpus, out)
    assert calls == [(24, 32)]
    _assert_same_cache(out, clean_cache)


def test_deleted_activation_file_is_rebuilt(make_cache, tiny_corpus, clean_cache, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    (out / "acts" / f"{SITES[1]}.npy").unlink()
    with pytest.raises(ValueError, match="truncated"):
        ActivationCache(out)
    make_cache(tiny_corpus, out)
    _assert_same_cache(out, clean_cache)


def test_interrupted_rebuild_of_deleted_file_stays_incomplete(make_cache, tiny_corpus, tmp_path, monkeypatch):
    out = make_cache(tiny_corpus, tmp_path / "c")
    (out / "acts" / f"{SITES[1]}.npy").unlink()
    _count_fills(monkeypatch, fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        make_cache(tiny_corpus, out)
    # 2 of 8 shards are recomputed: the cache must not open as complete
    with pytest.raises(ValueError, match="incomplete"):
        ActivationCache(out)


def test_corrupted_manifest(make_cache, tiny_corpus, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    (out / "manifest.json").write_text("{ this is not json ]]")
    with pytest.raises(ValueError, match="corrupted"):
        ActivationCache(out)
    # re-running refuses too (it must not silently overwrite a directory it cannot read)
    with pytest.raises(ValueError, match="corrupted"):
        make_cache(tiny_corpus, out)


@pytest.mark.parametrize(
    "content",
    [
        '{"format": "interp-activations/1"}',
        "[1, 2, 3]",
        '{"format": "something-else/9", "model": 1, "sites_info": {}, '
        '"n_seqs": 1, "seq_len": 1, "dtype": "float32", '
        '"shard_ranges": [], "shards": []}',
    ],
)
def test_manifest_missing_fields_or_unknown_format(tmp_path, content):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ValueError, match="corrupted"):
        ActivationCache(tmp_path)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(seq_len=16), "seq_len"),
        (dict(n_tokens=1000), "n_tokens"),
        (dict(dtype="float16"), "dtype"),
        (dict(sites=["blocks.0.hook_resid_post"]), "sites"),
    ],
)
def test_directory_holding_a_different_request(make_cache, tiny_corpus, tmp_path, change, field):
    out = make_cache(tiny_corpus, tmp_path / "c")
    before = (out / "manifest.json").read_bytes()
    acts_before = ActivationCache(out).activations(SITES[0]).clone()
    with pytest.raises(ValueError, match=field):
        make_cache(tiny_corpus, out, **change)
    assert (out / "manifest.json").read_bytes() == before  # nothing already written is lost
    assert torch.equal(ActivationCache(out).activations(SITES[0]), acts_before)


def test_damaged_token_file_is_a_clear_error(make_cache, tiny_corpus, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    (out / "tokens.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="tokens.npy"):
        ActivationCache(out).tokens()


# -- bad input -------------------------------------------------------------------------------------


def test_unknown_site_fails_before_writing(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "run_to_sites", lambda *a, **k: pytest.fail("model was run"))
    out = tmp_path / "c"
    with pytest.raises(ValueError, match="blocks.0.hook_resid_post"):
        cache_activations(
            tiny_model,
            tiny_corpus,
            ["blocks.0.hook_resid_post", "blocks.0.hook_resid_psot"],
            n_tokens=256,
            out_dir=out,
            seq_len=32,
            progress=False,
        )
    assert not out.exists()


def test_out_of_range_site_fails_before_writing(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "c"
    with pytest.raises(ValueError, match="layer"):
        cache_activations(
            tiny_model, tiny_corpus, "blocks.9.hook_resid_post", n_tokens=256, out_dir=out, seq_len=32, progress=False
        )
    assert not out.exists()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(sites=[]), "site"),
        (dict(dtype="float8"), "dtype"),
    ],
)
def test_bad_arguments_fail_before_writing(tiny_model, tiny_corpus, tmp_path, kw, match):
    out = tmp_path / "c"
    args = dict(n_tokens=256, out_dir=out, seq_len=32, progress=False, dtype=kw.get("dtype", "float32"))
    with pytest.raises(ValueError, match=match):
        cache_activations(tiny_model, tiny_corpus, kw.get("sites", SITES), **args)
    assert not out.exists()


@pytest.mark.parametrize("content", ["", "\n\n   \n\n\t\n"])
def test_empty_corpus(tiny_model, tmp_path, content):
    corpus = tmp_path / "empty.txt"
    corpus.write_text(content)
    out = tmp_path / "c"
    with pytest.raises(ValueError, match="empty"):
        cache_activations(tiny_model, str(corpus), SITES, n_tokens=256, out_dir=out, seq_len=32, progress=False)
    assert not out.exists()


def test_missing_corpus_file(tiny_model, tmp_path):
    out = tmp_path / "c"
    with pytest.raises(FileNotFoundError):
        cache_activations(
            tiny_model, str(tmp_path / "nope.txt"), SITES, n_tokens=256, out_dir=out, seq_len=32, progress=False
        )
    assert not out.exists()


def test_non_per_token_site_rejected_before_writing(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "c"
    with pytest.raises(ValueError, match="hook_pattern"):
        cache_activations(
            tiny_model,
            tiny_corpus,
            ["blocks.0.attn.hook_pattern"],
            n_tokens=256,
            out_dir=out,
            seq_len=32,
            progress=False,
        )
    assert not out.exists()
