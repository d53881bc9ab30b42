"""Two CPU processes under torchrun (gloo) against one process: the same SAE, the same cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interp import decomposers
from interp.activations import ActivationCache, cache_activations
from interp.decomposers.sae import train

sys.path.insert(0, os.path.dirname(__file__))
from dist_cases import CACHE_ARGS, DP_METHODS, sae_config, sae_data  # noqa: E402

WORKER = Path(__file__).with_name("dist_worker.py")


def _torchrun(*args: str, timeout: float = 300) -> str:
    """Run ``dist_worker.py ARGS`` on 2 ranks; its stdout."""
    return _torchrun_module(str(WORKER), *args, timeout=timeout)


def _torchrun_module(*args: str, timeout: float = 300) -> str:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a script, or ``-m`` and a module); its stdout."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_data_parallel_training_matches_one_process(tmp_path):
    _torchrun("train", str(tmp_path / "ddp"))
    for method in DP_METHODS:
        ddp = decomposers.load(tmp_path / "ddp" / method)
        ref = train(sae_config(method), sae_data(), progress=False)
        for name, want in ref.state_dict().items():
            torch.testing.assert_close(ddp.state_dict()[name], want, rtol=1e-4, atol=1e-5, msg=f"{method} {name}")
        assert ddp.meta["steps"] == 24
        assert ddp.meta["dead_frac"] == pytest.approx(ref.meta["dead_frac"])


def test_distributed_cache_matches_one_process(tmp_path, tiny_model, tiny_corpus):
    _torchrun("cache", tiny_corpus, str(tmp_path / "ddp"))
    ref = cache_activations(tiny_model, tiny_corpus, out_dir=tmp_path / "one", progress=False, **CACHE_ARGS)
    a, b = ActivationCache(tmp_path / "ddp"), ActivationCache(ref)
    assert a.manifest["complete"] and not list((tmp_path / "ddp").glob("manifest.rank*"))
    assert sorted(map(str, a.manifest["shards"])) == sorted(map(str, b.manifest["shards"]))
    np.testing.assert_array_equal(a.token_array(), b.token_array())
    for site in CACHE_ARGS["sites"]:
        torch.testing.assert_close(a.activations(site), b.activations(site))


def test_rank_journals_are_folded_into_the_manifest_on_resume(tmp_path, monkeypatch, tiny_model, tiny_corpus):
    """A distributed run stopped before rank 0 merged: rank 1's journal counts on the next run."""
    import interp.activations.cache as cache_mod

    out = tmp_path / "c"
    cache_activations(tiny_model, tiny_corpus, out_dir=out, progress=False, **CACHE_ARGS)
    manifest = json.loads((out / "manifest.json").read_text())
    journal = manifest["shards"][1::2]
    manifest.update(shards=manifest["shards"][::2], complete=False)
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "manifest.rank1.json").write_text(json.dumps({"shards": journal}))
    monkeypatch.setattr(cache_mod, "_fill_shard", lambda *a, **k: pytest.fail("recomputed a journaled shard"))
    cache_activations(tiny_model, tiny_corpus, out_dir=out, progress=False, **CACHE_ARGS)
    cache = ActivationCache(out)
    assert cache.manifest["complete"] and not (out / "manifest.rank1.json").exists()
    assert len(cache.manifest["shards"]) == len(manifest["shards"]) + len(journal)


def test_a_second_job_into_held_folders_stops_every_rank_with_the_lock_message(tmp_path, tiny_corpus):
    """Another job (this test process) holds a cache folder and a run folder: a torchrun job into
    them fails on every rank with the LockedError naming the holder, and writes nothing there
    (before, rank 0 alone raised while rank 1 went on into the folder, then hung)."""
    from interp._io import LOCK_FILE, folder_lock

    cache, run = tmp_path / "cache", tmp_path / "run"
    with folder_lock(cache, "activation cache folder"), folder_lock(run, "SAE run folder"):
        said = _torchrun("locked", tiny_corpus, str(cache), str(run), timeout=180)
        for folder in (cache, run):
            assert [p.name for p in folder.iterdir()] == [LOCK_FILE], folder
    for rank in (0, 1):
        for what, folder in (("activation cache folder", cache), ("SAE run folder", run)):
            line = f"rank {rank}: LockedError: {what} {folder} is in use by another process (pid {os.getpid()})"
            assert line in said, said
    assert said.count("LockedError") == 4 and "finished" not in said, said


def test_the_train_command_under_torchrun_trains_data_parallel_and_exits_cleanly(tmp_path, tiny_corpus):
    """``torchrun -m interp train``, the command the README shows for several processes: exit 0
    (the process group is destroyed at the end), one summary, and the SAE one process trains."""
    from interp.cli.main import main

    site = CACHE_ARGS["sites"][0]
    cache = tmp_path / "cache"
    args = ["model=tiny-llama", f"sites=[{site}]", "n_tokens=2048", "seq_len=32", f"text={tiny_corpus}"]
    assert main(["cache", *args, f"out={cache}"]) == 0
    keys = {k: v for k, v in sae_config().items() if k not in ("device", "log_every", "checkpoint_every")}
    keys |= dict(batch_size=256, n_tokens=256 * 4)
    said = _torchrun_module(
        "-m",
        "interp",
        "train",
        f"data={cache}",
        f"out={tmp_path / 'ddp'}",
        "progress=false",
        *(f"{k}={v}" for k, v in keys.items()),
    )
    assert said.count("trained topk SAE") == 1, said
    ddp, ref = decomposers.load(tmp_path / "ddp"), train(keys, ActivationCache(cache), progress=False)
    for name, want in ref.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[name], want, rtol=1e-4, atol=1e-5, msg=name)
