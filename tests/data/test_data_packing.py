"""Packing layout, provenance and errors of interp.data.tokenize (byte-level tokenizer)."""

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from interp.data import Document, TokenizedText, tokenize


def reference_pack(docs, tok, seq_len, add_bos=True):
    """Straightforward re-implementation of the packing rule, token by token."""
    bos = tok.bos_token_id
    stream = []  # (token, doc_id, char_start, char_end)
    for i, text in enumerate(docs):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        stream.append((bos, i, -1, -1))
        stream += [(t, i, a, b) for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])]
    rows, pos = [], 0
    while True:
        if add_bos and pos < len(stream) and stream[pos][2] != -1:
            row = [(bos, stream[pos][1], -1, -1)] + stream[pos : pos + seq_len - 1]
            pos += seq_len - 1
        else:
            row = stream[pos : pos + seq_len]
            pos += seq_len
        if len(row) < seq_len:
            return np.asarray(rows, dtype=np.int64).reshape(-1, seq_len, 4)
        rows.append(row)


@pytest.mark.parametrize("add_bos", [True, False])
@pytest.mark.parametrize("seq_len", [5, 8, 16])
def test_matches_reference_packing(docs, byte_tok, seq_len, add_bos):
    out = tokenize(docs, byte_tok, seq_len, add_bos=add_bos)
    ref = reference_pack(docs, byte_tok, seq_len, add_bos)
    got = np.stack([out.tokens, out.doc_ids, out.char_start, out.char_end], axis=-1)
    np.testing.assert_array_equal(got, ref)
    assert len(out) == len(ref) and out.seq_len == seq_len


def test_layout(docs, byte_tok):
    out = tokenize(docs, byte_tok, seq_len=8)
    bos, special = byte_tok.bos_token_id, out.special_mask()
    assert (out.tokens[:, 0] == bos).all() and special[:, 0].all()
    assert not (special[:, 1:] & special[:, :-1]).any(), "two BOS in a row"
    assert (out.tokens[special] == bos).all() and (out.char_end[special] == -1).all()
    # separators inside a row are document boundaries: a document's first character follows
    assert (out.char_start[:, 2:][special[:, 1:-1]] == 0).all() and special[:, 1:].any()
    # and every document's first character (past column 1) follows a separator
    assert special[:, :-1][out.char_start[:, 1:] == 0].all()
    assert set(np.unique(out.doc_ids)) <= set(range(len(docs)))
    assert out.n_tokens == out.tokens.size == len(out) * 8
    for arr in (out.tokens, out.doc_ids, out.char_start, out.char_end):
        assert arr.dtype == np.int64 and arr.shape == (len(out), 8)


def test_document_at_row_start_has_single_bos(byte_tok):
    out = tokenize(["abcdefg", "hijklmn", "op"], byte_tok, seq_len=8)  # sep + 7 fills a row
    assert len(out) == 2
    np.testing.assert_array_equal(out.doc_ids, [[0] * 8, [1] * 8])
    assert out.special_mask().sum() == 2 and out.char_start[1, 1] == 0


def test_row_count_and_partial_row_dropped(docs, byte_tok):
    total = sum(len(d) + 1 for d in docs)
    out = tokenize(docs, byte_tok, seq_len=10, n_tokens=45)
    assert len(out) == math.ceil(45 / 10)
    full = tokenize(docs, byte_tok, seq_len=10)
    assert full.n_tokens <= total + len(full) and full.n_tokens > total - 10
    np.testing.assert_array_equal(full.tokens[:5], out.tokens)


def test_char_offsets_round_trip(docs, byte_tok):
    out = tokenize(docs, byte_tok, seq_len=12)
    for tok, doc, a, b in zip(out.tokens.ravel(), out.doc_ids.ravel(), out.char_start.ravel(), out.char_end.ravel()):
        if a == -1:
            continue
        assert byte_tok.decode([int(tok)]) == docs[doc][a:b]


def test_bos_doc_id_is_following_document(docs, byte_tok):
    out = tokenize(docs, byte_tok, seq_len=8)
    flat_ids, special = out.doc_ids.ravel(), out.special_mask().ravel()
    idx = np.flatnonzero(special[:-1])
    np.testing.assert_array_equal(flat_ids[idx], flat_ids[idx + 1])


def test_document_items_keep_their_ids(byte_tok):
    items = [Document(10, "hello there"), Document(3, "general kenobi")]
    out = tokenize(items, byte_tok, seq_len=6)
    assert set(np.unique(out.doc_ids)) == {3, 10}
    assert out.doc_ids[0, 0] == 10


def test_deterministic_and_batching_invariant(docs, byte_tok):
    a = tokenize(docs * 3, byte_tok, seq_len=7)
    b = tokenize(docs * 3, byte_tok, seq_len=7, batch_docs=1)
    for name in ("tokens", "doc_ids", "char_start", "char_end"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_stops_reading_when_enough_rows(byte_tok):
    seen = []

    def gen():
        for i in range(10_000):
            seen.append(i)
            yield f"document number {i} " * 3

    out = tokenize(gen(), byte_tok, seq_len=16, n_tokens=64)
    assert len(out) == 4 and len(seen) < 100


def test_warns_when_source_runs_out(docs, byte_tok):
    with pytest.warns(UserWarning, match="requested"):
        out = tokenize(docs, byte_tok, seq_len=8, n_tokens=10_000)
    assert isinstance(out, TokenizedText) and 0 < len(out) < 10_000 // 8


def test_no_warning_when_enough(docs, byte_tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(docs, byte_tok, seq_len=8, n_tokens=16)


def test_eos_fallback_and_missing_specials(docs, byte_tok):
    wrapper = type(
        "EosOnly",
        (),
        {
            "bos_token_id": None,
            "eos_token_id": byte_tok.eos_token_id,
            "__call__": lambda self, *a, **k: byte_tok(*a, **k),
        },
    )()
    out = tokenize(docs, wrapper, seq_len=8)
    assert (out.tokens[:, 0] == byte_tok.eos_token_id).all() and out.bos_id == byte_tok.eos_token_id
    neither = SimpleNamespace(bos_token_id=None, eos_token_id=None)
    with pytest.raises(ValueError, match="neither a BOS nor an EOS"):
        tokenize(docs, neither, seq_len=8)


@pytest.mark.parametrize("corpus", [[], ["", "   ", "\n\n"]])
def test_empty_corpus(byte_tok, corpus):
    with pytest.raises(ValueError, match="is empty"):
        tokenize(corpus, byte_tok, seq_len=8)


def test_corpus_shorter_than_a_row(byte_tok):
    with pytest.raises(ValueError, match="shorter than one sequence of 64"):
        tokenize(["tiny"], byte_tok, seq_len=64)


def test_bad_arguments(docs, byte_tok):
    with pytest.raises(ValueError, match="seq_len"):
        tokenize(docs, byte_tok, seq_len=1)
    with pytest.raises(ValueError, match="n_tokens"):
        tokenize(docs, byte_tok, seq_len=8, n_tokens=0)
    with pytest.raises(TypeError, match="str or Document"):
        tokenize([1, 2], byte_tok, seq_len=8)
