"""Case 11 of issue 18: library-level causes of tracebacks are now InterpError messages, raised
before any compute (the command line turns them into one or two lines)."""

import errno
import json
import os
import shutil

import pytest
import torch

from interp.decomposers import load
from interp.decomposers.sae import TopKConfig, TopKSAE, train
from interp.errors import ConfigError, DataError, InterpError, MissingFileError

from .conftest import low_rank, small_cfg


class _Watched:
    """An iterable of batches that records whether training ever read from it."""

    def __init__(self):
        self.read = False

    def __iter__(self):
        self.read = True
        yield from low_rank().split(64)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(k=64, d_sae=32), "larger than d_sae"),
        (dict(k=0), "k must be > 0"),
        (dict(k=-3), "k must be > 0"),
        (dict(expansion_factor=0, d_sae=None), "expansion_factor"),
        (dict(k="abc"), "k must be int"),
        (dict(n_tokens="1e6"), "YAML reads 1e6 as text"),
        (dict(lr="fast"), "lr must be float"),
        (dict(batch_size=True), "batch_size must be int"),
    ],
)
def test_bad_config_values_are_config_errors_before_compute(bad, match):
    data = _Watched()
    with pytest.raises(ConfigError, match=match):
        train(small_cfg(**bad), data, progress=False)
    assert not data.read


def test_k_larger_than_resolved_d_sae_is_refused_before_training():
    data = _Watched()
    with pytest.raises(ConfigError, match="larger than d_sae"):
        train(small_cfg(d_sae=None, expansion_factor=1, k=20), data, progress=False)  # d_in 16 -> d_sae 16


def test_out_pointing_at_an_existing_file_is_refused_before_compute(tmp_path):
    target = tmp_path / "sae.safetensors"
    target.write_bytes(b"keep me")
    data = _Watched()
    with pytest.raises(DataError, match="existing file"):
        train(small_cfg(), data, out=target, progress=False)
    assert not data.read and target.read_bytes() == b"keep me"


def test_full_disk_is_an_error_before_any_activation_is_written(make_cache, tiny_corpus, tmp_path, monkeypatch):
    import interp.activations.disk as fmt

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fmt.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(DataError, match="only 0.00 GB are free"):
        make_cache(tiny_corpus, tmp_path / "c")
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_space_is_reserved_so_a_full_disk_fails_at_allocation(make_cache, tiny_corpus, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DataError, match="no space left"):
        make_cache(tiny_corpus, tmp_path / "c")


def _artifact(tmp_path):
    sae = TopKSAE(TopKConfig(d_in=8, d_sae=16, k=2))
    return sae.save(tmp_path / "art")


def test_pickle_offered_as_safetensors_names_the_file(tmp_path):
    art = _artifact(tmp_path)
    torch.save({"W_enc": torch.zeros(8, 16)}, art / "weights.safetensors")  # a pickle
    with pytest.raises(DataError, match="weights.safetensors.*not a valid safetensors"):
        load(art)


def test_saelens_folder_points_to_load_saelens(tmp_path):
    sae = TopKSAE(TopKConfig(d_in=8, d_sae=16, k=2))
    folder = sae.save_saelens(tmp_path / "saelens")
    with pytest.raises(MissingFileError, match="load_saelens"):
        load(folder)


@pytest.mark.parametrize(
    "edit, match",
    [
        (dict(d_sae=32), "does not match"),
        (dict(k="two"), "not a valid topk config"),
        (dict(bogus=1), "unknown config field"),
    ],
)
def test_artifact_config_that_disagrees_is_a_data_error(tmp_path, edit, match):
    art = _artifact(tmp_path)
    cfg = json.loads((art / "config.json").read_text())
    (art / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(DataError, match=match):
        load(art)


def test_hf_folder_with_remote_code_says_trust_remote_code_is_off(tmp_path):
    from interp.models import load as load_model
    from interp.models.loader import _tiny_dir

    folder = tmp_path / "remote"
    shutil.copytree(_tiny_dir(), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ConfigError, match="trust_remote_code is off.*trust_remote_code=True"):
        load_model(str(folder), device="cpu")


def test_cache_arguments_are_checked_before_compute(make_cache, tiny_corpus, tmp_path):
    for bad in (dict(n_tokens=0), dict(n_tokens="1e6"), dict(batch_size=-1), dict(dtype="int8")):
        with pytest.raises(InterpError):
            make_cache(tiny_corpus, tmp_path / "c", **bad)
        assert not (tmp_path / "c").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="existing file"):
        make_cache(tiny_corpus, tmp_path / "file")


def test_errors_keep_the_builtin_types_callers_caught():
    assert issubclass(ConfigError, ValueError) and issubclass(MissingFileError, FileNotFoundError)
    with pytest.raises(ValueError):
        TopKConfig(k=0)


def test_malformed_jsonl_names_the_file_and_line(tmp_path):
    from interp.data import load_text

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "broken"\n{"text": "fine"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not valid JSON"):
        load_text(str(bad))


def test_binary_file_offered_as_text_names_the_file(tmp_path):
    from interp.data import load_text

    binary = tmp_path / "model.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match=r"model.txt, line \d+: not UTF-8 text"):
        load_text(str(binary))


def test_loading_an_unfinished_run_says_to_finish_it(tmp_path):
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    with pytest.raises(MissingFileError, match="unfinished training run"):
        load(tmp_path / "run")
