"""Tokenise documents and pack them into fixed-length rows with per-token provenance.

The token stream is, for each document, a separator (the tokenizer's BOS, else its EOS)
followed by the document's tokens. With ``add_bos`` every row starts with BOS and continues
with the next ``seq_len - 1`` stream tokens; when a document starts exactly at a row start, its
separator is that row's BOS (never two BOS in a row). Without ``add_bos`` rows are consecutive
``seq_len`` chunks of the stream. The last incomplete row is dropped, so there is no padding.
Every token keeps the id of its document and its character span ``text[char_start:char_end]``
(``-1, -1`` for BOS/separators, whose doc id is that of the document that follows them).
Spans are the tokenizer's offsets: when a character is split over several byte tokens, each of
them carries that character's span. Documents that tokenize to nothing are skipped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
from jaxtyping import Bool, Int64

from interp.data.sources import Document, TextSource, load_text

PROGRESS_MIN_TOKENS = 100_000
FIRST_BATCH_DOCS = 8  # batches grow from here to batch_docs, so small requests read few docs


@dataclass
class TokenizedText:
    """Packed token rows ``[B, S]`` (B rows of S = seq_len tokens) with provenance per token."""

    tokens: Int64[np.ndarray, "B S"]
    doc_ids: Int64[np.ndarray, "B S"]
    char_start: Int64[np.ndarray, "B S"]
    char_end: Int64[np.ndarray, "B S"]
    seq_len: int
    bos_id: int
    spec: str | None = None  # the source spec when tokenised from a spec/TextSource

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)

    def special_mask(self) -> Bool[np.ndarray, "B S"]:
        """True at BOS/separator tokens (they have no character span)."""
        return self.char_start == -1

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class _Stream:
    """Flat token stream not yet packed into rows (``is_sep`` marks document separators)."""

    tokens: np.ndarray
    doc_ids: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray

    @classmethod
    def empty(cls) -> _Stream:
        return cls(*(np.zeros(0, np.int64) for _ in range(4)))

    def extend(self, parts: list[_Stream]) -> _Stream:
        fields = zip(*((p.tokens, p.doc_ids, p.char_start, p.char_end) for p in [self, *parts]))
        return _Stream(*(np.concatenate(f) for f in fields))

    def drop(self, n: int) -> _Stream:
        return _Stream(self.tokens[n:], self.doc_ids[n:], self.char_start[n:], self.char_end[n:])


def tokenize(
    text: TextSource | str | Iterable[str] | Iterable[Document],
    tokenizer: Any,
    seq_len: int,
    n_tokens: int | None = None,
    *,
    add_bos: bool = True,
    batch_docs: int = 256,
) -> TokenizedText:
    """Tokenise ``text`` and pack it into ``ceil(n_tokens / seq_len)`` rows of ``seq_len`` tokens.

    ``text``: a TextSource, a spec string (passed to ``load_text``), or an iterable of ``str``
    (doc ids 0, 1, 2, ...) or of ``Document``. ``n_tokens=None`` packs the whole source. Reading
    stops as soon as enough rows are filled; a source that runs out first gives fewer rows and a
    warning. Deterministic: the same arguments give identical arrays.
    """
    if seq_len < (2 if add_bos else 1):
        raise ValueError(f"seq_len must be >= {2 if add_bos else 1} (got {seq_len})")
    if n_tokens is not None and n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive or None (got {n_tokens})")
    bos = _separator_id(tokenizer)
    spec = text if isinstance(text, str) else getattr(text, "spec", None)
    docs = load_text(text) if isinstance(text, str) else text
    target = None if n_tokens is None else math.ceil(n_tokens / seq_len)
    progress = _progress(n_tokens, target, seq_len)
    try:
        rows, n_docs = _pack(_as_documents(docs), tokenizer, bos, seq_len, target, add_bos, batch_docs, progress)
    finally:
        progress.close()
    name = repr(spec) if spec else "(given iterable)"
    if n_docs == 0:
        raise ValueError(f"corpus {name} is empty: it holds no non-empty documents")
    if not rows:
        raise ValueError(
            f"corpus {name} is shorter than one sequence of {seq_len} tokens "
            f"({n_docs} non-empty documents): use a larger corpus or a smaller seq_len"
        )
    arrays = [np.concatenate(parts)[:target] for parts in zip(*rows)]
    if target is not None and len(arrays[0]) < target:
        warnings.warn(
            f"corpus {name} ran out: {n_tokens} tokens requested, "
            f"{arrays[0].size} obtained ({len(arrays[0])} rows of {seq_len})",
            stacklevel=2,
        )
    return TokenizedText(*arrays, seq_len=seq_len, bos_id=bos, spec=spec)


def _separator_id(tokenizer: Any) -> int:
    for attr in ("bos_token_id", "eos_token_id"):
        token_id = getattr(tokenizer, attr, None)
        if token_id is not None:
            return int(token_id)
    raise ValueError(
        "the tokenizer has neither a BOS nor an EOS token, so documents cannot be "
        "separated: set tokenizer.bos_token (or eos_token) first"
    )


def _progress(n_tokens: int | None, target: int | None, seq_len: int) -> Any:
    from tqdm.auto import tqdm

    show = n_tokens is None or n_tokens > PROGRESS_MIN_TOKENS
    total = None if target is None else target * seq_len
    return tqdm(total=total, unit="tok", unit_scale=True, desc="tokenize", disable=not show)


def _as_documents(docs: Iterable[Any]) -> Iterator[Document]:
    for i, doc in enumerate(docs):
        if isinstance(doc, str):
            doc = Document(i, doc)
        elif not isinstance(doc, Document):
            raise TypeError(f"tokenize() expects str or Document items, got {type(doc).__name__}")
        if doc.text.strip():
            yield doc


def _batches(docs: Iterator[Document], batch_docs: int) -> Iterator[list[Document]]:
    """Batches of documents, growing geometrically from FIRST_BATCH_DOCS to ``batch_docs``."""
    size = min(FIRST_BATCH_DOCS, batch_docs)
    while batch := list(islice(docs, size)):
        yield batch
        size = min(size * 2, batch_docs)


def _pack(
    docs: Iterator[Document],
    tokenizer: Any,
    bos: int,
    seq_len: int,
    target: int | None,
    add_bos: bool,
    batch_docs: int,
    progress: Any,
) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """Fill rows batch by batch until ``target`` rows exist or the documents run out."""
    stream, rows, n_rows, n_docs = _Stream.empty(), [], 0, 0
    for batch in _batches(docs, batch_docs):
        pieces = _encode(batch, tokenizer, bos)
        n_docs += len(pieces)
        stream = stream.extend(pieces)
        starts, inserted, used = _row_starts(stream.char_start == -1, seq_len, add_bos)
        if len(starts):
            rows.append(_gather(stream, starts, inserted, seq_len, bos))
            n_rows += len(starts)
            progress.update(len(starts) * seq_len)
        stream = stream.drop(used)
        if target is not None and n_rows >= target:
            break
    return rows, n_docs


def _encode(batch: list[Document], tokenizer: Any, sep: int) -> list[_Stream]:
    """One stream piece per document with tokens: separator, then its tokens and offsets."""
    enc = tokenizer([d.text for d in batch], add_special_tokens=False, return_offsets_mapping=True)
    pieces = []
    for doc, ids, offsets in zip(batch, enc["input_ids"], enc["offset_mapping"]):
        if not ids:
            continue
        spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        n = len(ids) + 1
        pieces.append(
            _Stream(
                tokens=np.asarray([sep, *ids], dtype=np.int64),
                doc_ids=np.full(n, doc.doc_id, dtype=np.int64),
                char_start=np.concatenate([[-1], spans[:, 0]]),
                char_end=np.concatenate([[-1], spans[:, 1]]),
            )
        )
    return pieces


def _row_starts(is_sep: np.ndarray, seq_len: int, add_bos: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Stream index where each complete row starts, whether its BOS is inserted, tokens used.

    Separators are told apart by their missing span (``char_start == -1``), not by token id, so
    a document whose text happens to tokenize to the BOS id is not mistaken for a boundary.
    """
    n = len(is_sep)
    if not add_bos:
        n_rows = n // seq_len
        return np.arange(n_rows) * seq_len, np.zeros(n_rows, bool), n_rows * seq_len
    starts, inserted, pos = [], [], 0
    while pos < n:
        own = bool(is_sep[pos])  # a document starts here: its separator is the row's BOS
        step = seq_len if own else seq_len - 1
        if n - pos < step:
            break
        starts.append(pos)
        inserted.append(not own)
        pos += step
    return np.asarray(starts, dtype=np.int64), np.asarray(inserted, dtype=bool), pos


def _gather(
    stream: _Stream, starts: np.ndarray, inserted: np.ndarray, seq_len: int, bos: int
) -> tuple[np.ndarray, ...]:
    """Rows ``[R, S]`` cut from the stream; rows with an inserted BOS shift right by one."""
    idx = starts[:, None] + np.arange(seq_len)[None, :] - inserted[:, None]
    idx = np.clip(idx, 0, None)  # column 0 of inserted rows is overwritten below
    tokens, doc_ids = stream.tokens[idx], stream.doc_ids[idx]
    char_start, char_end = stream.char_start[idx], stream.char_end[idx]
    tokens[inserted, 0] = bos
    doc_ids[inserted, 0] = stream.doc_ids[starts[inserted]]
    char_start[inserted, 0] = -1
    char_end[inserted, 0] = -1
    return tokens, doc_ids, char_start, char_end
