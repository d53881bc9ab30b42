"""``interp cache`` then ``interp train`` (an SAE, and a fitted method) then ``interp eval`` on the
tiny model: the same commands the README shows, in process (fast) and as subprocesses (slow:
each start imports torch). Checked against the library call they stand for (the trained SAE
equals ``train`` run directly with the same settings)."""

import json
import os
import subprocess
import sys

import pytest
import torch

import interp.decomposers
from interp.activations import ActivationCache
from interp.cli.main import main
from interp.decomposers.sae import train

ENV = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
SITE = "blocks.1.hook_resid_post"


def interp_cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "interp", *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_cache_then_train_in_process_equals_the_library_calls(tmp_path):
    cache_dir = tmp_path / "cache"
    assert main(["cache", "model=tiny-llama", f"sites=[{SITE}]", "n_tokens=1e3", "seq_len=64", f"out={cache_dir}"]) == 0
    cache = ActivationCache(cache_dir)
    assert cache.n_tokens == 1024 and cache.sites == [SITE] and cache.manifest["model"] == "tiny-llama"
    keys = dict(
        method="relu",
        expansion_factor=2,
        n_tokens=512,
        batch_size=128,
        lr=1e-3,
        warmup_steps=1,
        wandb="disabled",
        seed=1,
    )
    assert (
        main(
            [
                "train",
                f"data={cache_dir}",
                f"out={tmp_path / 'sae'}",
                "progress=false",
                *(f"{k}={v}" for k, v in keys.items()),
            ]
        )
        == 0
    )
    sae, reference = interp.decomposers.load(tmp_path / "sae"), train(keys, cache, out=tmp_path / "ref", progress=False)
    assert sae.cfg.method == "relu" and sae.cfg.site == SITE
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(sae.state_dict()[name], value, msg=name)


@pytest.mark.slow
def test_cache_train_eval_as_subprocesses(tmp_path):
    cache_dir, sae_dir = tmp_path / "cache", tmp_path / "sae"
    cfg = tmp_path / "cache.yaml"
    cfg.write_text(f"model: tiny-llama\nsites: [{SITE}]\ntext: builtin:stdlib-docs\nseq_len: 64\nout: {cache_dir}\n")
    done = interp_cli("cache", str(cfg), "n_tokens=2e3")  # 1e6-style numbers parse as ints
    assert f"cached 2048 tokens of tiny-llama at {SITE}" in done.stdout
    cache = ActivationCache(cache_dir)
    assert cache.n_tokens == 2048 and cache.sites == [SITE]

    keys = dict(
        method="topk",
        expansion_factor=2,
        k=4,
        n_tokens=1024,
        batch_size=256,
        lr=1e-3,
        warmup_steps=1,
        wandb="disabled",
        seed=3,
    )
    interp_cli("train", f"data={cache_dir}", f"out={sae_dir}", *(f"{k}={v}" for k, v in keys.items()))
    sae = interp.decomposers.load(sae_dir)
    assert sae.cfg.method == "topk" and sae.cfg.site == SITE and sae.cfg.model == "tiny-llama"
    reference = train(keys, cache, out=tmp_path / "reference", progress=False)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(sae.state_dict()[name], value, msg=name)

    interp_cli("train", f"data={cache_dir}", f"out={tmp_path / 'itda'}", "method=itda", "k=4")
    itda = interp.decomposers.load(tmp_path / "itda")
    assert itda.cfg.site == SITE and itda.cfg.n_atoms > 0

    done = interp_cli("eval", f"run={sae_dir}", "n_tokens=256", "seq_len=64", "batch_size=4")
    metrics = json.loads((sae_dir / "eval.json").read_text())
    assert 0 <= metrics["fvu"] < 2 and 0 < metrics["l0"] <= 4 + 1e-6
    assert "reconstruction metrics" in done.stdout
