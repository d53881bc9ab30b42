"""The built-in corpus builtin:stdlib-docs and its atomic, lazily built cache."""

import json

import pytest
from pydoc_data import topics

from interp.data import load_text, stdlib_docs


def test_stdlib_docs_corpus():
    """The real corpus (builds the shared cache on first use, ~10 s; later runs read it)."""
    src = load_text("builtin:stdlib-docs?split=all")
    docs = list(src)
    first_key = sorted(topics.topics)[0]
    assert docs[0].doc_id == 0 and docs[0].text == topics.topics[first_key]
    assert sum(len(d.text) for d in docs) > 1_000_000
    assert [d.doc_id for d in docs] == list(range(len(docs)))
    assert any(d.text.startswith("JSON (JavaScript Object Notation)") for d in docs)  # json/
    assert stdlib_docs.cache_path().is_file()
    shuffled = list(load_text("builtin:stdlib-docs?split=all", shuffle_seed=0))
    assert shuffled != docs and sorted(shuffled, key=lambda d: d.doc_id) == docs
    train, test = list(load_text("builtin:stdlib-docs")), list(load_text("builtin:stdlib-docs?split=test"))
    assert {d.doc_id for d in test} == {i for i in range(len(docs)) if i % 10 == 9}
    assert sorted(train + test, key=lambda d: d.doc_id) == docs


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    monkeypatch.setattr(stdlib_docs, "_generate", lambda: iter(["alpha doc", "beta doc", "gamma"]))
    return tmp_path / "corpora"


def test_cache_written_only_when_complete(fake_corpus, monkeypatch):
    src = load_text("builtin:stdlib-docs")
    it = iter(src)
    assert next(it).text == "alpha doc"
    it.close()  # an early stop leaves neither a cache nor a temp file
    assert list(fake_corpus.iterdir()) == []
    assert [d.text for d in src] == ["alpha doc", "beta doc", "gamma"]
    (path,) = fake_corpus.iterdir()
    assert path == stdlib_docs.cache_path() and path.name.startswith("stdlib-docs-py3.")
    assert [json.loads(line)["text"] for line in path.read_text().splitlines()][2] == "gamma"

    def boom():
        raise AssertionError("should read the cache")

    monkeypatch.setattr(stdlib_docs, "_generate", boom)
    assert [d.doc_id for d in src] == [0, 1, 2]


def test_module_text_skips_private_and_tests(tmp_path):
    root = tmp_path / "lib"
    for rel in [
        "a.py",
        "_private.py",
        "test_x.py",
        "tests/b.py",
        "pkg/__init__.py",
        "pkg/_impl.py",
        "idlelib/c.py",
        "config-3.11-x/d.py",
        "pkg/bad.py",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text('"""A module docstring that is comfortably longer than forty."""\n')
    (root / "pkg/bad.py").write_text("def (:\n")
    found = [p.relative_to(root).as_posix() for p in stdlib_docs._module_files(root)]
    assert found == ["a.py", "pkg/__init__.py", "pkg/bad.py"]
    assert stdlib_docs._module_text(root / "pkg/bad.py") == ""
    (root / "m.py").write_text(
        '"""Short."""\nclass C:\n    """Class docstring long enough to keep, over forty chars."""\n'
        '    def f(self):\n        """Method docstring, also long enough to be kept here."""\n'
    )
    assert stdlib_docs._module_text(root / "m.py") == (
        "Class docstring long enough to keep, over forty chars.\n\nMethod docstring, also long enough to be kept here."
    )


def test_site_docs_corpus(tmp_path, monkeypatch):
    """site-docs walks the installed packages (here a fake purelib) and caches per install set."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    purelib = tmp_path / "site"
    for rel in ["zpkg/__init__.py", "apkg/mod.py", "apkg/_private.py", "apkg-1.0.dist-info/x.py"]:
        (purelib / rel).parent.mkdir(parents=True, exist_ok=True)
        (purelib / rel).write_text(f'"""Docstring of {rel}, comfortably longer than forty characters."""\n')
    monkeypatch.setattr(stdlib_docs.sysconfig, "get_paths", lambda: {"purelib": str(purelib)})
    docs = [d.text for d in load_text("builtin:site-docs?split=all")]
    assert docs == [
        f"Docstring of {rel}, comfortably longer than forty characters." for rel in ["apkg/mod.py", "zpkg/__init__.py"]
    ]
    path = stdlib_docs.cache_path(stdlib_docs.SITE_NAME)
    assert path.is_file() and path.name.startswith("site-docs-py3.") and len(path.stem.rsplit("-", 1)[1]) == 12
