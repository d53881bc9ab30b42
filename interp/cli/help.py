"""``--help`` text: a command's docstring and one line per config field (type, default, its doc).

A field's doc is its ``metadata["doc"]`` (``doc_field``), the string literal under it in the class
body or, failing that, the comment at the end of its line, so config dataclasses documented any of
these ways show their docs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from functools import cache
from typing import Any

from interp.cli.config import user_fields


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: one-line doc}`` for dataclass ``cls`` and its bases (a subclass's doc wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs |= _class_docs(klass)
    # fields declared with ``interp.decomposers.base.doc_field`` carry their doc in metadata
    return docs | {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if f.metadata.get("doc")}


def _class_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    body = typing.cast(ast.ClassDef, ast.parse(source).body[0]).body
    docs = {}
    for stmt, nxt in zip(body, [*body[1:], None]):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
        elif stmt.end_lineno in comments or stmt.lineno in comments:
            docs[stmt.target.id] = comments.get(stmt.end_lineno or stmt.lineno) or comments[stmt.lineno]
    return docs


def describe(cls: type, title: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """One line per user-settable field of ``cls`` not in ``skip``: ``name (type, default): doc``."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    lines = [f"{title}:"]
    for name, f in user_fields(cls).items():
        if name in skip:
            continue
        lines.append(f"  {name} ({_type_name(hints[name])}{_default(f)})" + (f": {docs[name]}" if name in docs else ""))
    return lines


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f", default {f.default!r}"
    if f.default_factory is not dataclasses.MISSING:
        return f", default {f.default_factory()!r}"
    return ", required"


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def command_help(command: str, doc: str | None, sections: list[tuple[type, str]]) -> str:
    """The full ``--help`` text: usage, the command's docstring, its keys."""
    lines = [f"usage: {command} [CONFIG.yaml] [key=value ...] [--debug]", "", (doc or "").strip(), ""]
    shown: frozenset[str] = frozenset()
    for cls, title in sections:
        lines += [*describe(cls, title, shown), ""]
        shown |= frozenset(user_fields(cls))
    lines.append("Values are YAML (k=32, sites=[a,b], lr=null); a.b=1 sets b inside mapping a; later ones win.")
    return "\n".join(lines)
