"""Text sources of interp.data: local files, spec options, shuffling and input errors."""

import json
from dataclasses import FrozenInstanceError

import pytest

from interp.data import Document, TextSource, load_text, parse_spec, tokenize


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def jsonl(tmp_path):
    rows = [{"content": f"document {i} " * 3, "n": i} for i in range(40)]
    rows[5]["content"] = ""  # skipped, its id is never used
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_txt_paragraphs(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("First paragraph,\nstill first.\n\nSecond one.\n\n\n\nThird.\n")
    src = load_text(str(path))
    docs = list(src)
    assert isinstance(src, TextSource) and src.spec == str(path)
    assert [d.doc_id for d in docs] == [0, 1, 2]
    assert docs[0] == Document(0, "First paragraph,\nstill first.")
    assert "Third." in docs[2].text and list(src) == docs  # re-iterable
    with pytest.raises(FrozenInstanceError):
        docs[0].text = "changed"


def test_jsonl_column_and_query_options(jsonl):
    src = load_text(f"{jsonl}?split=validation&column=content", column="ignored")
    docs = list(src)
    assert (src.split, src.column) == ("validation", "content")
    assert len(docs) == 39 and 5 not in {d.doc_id for d in docs}
    assert docs[0] == Document(0, "document 0 " * 3)


def test_parse_spec():
    assert parse_spec("wikitext:wikitext-2-raw-v1") == ("wikitext:wikitext-2-raw-v1", {})
    assert parse_spec("a/b?split=validation&column=content&shuffle_seed=3") == (
        "a/b",
        {"split": "validation", "column": "content", "shuffle_seed": 3},
    )
    with pytest.raises(ValueError, match="unknown option 'colum'"):
        parse_spec("a/b?colum=x")
    with pytest.raises(ValueError, match="integer"):
        parse_spec("a/b?shuffle_seed=x")


def test_parquet_and_directory(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["b one", "b two"]}), folder / "b.parquet")
    pq.write_table(pa.table({"text": ["a one"]}), folder / "a.parquet")
    assert [d.text for d in load_text(str(folder / "b.parquet"))] == ["b one", "b two"]
    assert [(d.doc_id, d.text) for d in load_text(str(folder))] == [(0, "a one"), (1, "b one"), (2, "b two")]
    (folder / "c.txt").write_text("mixed")
    with pytest.raises(ValueError, match="mixes file kinds"):
        load_text(str(folder))


def test_seeded_shuffle(jsonl):
    canonical = {d.doc_id: d.text for d in load_text(str(jsonl), column="content")}
    a1 = list(load_text(str(jsonl), column="content", shuffle_seed=1))
    a2 = list(load_text(f"{jsonl}?column=content&shuffle_seed=1"))
    b = list(load_text(str(jsonl), column="content", shuffle_seed=2))
    assert a1 == a2 and a1 != b
    assert [d.doc_id for d in a1] != sorted(canonical)
    assert all(canonical[d.doc_id] == d.text for d in a1 + b)
    assert {d.doc_id for d in b} == set(canonical)


def test_tokenize_spec_string(jsonl, byte_tok):
    out = tokenize(f"{jsonl}?column=content", byte_tok, seq_len=16, n_tokens=64)
    assert out.spec == f"{jsonl}?column=content" and len(out) == 4


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_text(str(missing))
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        load_text("./not/here")


def test_unknown_builtin():
    with pytest.raises(ValueError, match="builtin:stdlib-docs"):
        load_text("builtin:wikipedia")


def test_missing_column(jsonl):
    with pytest.raises(ValueError, match=r"'text' not found.*\['content', 'n'\]"):
        load_text(str(jsonl))
    with pytest.raises(ValueError, match="int values, not text"):
        list(load_text(str(jsonl), column="n"))


def test_empty_corpus(tmp_path, byte_tok):
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    with pytest.raises(ValueError, match="is empty"):
        load_text(str(empty))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n\n")
    with pytest.raises(ValueError, match="is empty"):
        tokenize(str(blank), byte_tok, seq_len=8)


def test_offline_hub_id():
    with pytest.raises(ValueError) as err:
        load_text("someone/no-such-dataset:config")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "hub" in msg and "Accepted forms" in msg
    assert "builtin:stdlib-docs" in msg


def test_streamed_rows_keep_canonical_ids(tmp_path):
    """The hub code path (streaming + buffer shuffle), exercised on local files offline."""
    import datasets

    from interp.data import hf_sources

    files = [str(write_jsonl(tmp_path / f"{k}.jsonl", [{"text": f"{k}{i}"} for i in range(30)])) for k in "ab"]
    ds = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    plain = list(hf_sources.iter_hub("s", ds, "text", None))
    assert plain == [(i, f"{'ab'[i // 30]}{i % 30}") for i in range(60)]
    s1 = list(hf_sources.iter_hub("s", ds, "text", 1))
    assert s1 == list(hf_sources.iter_hub("s", ds, "text", 1)) and s1 != plain
    assert sorted(s1) == plain and s1 != list(hf_sources.iter_hub("s", ds, "text", 2))
    untyped = datasets.IterableDataset.from_generator(lambda: iter([{"body": "x"}]))
    with pytest.raises(ValueError, match=r"'text' not found.*\['body'\]"):
        list(hf_sources.iter_hub("s", untyped, "text", None))
