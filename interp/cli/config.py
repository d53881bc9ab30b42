"""Config files for the command line: YAML plus ``key=value`` overrides, checked against a dataclass.

Values in overrides are parsed as YAML (``k=32`` is an int, ``sites=[a,b]`` a list, ``lr=null``
None); ``a.b=1`` sets key ``b`` inside the mapping ``a``. ``include: other.yaml`` (or a list) merges
other files first, paths relative to the including file. ``build`` turns the merged mapping into a
frozen config dataclass: unknown keys are errors that name the closest known key, and values are
coerced to the field's type where that is unambiguous (``1e6`` for an ``int`` field is 1000000).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from interp.errors import ConfigError, MissingFileError

_MISSING = dataclasses.MISSING


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (its includes merged first), then ``overrides`` applied."""
    cfg = _read(Path(path), ())
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def _read(path: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"config file not found: {path}")
    here = path.resolve()
    if here in stack:
        chain = " -> ".join(str(p) for p in (*stack, here))
        raise ConfigError(f"{path}: the config includes itself ({chain}); remove the cycle")
    raw = path.read_bytes()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a YAML config (key: value lines)") from None
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}{_where(e)}: not valid YAML: {_problem(e)}") from None
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (key: value lines), got a {type(cfg).__name__}")
    merged: dict[str, Any] = {}
    for inc in _as_list(cfg.pop("include", [])):
        merged |= _read(path.parent / str(inc), (*stack, here))
    return merged | cfg


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _problem(e: yaml.YAMLError) -> str:
    return " ".join(str(getattr(e, "problem", None) or e).split())


def apply_override(cfg: dict[str, Any], item: str) -> None:
    """Set ``key=value`` (``a.b=value`` inside mapping ``a``) in ``cfg``, the value parsed as YAML."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"argument {item!r} must look like key=value (or be the config file's path)")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {_problem(e)}") from None
    *parents, leaf = key.strip().split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
    node[leaf] = parsed


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def pick(cfg: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """The entries of ``cfg`` whose keys are in ``keys``."""
    return {k: v for k, v in cfg.items() if k in keys}


# -- building a config dataclass ------------------------------------------------------------------


def user_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of dataclass ``cls`` a user may set (those marked ``metadata={"internal": True}``
    are filled by the command itself)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}


def check_keys(raw: dict[str, Any], known: set[str], command: str, listing: str | None = None) -> None:
    """Raise for the first key of ``raw`` not in ``known``, naming the closest known key and where
    the keys are listed (default: the command's --help)."""
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown key {key!r} for {command}; {hint}({listing or f'`{command} --help` lists the keys'})"
            )


def coerce_fields(cls: Any, raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``raw`` (keys of ``cls``: a dataclass's fields or a function's parameters) with every value
    coerced to its declared type; errors name the key as ``prefix + key``."""
    hints = typing.get_type_hints(cls)
    return {k: coerce(v, hints[k], prefix + k) for k, v in raw.items()}


def build(cls: type, raw: dict[str, Any], command: str) -> Any:
    """An instance of config dataclass ``cls`` from ``raw``: unknown keys, missing required keys and
    values of the wrong type are ``ConfigError``s."""
    fields = user_fields(cls)
    check_keys(raw, set(fields), command)
    missing = [n for n, f in fields.items() if n not in raw and f.default is _MISSING and f.default_factory is _MISSING]
    if missing:
        raise ConfigError(f"{command} needs {', '.join(f'{m}=...' for m in missing)} (in the YAML or as key=value)")
    try:
        return cls(**coerce_fields(cls, raw))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{command}: {e}") from None


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, tuple/list, dict, Optional, unions of those)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {_name(tp)}")
    if origin in (tuple, list) or tp in (tuple, list):
        items = value if isinstance(value, (list, tuple)) else [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in items)
        if origin is tuple and args:
            if len(items) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(v, a, key) for v, a in zip(items, args))
        items = [coerce(v, args[0], key) for v in items] if args else list(items)
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (key: value), got {value!r}")
        return value
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if tp is float:
        number = _number(value)
        if number is not None:
            return float(number)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _number(value: Any) -> int | float | None:
    """``value`` as a number: ints and floats as they are, strings such as ``1e6`` parsed
    (PyYAML reads ``1e6`` as a string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
