"""The activation cache's files on disk: space reserved at creation, free space checked up front,
and ``.npy`` headers read without loading the data."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np

from interp.errors import DataError


def allocate(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Create the .npy file ``path`` for an array of ``shape`` with its disk space reserved, so a
    full disk is a ``DataError`` now rather than a SIGBUS ("Bus error") when the memory map is
    written later."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
    reserve(path)


def reserve(path: Path) -> None:
    """Reserve the blocks of ``path`` up to its size (``posix_fallocate``)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"no space left on the disk for {path} ({os.fstat(fd).st_size / 1e9:.2f} GB): "
                f"free some space or cache fewer tokens"
            ) from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without it: write lazily
            raise
    finally:
        os.close(fd)


def check_free_space(folder: Path, need: int) -> None:
    """``DataError`` before any write when ``folder``'s disk has fewer than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(
            f"the cache needs {need / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free at {folder}; "
            f"free some space, cache fewer tokens, or use dtype='bfloat16'"
        )


def npy_header(path: Path) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, offset of the data) of a .npy file, from its header alone."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return shape, dtype, f.tell()


def npy_data_offset(path: Path) -> int:
    return npy_header(path)[2]
