"""Text sources: turn a spec string into a re-iterable, deterministic stream of documents.

Spec forms (see ``load_text``):
- ``builtin:stdlib-docs``: the Python standard library's documentation (``stdlib_docs.py``);
  split ``train`` (default) is every document but each 10th, ``test`` every 10th, ``all`` both;
- ``builtin:site-docs``: the same, from the installed packages' docstrings (a larger corpus);
- a local ``.txt`` / ``.jsonl`` / ``.json`` / ``.parquet`` file, or a directory of one kind;
- anything else: a Hugging Face hub dataset id, optionally ``id:config``, streamed;
- any of these followed by ``?split=...&column=...&shuffle_seed=...`` (overrides the kwargs).

A document's ``doc_id`` is its index in the source's canonical (unshuffled) order, so it is the
same whatever the shuffle seed. Records whose text is empty or only whitespace are skipped (their
index is simply never used as a doc id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from interp.data import hf_sources, stdlib_docs

BUILTINS: dict[str, Callable[[], Iterator[str]]] = {
    stdlib_docs.NAME: stdlib_docs.iter_texts,
    stdlib_docs.SITE_NAME: stdlib_docs.iter_site_texts,
}
SPEC_OPTIONS = ("split", "column", "shuffle_seed")
ACCEPTED_FORMS = (
    "Accepted forms: 'builtin:<name>' (" + ", ".join(f"'builtin:{n}'" for n in BUILTINS) + "); "
    "a local .txt/.jsonl/.json/.parquet file or a directory of such files; a Hugging Face hub "
    "dataset id 'name' or 'name:config'; any of these followed by '?split=...&column=...'."
)


@dataclass(frozen=True)
class Document:
    """One document: its index in the source's canonical order and its text."""

    doc_id: int
    text: str


class TextSource:
    """A re-iterable, deterministic stream of ``Document``s described by ``spec``."""

    def __init__(
        self,
        spec: str,
        rows: Callable[[], Iterator[tuple[int, Any]]],
        *,
        split: str,
        column: str,
        shuffle_seed: int | None,
    ) -> None:
        self.spec = spec
        self.split = split
        self.column = column
        self.shuffle_seed = shuffle_seed
        self._rows = rows

    def __iter__(self) -> Iterator[Document]:
        return documents(self.spec, self.column, self._rows())

    def __repr__(self) -> str:
        return (
            f"TextSource({self.spec!r}, split={self.split!r}, column={self.column!r}, shuffle_seed={self.shuffle_seed})"
        )


def load_text(spec: str, *, split: str = "train", column: str = "text", shuffle_seed: int | None = None) -> TextSource:
    """Open the text source ``spec`` (builtin name, local path or hub id; see module docstring).

    Query options in the spec (``?split=validation&column=content``) override the keywords.
    With ``shuffle_seed`` the documents come in a seeded permutation (for streamed hub datasets,
    ``datasets``' buffer shuffle); doc ids stay those of the unshuffled order.
    """
    base, opts = parse_spec(spec)
    split = opts.get("split", split)
    column = opts.get("column", column)
    shuffle_seed = opts.get("shuffle_seed", shuffle_seed)
    rows = _rows_factory(spec, base, split, column, shuffle_seed)
    return TextSource(spec, rows, split=split, column=column, shuffle_seed=shuffle_seed)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``'base?key=value&...'`` into the base and its (validated) options."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a text source spec must be a non-empty string, got {spec!r}. " + ACCEPTED_FORMS)
    if "?" not in spec or Path(spec).expanduser().exists():
        return spec, {}
    base, _, query = spec.partition("?")
    opts: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SPEC_OPTIONS:
            raise ValueError(f"unknown option {key!r} in spec {spec!r}: valid are {SPEC_OPTIONS}")
        if not value:
            raise ValueError(f"option {key!r} in spec {spec!r} has no value")
        opts[key] = value
    if "shuffle_seed" in opts:
        try:
            opts["shuffle_seed"] = int(opts["shuffle_seed"])
        except ValueError:
            raise ValueError(f"shuffle_seed in spec {spec!r} must be an integer") from None
    return base, opts


def _rows_factory(
    spec: str, base: str, split: str, column: str, seed: int | None
) -> Callable[[], Iterator[tuple[int, Any]]]:
    """Resolve ``base`` eagerly (so errors surface now) and return a fresh-iterator factory."""
    if base.startswith("builtin:"):
        texts = _builtin(base.removeprefix("builtin:"))
        keep = _builtin_split(split)
        return lambda: _shuffled(_kept(texts(), keep), seed)
    path = Path(base).expanduser()
    if path.exists():
        ds = hf_sources.load_local(spec, path, split, column)
        return lambda: hf_sources.iter_local(ds, column, seed)
    if _looks_local(base):
        raise FileNotFoundError(f"text source not found: no file or directory at {str(path)!r}. " + ACCEPTED_FORMS)
    ds = hf_sources.load_hub(spec, base, split, column, ACCEPTED_FORMS)
    return lambda: hf_sources.iter_hub(spec, ds, column, seed)


BUILTIN_SPLITS = ("train", "test", "all")


def _kept(texts: Iterator[str], keep: Callable[[int], bool]) -> Iterator[tuple[int, str]]:
    """``(doc_id, text)`` of the documents in the split; closing it closes ``texts``."""
    try:
        yield from ((i, t) for i, t in enumerate(texts) if keep(i))
    finally:
        texts.close()


def _builtin_split(split: str) -> Callable[[int], bool]:
    """Built-in corpora hold out every 10th document (doc_id % 10 == 9) as the ``test`` split."""
    if split not in BUILTIN_SPLITS:
        raise ValueError(f"built-in corpora have splits {BUILTIN_SPLITS}, not {split!r}")
    if split == "all":
        return lambda i: True
    return (lambda i: i % 10 == 9) if split == "test" else (lambda i: i % 10 != 9)


def _builtin(name: str) -> Callable[[], Iterator[str]]:
    if name not in BUILTINS:
        valid = ", ".join(f"'builtin:{n}'" for n in BUILTINS)
        raise ValueError(f"unknown built-in corpus 'builtin:{name}': valid ones are {valid}")
    return BUILTINS[name]


def _looks_local(base: str) -> bool:
    """True when ``base`` is clearly meant as a path (so a miss is a missing file, not a hub id)."""
    return base.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(base).suffix.lower() in hf_sources.BUILDERS


def _shuffled(rows: Iterator[tuple[int, Any]], seed: int | None) -> Iterator[tuple[int, Any]]:
    """Rows unchanged, or all of them in a seeded permutation."""
    if seed is None:
        return rows
    items = list(rows)
    return iter([items[i] for i in np.random.default_rng(seed).permutation(len(items))])


def documents(spec: str, column: str, rows: Iterable[tuple[int, Any]]) -> Iterator[Document]:
    """Turn ``(doc_id, value)`` pairs into Documents, skipping empty and whitespace-only text.

    Stopping early closes ``rows`` at once (not at garbage collection), so lazily built caches
    clean up their temporary files deterministically."""
    try:
        for doc_id, value in rows:
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValueError(
                    f"column {column!r} of {spec!r} holds {type(value).__name__} values, "
                    f"not text: pass column=... naming a text column"
                )
            if value.strip():
                yield Document(int(doc_id), value)
    finally:
        getattr(rows, "close", lambda: None)()
