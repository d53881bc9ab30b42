"""The built-in corpora made of Python documentation, so nothing needs the network.

``builtin:stdlib-docs``: the standard library's own documentation. Documents, in a fixed order:
first the topics of ``pydoc_data.topics`` (sorted by key), then one document per public stdlib
module, built from the docstrings (module, classes, functions) found by parsing its *source*
with ``ast`` (modules are never imported: some have side effects). About 1.8 M characters
(~0.45 M SmolLM2 tokens).

``builtin:site-docs``: the same extraction over the installed third-party packages
(``site-packages``: torch, transformers, numpy, ...), for runs that need more than the stdlib
holds (tens of millions of characters in interp's own environment). Its content depends on what
is installed, so its cache file is keyed by a hash of the installed distributions and versions.

Parsing takes ~10 s (stdlib) to minutes (site-packages), so a corpus's document list is cached as
JSON lines (``{"text": ...}`` per line) at ``$INTERP_CACHE/corpora/<name>-py{major}.{minor}[-hash].jsonl``
(default ``~/.cache/interp``). The first iteration generates documents lazily and writes the
cache file atomically only when it ran to the end; a consumer that stops early (a small token
request) therefore only pays for the documents it read.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from interp._io import atomic_file

NAME = "stdlib-docs"
SITE_NAME = "site-docs"
MIN_DOCSTRING_CHARS = 40
SKIP_NAMES = {
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "turtledemo",
    "ensurepip",
    "tkinter",
    "pydoc_data",
    "__pycache__",
}


def cache_path(name: str = NAME) -> Path:
    """Where the document list of corpus ``name`` is cached for this Python (and, for site-docs,
    this set of installed distributions)."""
    root = Path(os.environ.get("INTERP_CACHE", "~/.cache/interp")).expanduser()
    major, minor = sys.version_info[:2]
    suffix = f"-{_installed_hash()}" if name == SITE_NAME else ""
    return root / "corpora" / f"{name}-py{major}.{minor}{suffix}.jsonl"


def iter_texts() -> Iterator[str]:
    """Yield the stdlib corpus documents in canonical order (from the cache when it exists)."""
    yield from _cached(cache_path(NAME), _generate)


def iter_site_texts() -> Iterator[str]:
    """Yield the site-packages corpus documents in canonical order (cached like the stdlib's)."""
    yield from _cached(cache_path(SITE_NAME), _generate_site)


def _cached(path: Path, generate) -> Iterator[str]:
    if path.is_file():
        yield from _read_cache(path)
    else:
        yield from _build_and_cache(path, generate)


def _installed_hash() -> str:
    from importlib import metadata

    names = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def _read_cache(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def _build_and_cache(path: Path, generate) -> Iterator[str]:
    """Generate the documents, writing them to a temp file that replaces ``path`` at the end."""
    with atomic_file(path) as f:
        for text in generate():
            f.write(json.dumps({"text": text}) + "\n")
            yield text


def _generate() -> Iterator[str]:
    yield from _topic_texts()
    yield from _module_docs(Path(sysconfig.get_paths()["stdlib"]))


def _generate_site() -> Iterator[str]:
    """One document per public module of the installed packages (sorted by path)."""
    yield from _module_docs(Path(sysconfig.get_paths()["purelib"]))


def _module_docs(root: Path) -> Iterator[str]:
    for file in _module_files(root):
        text = _module_text(file)
        if text:
            yield text


def _topic_texts() -> Iterator[str]:
    from pydoc_data import topics

    for key in sorted(topics.topics):
        text = topics.topics[key]
        if text.strip():
            yield text


def _skipped(name: str) -> bool:
    return (
        name in SKIP_NAMES
        or name.startswith("test")
        or name.startswith("config-")
        or (name.startswith("_") and name != "__init__.py")
        or name.endswith((".dist-info", ".egg-info"))
    )


def _module_files(root: Path) -> Iterator[Path]:
    """Public stdlib ``.py`` files under ``root``, recursively, in sorted path order."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _skipped(entry.name):
            continue
        if entry.is_dir():
            yield from _module_files(entry)
        elif entry.suffix == ".py" and entry.is_file():
            yield entry


def _module_text(file: Path) -> str:
    """Docstrings (> 40 chars) of a module, its classes and functions, in source order."""
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError, OSError):
        return ""
    docs = [ast.get_docstring(node) for node in _documented_nodes(tree)]
    return "\n\n".join(d for d in docs if d and len(d) > MIN_DOCSTRING_CHARS)


def _documented_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The module, class and function nodes under ``node``, depth first in source order."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _documented_nodes(child)
