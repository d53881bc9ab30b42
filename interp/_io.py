"""Small I/O helpers shared by every stage: atomic files and folders, checked JSON reads, and the
lock that keeps a second job out of an output folder."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from interp.errors import ConfigError, DataError, LockedError, MissingFileError


@contextmanager
def atomic_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A temporary sibling of ``path`` to write in the ``with`` block: when the block ends, it is
    fsynced and renamed over ``path``; when it raises (or a generator holding it is closed early),
    it is removed and ``path`` is left as it was. The one way the project replaces a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary sibling, fsync it, then rename it over ``path``."""
    with atomic_file(path, binary) as f:
        write(f)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=2))


def read_json(path: str | Path, what: str) -> dict:
    """Read a JSON object, turning a missing or corrupt file into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(
            f"{what} {path} is corrupted (not valid JSON: {e}); delete it and re-run the command that wrote it"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"{what} {path} is corrupted: expected a JSON object")
    return obj


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), so a saved request compares equal."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_same_request(saved: dict, request: dict, where: str | Path, what: str) -> None:
    """Refuse to reuse ``where``, a folder holding ``what``, when the settings ``saved`` there differ
    from ``request`` in any of ``request``'s keys (a key missing from ``saved`` differs)."""
    diff = {k: (saved.get(k), v) for k, v in request.items() if _plain(saved.get(k)) != _plain(v)}
    if diff:
        lines = "; ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(
            f"{where} already holds a different {what}, made with other settings ({lines}). "
            "Use another output directory, or delete this one to start over."
        )


def file_digest(path: str | Path) -> str:
    """xxh3-64 of a file's bytes (read in 8 MiB blocks), to detect damage on read."""
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while block := f.read(1 << 23):
            h.update(block)
    return h.hexdigest()


def load_safetensors(
    path: str | Path, what: str, device: str = "cpu", digest: str | None = None, repair: str = "re-create it"
) -> dict:
    """Read a safetensors file (never unpickles), naming the file when it is missing, not one, or
    (given the ``digest``, ``file_digest`` at writing) damaged; ``repair`` says how to make it again."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise DataError(
            f"{what} {path} is not a valid safetensors file ({e}); it may be corrupt, or a "
            f"pickle (.pt/.bin) renamed: re-create it with safetensors"
        ) from e
    if digest is not None and file_digest(path) != digest:
        raise DataError(
            f"{what} {path} is damaged (its xxh3 checksum differs from the one recorded when it was written); {repair}"
        )
    return tensors


# -- whole-folder replacement ------------------------------------------------------------------
def _backup(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folder entries themselves to disk."""
    for p in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        _fsync_path(p)
    _fsync_path(folder)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_dir(final: str | Path) -> Path:
    """The complete one of ``final`` and its backup, changing nothing: for a reader that does not
    hold the folder (a ``replace_dir`` stopped between its two renames leaves only the backup)."""
    final = Path(final)
    backup = _backup(final)
    return backup if not final.exists() and backup.is_dir() else final


