"""Text sources read through Hugging Face ``datasets``: local files/directories and hub ids.

Local ``.txt`` (one document per paragraph, i.e. blank-line separated), ``.jsonl``/``.json`` and
``.parquet`` files, or a directory holding files of one of these kinds, are loaded eagerly
(map-style, Arrow-cached by ``datasets``), so a shuffle is an exact seeded permutation.
Hub ids are streamed; their shuffle is ``datasets``' seeded buffer shuffle, applied after each
row has been numbered in the canonical order so that doc ids do not depend on the seed.
Every function here yields ``(doc_id, value)`` pairs; ``sources.py`` turns them into documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from interp.errors import DataError

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SHUFFLE_BUFFER = 10_000
READ_BATCH = 1024


def local_files(path: Path) -> tuple[str, list[str]]:
    """The ``datasets`` builder name and the sorted data files for a local file or directory."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in BUILDERS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ValueError(f"directory {str(path)!r} holds no data files: expected {sorted(BUILDERS)} files")
    builders = {BUILDERS.get(p.suffix.lower()) for p in files}
    if None in builders:
        raise ValueError(f"unsupported file type {path.suffix!r} for {str(path)!r}: use one of {sorted(BUILDERS)}")
    if len(builders) > 1:
        raise ValueError(f"directory {str(path)!r} mixes file kinds ({sorted(builders)}): keep one kind per folder")
    return builders.pop(), [str(p) for p in files]


def load_local(spec: str, path: Path, split: str, column: str) -> Any:
    """Load a local file or directory as a map-style ``datasets.Dataset`` and check the column."""
    import datasets

    builder, files = local_files(path)
    files = [f for f in files if os.path.getsize(f) > 0]
    if not files:
        raise ValueError(f"corpus {spec!r} is empty: its data files hold no bytes")
    kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
    try:
        ds = datasets.load_dataset(builder, data_files={split: files}, split=split, **kwargs)
    except datasets.exceptions.DatasetGenerationError as e:
        raise _first_bad_line(files, builder) or DataError(
            f"corpus {spec!r} could not be read: {e.__cause__ or e}"
        ) from e
    check_column(spec, column, ds.column_names)
    return ds


def _first_bad_line(files: list[str], builder: str) -> DataError | None:
    """After ``datasets`` failed on ``files``: the first line that is not UTF-8 text (or, for
    JSON Lines, not one JSON value), as an error naming the file and line; None if none is."""
    if builder not in ("text", "json"):
        return None
    for name in files:
        with open(name, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    return DataError(f"{name}, line {number}: not UTF-8 text (a binary file?); give a text corpus")
                if builder == "json" and name.endswith(".jsonl") and line.strip():
                    try:
                        json.loads(line.strip())
                    except json.JSONDecodeError as e:
                        return DataError(
                            f"{name}, line {number}: not valid JSON ({e.msg}, column {e.colno}); "
                            f"fix or remove that line"
                        )
    return None


def iter_local(ds: Any, column: str, seed: int | None) -> Iterator[tuple[int, Any]]:
    """``(row index, value)`` pairs of a map-style dataset, in order or seeded-permuted."""
    ds = ds.select_columns([column])
    ids = np.arange(len(ds)) if seed is None else np.random.default_rng(seed).permutation(len(ds))
    if seed is not None:
        ds = ds.select(ids)
    start = 0
    for batch in ds.iter(batch_size=READ_BATCH):
        values = batch[column]
        yield from zip(ids[start : start + len(values)].tolist(), values)
        start += len(values)


def load_hub(spec: str, name: str, split: str, column: str, hint: str) -> Any:
    """Stream a hub dataset ``name`` (``repo`` or ``repo:config``); failures become ValueError."""
    import datasets

    repo, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split, streaming=True)
    except Exception as err:  # offline, unknown repo, bad config/split: all reported the same way
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no")
        why = (
            "HF_HUB_OFFLINE is set, so the hub was not contacted: use a builtin or local "
            "source, or unset HF_HUB_OFFLINE where the network is reachable. "
            if offline
            else "Without network access, set HF_HUB_OFFLINE=1 and use a builtin or local source. "
        )
        raise ValueError(
            f"cannot load text source {spec!r}: it is not 'builtin:<name>', not an existing local "
            f"file or directory, and not reachable on the Hugging Face hub "
            f"({type(err).__name__}: {err}). {why}{hint}"
        ) from err
    if ds.column_names is not None:
        check_column(spec, column, ds.column_names)
    return ds


def iter_hub(spec: str, ds: Any, column: str, seed: int | None) -> Iterator[tuple[int, Any]]:
    """``(canonical row index, value)`` pairs of a streamed dataset, optionally buffer-shuffled."""
    import datasets

    def numbered() -> Iterator[dict[str, Any]]:
        for i, row in enumerate(ds):
            if column not in row:
                check_column(spec, column, list(row))
            yield {"doc_id": i, "value": row[column]}

    rows: Any = numbered()
    if seed is not None:
        rows = datasets.IterableDataset.from_generator(numbered)
        rows = rows.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    for row in rows:
        yield row["doc_id"], row["value"]


def check_column(spec: str, column: str, available: list[str]) -> None:
    """Raise a ValueError naming the available columns when ``column`` is not one of them."""
    if column not in available:
        raise ValueError(
            f"column {column!r} not found in {spec!r}: available columns are {list(available)}. "
            f"Pass column=... or append '?column=<name>' to the spec."
        )
