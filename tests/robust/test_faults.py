"""Fault injection (issue 18): signals at random lines of caching, training and store building.

For each stage an uninterrupted reference run counts the library lines it executes; each fault
(seeded) then runs the stage in a forked child that is sent SIGKILL, SIGINT or SIGINT twice at a
random line, and the stage is run again to completion. The resumed result must equal the
reference bit for bit (or the error must be one of the library's own, with a message), and the
rerun must not redo work the interrupted run had finished (no silent restart).

The default suite injects ``FAULTS_DEFAULT`` faults per stage; set ``INTERP_FAULTS=N`` for N per
stage (e.g. 100) to run the larger campaign. Each test prints its tally.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from interp.activations import cache_activations
from interp.browser import build_store
from interp.decomposers.sae import TopKConfig, TopKSAE, train

from .conftest import low_rank, small_cfg
from .faults import count_lines, random_fault, run_faulted

FAULTS_DEFAULT = 2
N_FAULTS = int(os.environ.get("INTERP_FAULTS", FAULTS_DEFAULT))
SITES = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")


def _campaign(stage, tmp_path, run, compare, progress_log, check_no_redo, seed0):
    """Reference, then N_FAULTS faulted runs each followed by a resume; returns the tally."""
    ref = tmp_path / "ref"
    run(ref)
    n_lines = count_lines(lambda: run(tmp_path / "warm"))  # as the children run: caches warm
    shutil.rmtree(tmp_path / "warm")
    tally = {"faults": 0, "killed": 0, "interrupted": 0, "finished": 0, "clear errors": 0, "lost": 0}
    # "finished": the point lay past the end of that run (no signal); "lost" stays 0: any loss fails
    rng = np.random.default_rng(seed0)
    for i in range(N_FAULTS):
        out, log = tmp_path / f"f{i}", tmp_path / f"f{i}.log"
        fault = random_fault(rng, n_lines)
        outcome = run_faulted(lambda: progress_log(log, lambda: run(out)), fault, tmp_path / f"f{i}.report")
        tally["faults"] += 1
        what = f"{stage} fault {i} ({fault}, outcome {outcome.exit})"
        assert not outcome.exit.startswith(("crash", "signal")), what
        if outcome.exit.startswith("error"):
            assert re.match(r"error: \w+Error: .+", outcome.exit), what
            tally["clear errors"] += 1
            continue
        tally[outcome.exit] += 1
        done = log.read_text().split() if log.exists() else []
        check_no_redo(done, lambda: run(out), what)
        compare(ref, out, what)
        shutil.rmtree(out)
    print(f"\n{stage}: {n_lines} library lines per run; {tally}")
    return tally


# -- caching ---------------------------------------------------------------------------------------
def test_caching_survives_signals_anywhere(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    import interp.activations.cache as cache_mod
    from interp.activations.format import ActivationCache

    def run(out):
        cache_activations(
            tiny_model,
            tiny_corpus,
            SITES,
            n_tokens=768,
            out_dir=out,
            seq_len=32,
            batch_size=4,
            shard_tokens=128,
            progress=False,
        )

    def progress_log(log, fn):  # in the child: note each shard once it is recorded
        real = ActivationCache.record_shard

        def record(self, start, end, *a, **k):
            real(self, start, end, *a, **k)
            with open(log, "a") as f:
                f.write(f"{start}:{end}\n")

        ActivationCache.record_shard = record
        fn()

    def check_no_redo(done, resume, what):
        filled = []
        real = cache_mod._fill_shard
        monkeypatch.setattr(
            cache_mod, "_fill_shard", lambda m, c, a, b, *r: filled.append(f"{a}:{b}") or real(m, c, a, b, *r)
        )
        resume()
        monkeypatch.setattr(cache_mod, "_fill_shard", real)
        assert not set(filled) & set(done), f"{what}: recomputed finished shards {set(filled) & set(done)}"

    def compare(ref, out, what):
        for f in [*(ref / "acts").iterdir(), *ref.glob("*.npy")]:
            assert f.read_bytes() == (out / f.relative_to(ref)).read_bytes(), f"{what}: {f.name} differs"
        a, b = ActivationCache(ref), ActivationCache(out)
        assert a.fingerprint == b.fingerprint and b.manifest["complete"], what

    tally = _campaign("caching", tmp_path, run, compare, progress_log, check_no_redo, seed0=1)
    assert tally["lost"] == 0


# -- training --------------------------------------------------------------------------------------
def test_training_survives_signals_anywhere(tmp_path, capsys):
    import interp.decomposers.sae.trainer as trainer

    x = low_rank()
    cfg = small_cfg(checkpoint_every=2, n_tokens=64 * 10)

    def run(out):
        train(cfg, x, out=out, progress=False)

    def progress_log(log, fn):  # in the child: note each checkpoint once it is saved
        real = trainer._Checkpoint.save

        def save(self, sae, opt, step, since_fired):
            real(self, sae, opt, step, since_fired)
            with open(log, "a") as f:
                f.write(f"{step}\n")

        trainer._Checkpoint.save = save
        fn()

    def check_no_redo(done, resume, what):
        capsys.readouterr()
        resume()
        said = capsys.readouterr().out
        start = re.search(r"resuming from step (\d+)", said)
        finished = "already holds a trained SAE" in said
        if done and not finished:
            assert start and int(start.group(1)) >= max(map(int, done)), f"{what}: restarted ({said!r}, saved {done})"

    def compare(ref, out, what):
        a, b = load_file(str(ref / "weights.safetensors")), load_file(str(out / "weights.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{what}: weights differ"
        assert (ref / "config.json").read_text() == (out / "config.json").read_text(), what
        assert not (out / "checkpoint").exists(), what

    tally = _campaign("training", tmp_path, run, compare, progress_log, check_no_redo, seed0=2)
    assert tally["lost"] == 0


# -- store building --------------------------------------------------------------------------------
def test_store_building_survives_signals_anywhere(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    import interp.browser.build as build

    sae = TopKSAE(TopKConfig(d_in=64, d_sae=48, k=4, model="tiny-llama", site="blocks.0.hook_resid_post"))
    art = sae.save(tmp_path / "artifact")
    options = dict(
        seq_len=32,
        k=4,
        n_samples=6,
        n_quantiles=2,
        per_quantile=2,
        window_left=5,
        window_right=2,
        n_bins=16,
        n_similar=3,
        vocab_k=3,
        batch_size=4,
        checkpoint_tokens=128,
    )

    def run(out):
        build_store(art, tiny_corpus, 768, out, model=tiny_model, progress=False, **options)

    def progress_log(log, fn):  # in the child: note each checkpoint once it is written
        real = build._checkpoint

        def checkpoint(out, stats, manifest, rows_done):
            real(out, stats, manifest, rows_done)
            with open(log, "a") as f:
                f.write(f"{rows_done}\n")

        build._checkpoint = checkpoint
        fn()

    def check_no_redo(done, resume, what):
        starts = []
        real = build._stream
        monkeypatch.setattr(build, "_stream", lambda *a: starts.append(a[6]) or real(*a))
        resume()
        monkeypatch.setattr(build, "_stream", real)
        if done and starts:
            assert starts[0] >= max(map(int, done)), f"{what}: restarted at row {starts[0]}, checkpoint {done}"

    def compare(ref, out, what):
        for name in ("features.parquet", "examples.parquet", "vocab.parquet"):
            assert pq.read_table(ref / name).equals(pq.read_table(out / name)), f"{what}: {name} differs"
        assert (ref / "directions.safetensors").read_bytes() == (out / "directions.safetensors").read_bytes()
        assert not (out / build.STATE_DIR).exists(), what

    tally = _campaign("store", tmp_path, run, compare, progress_log, check_no_redo, seed0=3)
    assert tally["lost"] == 0


def test_a_kill_at_every_line_of_the_folder_swap_leaves_a_complete_folder(tmp_path):
    """SIGKILL at each library line of ``replace_dir`` in turn: afterwards ``recover_dir`` always
    gives the old folder or the new one, whole, and no temporary folder stays behind."""
    from interp._io import recover_dir, replace_dir

    def swap(out):
        return lambda: replace_dir(out, lambda d: (d / "v").write_text("new"))

    replace_dir(tmp_path / "probe", lambda d: (d / "v").write_text("old"))
    n = count_lines(swap(tmp_path / "probe"))
    seen = set()
    for at in range(1, n + 2):
        parent = tmp_path / f"p{at}"
        replace_dir(parent / "d", lambda d: (d / "v").write_text("old"))
        outcome = run_faulted(swap(parent / "d"), dict(at=at, sig=9), tmp_path / "report")
        seen.add((outcome.exit, (recover_dir(parent / "d") / "v").read_text()))
        assert [p.name for p in parent.iterdir()] == ["d"], (at, outcome)
    assert seen == {("killed", "old"), ("killed", "new"), ("finished", "new")}, seen


def test_a_signal_anywhere_in_saving_over_an_artifact_leaves_the_old_or_the_new(tmp_path):
    """``Decomposer.save`` over an existing artifact, outside the trainer: SIGKILL at each library
    line of the save in turn (every 30th line at the CI scale), then ``INTERP_FAULTS`` random faults (SIGKILL, SIGINT, SIGINT twice).
    Afterwards ``load`` gives the old weights or the new ones, bit for bit, and the other files of
    the folder are still there; saving again then works and leaves no temporary behind."""
    from interp.decomposers import load

    def sae(seed):
        torch.manual_seed(seed)
        return TopKSAE(TopKConfig(d_in=16, d_sae=24, k=4, model="tiny-llama", site=SITES[0]))

    old, new = sae(0), sae(1)
    want = {"old": old.state_dict(), "new": new.state_dict()}

    def prepared(folder):
        old.save(folder, {"which": "old"})
        (folder / "train_config.json").write_text("kept")
        return folder

    n = count_lines(lambda: new.save(prepared(tmp_path / "probe" / "a"), {"which": "new"}))
    rng = np.random.default_rng(4)
    every = 1 if N_FAULTS > FAULTS_DEFAULT else max(1, n // 30)  # CI: every 30th line (the campaign: each)
    faults = [dict(at=at, sig=9) for at in range(1, n + 2, every)] + [random_fault(rng, n) for _ in range(N_FAULTS)]
    tally = {"faults": 0, "old": 0, "new": 0, "lost": 0}
    for i, fault in enumerate(faults):
        folder = prepared(tmp_path / f"s{i}" / "a")
        outcome = run_faulted(lambda: new.save(folder, {"which": "new"}), fault, tmp_path / f"s{i}.report")
        what = f"save fault {i} ({fault}, outcome {outcome.exit})"
        assert outcome.exit in ("killed", "interrupted", "finished"), what
        got = load(folder)
        which = got.meta.get("which")
        if which not in want or got.state_dict().keys() != want[which].keys():
            tally["lost"] += 1
        else:
            tally["lost"] += not all(torch.equal(got.state_dict()[k], v) for k, v in want[which].items())
            tally[which] += 1
        tally["faults"] += 1
        new.save(folder, {"which": "new"})  # the next save finishes whatever the fault left
        assert torch.equal(load(folder).W_dec, new.W_dec), what
        assert (folder / "train_config.json").read_text() == "kept", what
        assert [p.name for p in folder.parent.iterdir()] == ["a"], what
    print(f"\nartifact save: {n} library lines per save; {tally}")
    assert tally["lost"] == 0 and tally["old"] and tally["new"], tally