def recover_dir(final: str | Path) -> Path:
    """Finish an interrupted ``replace_dir``: bring the backup back if ``final`` is missing,
    drop it if ``final`` is there (a rename is atomic, so ``final`` is always complete)."""
    final = Path(final)
    backup = _backup(final)
    if backup.exists():
        if final.exists():
            shutil.rmtree(backup)
        else:
            os.rename(backup, final)
    for tmp in [*final.parent.glob(f".{final.name}.new.*"), *final.parent.glob(f".{final.name}.gone.*")]:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def replace_dir(final: str | Path, fill: Callable[[Path], None], keep_others: bool = False) -> Path:
    """Replace the folder ``final`` by one that ``fill(tmp)`` writes, atomically: the one way the
    project swaps a folder (checkpoints, artifacts, downloaded models).

    Safe against a signal or crash at any instruction: ``fill`` writes a fresh sibling, which is
    flushed to disk; the old folder is renamed to a backup, the new one renamed into place, then
    the backup removed. At every moment either ``final`` or its backup is complete, and
    ``recover_dir`` (called here first, and by writers holding the folder) restores the complete
    one; ``current_dir`` finds it for readers. ``keep_others``: entries of the old folder that
    ``fill`` did not write (other files, a lock, logs) are carried into the new one as hard links.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.new."))
    try:
        fill(tmp)
        for f in tmp.rglob("*"):  # shareable, as write_atomic's files (mkstemp and some writers make 0600)
            if f.is_file() and not f.is_symlink():
                os.chmod(f, 0o644)
        if keep_others and final.is_dir():
            _link_missing(final, tmp)
        os.chmod(tmp, 0o755)
        _fsync_tree(tmp)
        if final.exists():
            os.rename(final, _backup(final))
        os.rename(tmp, final)
        _fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    recover_dir(final)  # removes the backup
    return final


_TEMPORARY = re.compile(r"^\..+\.(new\.\w+|gone\.\w+|old|\w+\.tmp)$|^\.saving\.")


def _link_missing(src: Path, dst: Path) -> None:
    """Hard-link every entry of ``src`` missing from ``dst`` into it (folders recreated, symlinks
    copied as links, files copied where the file system has no hard links); leftovers of an
    interrupted write (``replace_dir``/``write_atomic`` temporaries) are not carried."""
    for entry in src.iterdir():
        target = dst / entry.name
        if _TEMPORARY.match(entry.name) or target.exists() or target.is_symlink():
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            target.mkdir()
            _link_missing(entry, target)
        else:
            try:
                os.link(entry, target)
            except OSError:
                shutil.copy2(entry, target)


def remove_dir(path: str | Path) -> None:
    """Remove a folder so that no reader ever sees it half-deleted (rename first, then delete)."""
    path = Path(path)
    recover_dir(path)
    if path.exists():
        gone = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.gone."))
        os.rename(path, gone / path.name)
        shutil.rmtree(gone)


# -- one writer per output folder --------------------------------------------------------------
LOCK_FILE = ".interp.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str = "output folder", wait: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for this process for the whole ``with`` block (the folder is created).

    A second process asking for the same folder gets ``LockedError`` naming the holder's pid. The
    lock is an ``flock`` on ``folder/.interp.lock``: the kernel drops it when its holder dies, so a
    lock left by a killed process is stale and simply taken. Re-entrant within one process.
    ``wait=True`` blocks until the folder is free instead (for shared caches, not outputs). A
    folder this call created and nothing but the lock was written into is removed at the end.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{what} {folder} is an existing file, not a folder; choose another path")
    if not folder.exists() and _backup(folder).is_dir():
        with contextlib.suppress(OSError):  # a replace_dir stopped between its renames: the backup
            os.rename(_backup(folder), folder)  # is the folder (atomic: one racing caller wins)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        yield folder
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(
                f"{what} {folder} is in use by another process (pid {holder}); wait for it "
                f"to finish, or stop it, or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield folder
        finally:
            _HELD.discard(key)
            if created and not wait and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                shutil.rmtree(folder)  # a job that failed before writing leaves no folder behind
    finally:
        os.close(fd)  # releases the flock


_HELD: set[str] = set()


@contextmanager
def job_lock(folder: str | Path, what: str = "output folder") -> Iterator[Path]:
    """``folder_lock`` for a job of one process or of several (``torchrun``): rank 0 takes the lock
    and tells every rank whether it got it, so a folder held by another job stops every rank with
    the same ``LockedError`` (or ``DataError``) before any of them reads or writes there."""
    from interp import distributed, errors

    if distributed.world()[1] == 1:
        with folder_lock(folder, what):
            yield Path(folder)
        return
    with contextlib.ExitStack() as stack:
        failure: tuple[str, str] | None = None
        if distributed.is_main():
            try:
                stack.enter_context(folder_lock(folder, what))
            except errors.InterpError as e:
                failure = (type(e).__name__, str(e))
        failure = distributed.all_gather_object(failure)[0]  # type: ignore[assignment]
        if failure is not None:
            raise getattr(errors, failure[0])(failure[1])
        yield Path(folder)
