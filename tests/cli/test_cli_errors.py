"""The ``interp`` command as a user runs it (``python -m interp ...`` in a subprocess): ``--help``
lists a command's keys with their docs, and bad input (a typo'd key, a missing file, malformed or
binary YAML, a self-including config, a wrong type) gives a short message and exit status 2, no
traceback, unless ``--debug`` asks for one."""

import os
import subprocess
import sys

import pytest

ENV = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", INTERP_DEBUG="")


def interp(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interp", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


def assert_short_error(done: subprocess.CompletedProcess, *phrases: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr


def test_help_lists_every_command_and_each_commands_keys():
    top = interp("--help")
    assert top.returncode == 0
    for name in ("cache", "train", "eval", "browse", "steer", "compare", "bench", "reproduce", "demo"):
        assert f"\n  {name} " in top.stdout
    cache = interp("cache", "--help")
    assert cache.returncode == 0
    assert "n_tokens (int, required): Tokens to cache" in cache.stdout
    assert "seq_len (int, default 128): Tokens per context row." in cache.stdout


def test_train_help_adds_the_chosen_methods_fields():
    done = interp("train", "method=snmf", "--help")
    assert done.returncode == 0
    assert "keys of SNMFConfig" in done.stdout and "rank (int, default 100)" in done.stdout


@pytest.mark.parametrize("group,name", [("bench", "sae"), ("reproduce", "lib_modadd")])
def test_group_members_have_help(group, name):
    done = interp(group, name, "--help")
    assert done.returncode == 0 and "keys:" in done.stdout, done.stderr


def test_typo_in_a_key_names_the_closest_key(tmp_path):
    done = interp(
        "cache", "model=tiny-llama", "sites=[blocks.0.hook_resid_post]", "n_tokns=100", f"out={tmp_path / 'c'}"
    )
    assert_short_error(done, "unknown key 'n_tokns'", "did you mean 'n_tokens'")
    assert not (tmp_path / "c").exists()


def test_typo_in_a_methods_field_names_the_closest_field(tmp_path):
    done = interp("train", "method=topk", "data=nowhere", "out=x", "expansion_facor=4", cwd=tmp_path)
    assert_short_error(done, "'expansion_facor'", "did you mean 'expansion_factor'")


def test_missing_config_file(tmp_path):
    assert_short_error(interp("cache", str(tmp_path / "nope.yaml")), "config file not found", "nope.yaml")


def test_missing_cache_folder(tmp_path):
    assert_short_error(interp("train", f"data={tmp_path / 'nothing'}", f"out={tmp_path / 'o'}"), "nothing")


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny-llama\nsites: [a, b\nn_tokens: 3\n")
    assert_short_error(interp("cache", str(bad)), f"{bad}:", "not valid YAML")


def test_binary_file_and_non_mapping_and_self_include(tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)))
    assert_short_error(interp("cache", str(binary)), "not a text file")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    assert_short_error(interp("cache", str(listing)), "must be a YAML mapping")
    loop = tmp_path / "loop.yaml"
    loop.write_text("include: other.yaml\n")
    (tmp_path / "other.yaml").write_text("include: loop.yaml\n")
    assert_short_error(interp("cache", str(loop)), "includes itself")


def test_wrong_type_and_missing_required_key(tmp_path):
    assert_short_error(
        interp("cache", "model=tiny-llama", "sites=[a]", "n_tokens=lots", "out=x"), "n_tokens: expected a whole number"
    )
    assert_short_error(interp("cache", "model=tiny-llama"), "needs sites=..., n_tokens=..., out=...")


def test_unknown_command_suggests_the_closest():
    assert_short_error(interp("trian"), "did you mean 'train'")


def test_debug_shows_the_traceback(tmp_path):
    done = interp("cache", str(tmp_path / "nope.yaml"), "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_reproduce_paper_refuses_an_unknown_paper(tmp_path):
    done = interp("reproduce", "paper", "paper=nope", f"out={tmp_path}")
    assert_short_error(done, "unknown paper")
    assert not list(tmp_path.iterdir())


def test_synthetic_bench_data_keys_and_types_are_checked_before_compute(tmp_path):
    """``data`` is free-form in the YAML; its keys are make_dataset's and are refused before training."""
    cfg = "configs/experiments/bench_synthetic_grid.yaml"
    out = f"out={tmp_path / 'b'}"
    assert_short_error(interp("bench", "synthetic", cfg, "data.sample_nrom=true", out), "did you mean 'sample_norm'")
    assert_short_error(interp("bench", "synthetic", cfg, "data.sample_norm=maybe", out), "data.sample_norm: expected")
    assert_short_error(interp("bench", "synthetic", cfg, "data.noise=abc", out), "data.noise: expected a number")
    assert not (tmp_path / "b").exists()
