"""Fixtures for the data tests: offline hub, the byte-level tokenizer, small corpora."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def byte_tok():
    from interp.models.tiny import byte_tokenizer

    return byte_tokenizer()


@pytest.fixture
def docs():
    """ASCII documents of varied lengths (some shorter, some longer than a row)."""
    return [
        "The quick brown fox jumps over the lazy dog.",
        "Short.",
        "A",
        "Packing keeps the provenance of every token: its document and its characters.",
        "seven!!",
        "x" * 40,
        "Last document, which ends the stream.",
    ]
