"""Character offsets with the real SmolLM2 tokenizer (byte-level BPE with merges)."""

import numpy as np
import pytest

from interp.data import tokenize

DOCS = [
    "The standard library's documentation is a fine corpus of English prose.",
    "  Leading spaces, double  spaces, tabs\tand\nnewlines:\n\n  all must map back.",
    "def f(x):\n    return x ** 2  # code, too",
    "Numbers 12345 and punctuation!?... (parentheses) [brackets] {braces}",
]


@pytest.fixture(scope="module")
def smol_tok():
    from transformers import AutoTokenizer

    from interp.models.loader import _resolve

    try:
        path = _resolve("smollm2-135m")[0]
    except Exception as err:  # the package with the weights is not installed
        pytest.skip(f"smollm2-135m unavailable: {err}")
    return AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
def test_offsets_reproduce_text(smol_tok):
    out = tokenize(DOCS * 2, smol_tok, seq_len=16)
    special = out.special_mask()
    assert (out.tokens[:, 0] == smol_tok.bos_token_id).all()
    spans: dict[int, list[str]] = {}
    for tok, doc, a, b, sp in zip(
        out.tokens.ravel(), out.doc_ids.ravel(), out.char_start.ravel(), out.char_end.ravel(), special.ravel()
    ):
        if sp:
            continue
        text = (DOCS * 2)[doc][a:b]
        assert text == smol_tok.decode([int(tok)], clean_up_tokenization_spaces=False)
        spans.setdefault(int(doc), []).append(text)
    for doc, parts in spans.items():
        if doc < len(DOCS):  # the first copy is fully inside the packed rows
            assert "".join(parts) == DOCS[doc]
    assert np.unique(out.doc_ids).size >= len(DOCS)
