"""Cases 1-2 of issue 18 (data lost): one writer per output folder; an atomic checkpoint swap."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from interp.decomposers.sae import train
from interp.errors import DataError, LockedError

from .conftest import low_rank, small_cfg


def _hold(folder, seconds=60):
    """A child process that holds ``folder``'s lock until killed; returns it once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from interp._io import folder_lock
        with folder_lock({str(folder)!r}):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_cache_writer_gets_locked_error_naming_the_pid(make_cache, tiny_corpus, tmp_path):
    out = tmp_path / "cache"
    holder = _hold(out)
    try:
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            make_cache(tiny_corpus, out)
        assert not (out / "manifest.json").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()
    make_cache(tiny_corpus, out)  # the holder died: its lock is stale and taken
    assert (out / "manifest.json").exists()


def test_second_training_run_is_locked_out(tmp_path):
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        with pytest.raises(LockedError, match="in use by another process"):
            train(small_cfg(), low_rank(), out=out, progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_saving_into_an_artifact_folder_another_process_holds_is_refused(tmp_path):
    """``Decomposer.save`` locks the folder: saving over an artifact another job holds (a training
    run writing there) is a LockedError, and the artifact there is left as it was."""
    from interp.decomposers import load
    from interp.decomposers.sae import TopKConfig, TopKSAE

    torch.manual_seed(0)
    old, new = TopKSAE(TopKConfig(d_in=16, d_sae=32, k=4)), TopKSAE(TopKConfig(d_in=16, d_sae=32, k=4))
    out = old.save(tmp_path / "art")
    holder = _hold(out)
    try:
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            new.save(out)
    finally:
        holder.kill()
        holder.wait()
    assert torch.equal(load(out).W_dec, old.W_dec)
    new.save(out)
    assert torch.equal(load(out).W_dec, new.W_dec)


def test_an_artifact_swap_stopped_between_its_renames_still_loads(tmp_path):
    """A save killed after renaming the old artifact to its backup, before renaming the new one in:
    ``load`` reads the backup (writing nothing), and the next save restores it and swaps."""
    from interp.decomposers import load
    from interp.decomposers.sae import TopKConfig, TopKSAE

    torch.manual_seed(0)
    old, new = TopKSAE(TopKConfig(d_in=16, d_sae=32, k=4)), TopKSAE(TopKConfig(d_in=16, d_sae=32, k=4))
    out = old.save(tmp_path / "art")
    (out / "notes.txt").write_text("kept")
    os.rename(out, tmp_path / ".art.old")  # the state between replace_dir's two renames
    assert torch.equal(load(out).W_dec, old.W_dec) and not out.exists()
    new.save(out)
    assert torch.equal(load(out).W_dec, new.W_dec) and (out / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_stale_lock_file_of_a_dead_process_is_taken(tmp_path):
    from interp._io import LOCK_FILE, folder_lock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / LOCK_FILE).write_text(dead.stdout)
    with folder_lock(tmp_path / "f"):
        assert (tmp_path / "f" / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_replace_dir_leaves_a_complete_folder_at_every_step(tmp_path, monkeypatch):
    """Interrupt replace_dir at each rename: recover_dir always yields the old or the new folder."""
    from interp._io import recover_dir, replace_dir

    final = tmp_path / "ckpt"
    replace_dir(final, lambda d: (d / "v").write_text("old"))
    real_rename = os.rename
    for fail_at in range(2):
        calls = []

        def rename(src, dst, *a, **k):
            calls.append(dst)
            if len(calls) > fail_at:
                raise KeyboardInterrupt
            return real_rename(src, dst, *a, **k)

        monkeypatch.setattr(os, "rename", rename)
        with pytest.raises(KeyboardInterrupt):
            replace_dir(final, lambda d: (d / "v").write_text("new"))
        monkeypatch.setattr(os, "rename", real_rename)
        assert (recover_dir(final) / "v").read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing catches it (no Ctrl-C handler, no checkpoint on the way out)."""


def test_kill_inside_the_checkpoint_swap_resumes_from_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    """The issue's case 2: a second signal lands between removing the old checkpoint and renaming the
    new one in. The old code lost the checkpoint and restarted at step 0 without a word."""
    cfg, x, out = small_cfg(checkpoint_every=2), low_rank(), tmp_path / "run"
    reference = train(cfg, x, progress=False).state_dict()
    real_rename, saves = os.rename, []

    def rename(src, dst, *a, **k):
        if os.path.basename(str(dst)) == "checkpoint":
            saves.append(dst)
            if len(saves) == 2:  # the second checkpoint (step 4) is being swapped in
                raise _Killed
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(_Killed):
        train(cfg, x, out=out, progress=False)
    monkeypatch.setattr(os, "rename", real_rename)
    capsys.readouterr()
    sae = train(cfg, x, out=out, progress=False)
    assert "resuming from step 2" in capsys.readouterr().out
    for k, v in reference.items():
        assert torch.equal(sae.state_dict()[k], v), k


def test_damaged_checkpoint_says_so_instead_of_restarting(tmp_path):
    cfg, x, out = small_cfg(checkpoint_every=2), low_rank(), tmp_path / "run"

    def stop_after(n):
        for i, b in enumerate(iter(lambda: x[:64], None)):
            if i == n:
                raise KeyboardInterrupt
            yield b

    with pytest.raises(KeyboardInterrupt):
        train(cfg, stop_after(5), out=out, progress=False)
    state = out / "checkpoint" / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[-8:-4] = bytes(b ^ 0xFF for b in data[-8:-4])  # inside the last tensor's values
    state.write_bytes(bytes(data))
    with pytest.raises(DataError, match="state.safetensors is damaged.*from step 0"):
        train(cfg, stop_after(100), out=out, progress=False)
    state.write_bytes(b"\x80\x04 a pickle, not a safetensors file")
    with pytest.raises(DataError, match="state.safetensors"):
        train(cfg, stop_after(100), out=out, progress=False)
