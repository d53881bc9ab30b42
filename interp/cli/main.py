"""The ``interp`` command: ``interp COMMAND [CONFIG.yaml] [key=value ...] [--help] [--debug]``.

Each command is one module in ``interp.cli`` with a frozen ``Config`` dataclass and ``run(cfg)``;
``COMMANDS`` maps its name to the module. A module that defines its own ``COMMANDS`` is a group
(``interp bench NAME``). Optionally a module defines ``extra_configs(raw) -> [dataclass, ...]``:
keys of those classes are accepted too, type-checked against them, and handed to ``run`` in the
``Config``'s internal ``params`` field (``train`` takes the chosen method's fields this way).

This is also the one place that turns bad input into a short message: an ``InterpError`` (or a
missing file, or Ctrl-C) prints one or two lines and exits 2 (130 for Ctrl-C); ``--debug`` or
``INTERP_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

from interp.cli.config import apply_override, build, check_keys, coerce_fields, load_config, user_fields
from interp.cli.help import command_help
from interp.errors import ConfigError, InterpError

COMMANDS = {
    "cache": "interp.cli.cache",
    "train": "interp.cli.train",
    "eval": "interp.cli.eval",
    "browse": "interp.cli.browse",
    "steer": "interp.cli.steer",
    "compare": "interp.cli.compare",
    "bench": "interp.cli.bench",
    "reproduce": "interp.cli.reproduce",
    "demo": "interp.cli.demo",
}
USER_ERRORS = (InterpError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def entry() -> None:
    """The console script."""
    try:
        code = main()
        if code == 0 and "interp.distributed" in sys.modules:  # a torchrun job that ended well
            sys.modules["interp.distributed"].shutdown()
        sys.stdout.flush()
    except BrokenPipeError:  # output piped into a reader that stopped early (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("INTERP_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return dispatch(argv, "interp", COMMANDS)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        text = message(e)
        hint = "" if "\n" in text else "  (--debug: traceback)"
        print(f"error: {text}{hint}", file=sys.stderr)
        return 2


def message(e: BaseException) -> str:
    """A one- or two-line message for ``e``."""
    if isinstance(e, OSError) and not isinstance(e, InterpError) and e.filename is not None:
        return f"{e.strerror or type(e).__name__}: {e.filename}"
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return "\n".join(lines[:2])


def dispatch(argv: list[str], prog: str, commands: dict[str, str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(overview(prog, commands))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown command {name!r} for {prog}; {hint}choose from {', '.join(commands)}")
    module = importlib.import_module(commands[name])
    if hasattr(module, "COMMANDS"):
        return dispatch(rest, f"{prog} {name}", module.COMMANDS)
    return run_command(module, f"{prog} {name}", rest)


def overview(prog: str, commands: dict[str, str]) -> str:
    lines = [f"usage: {prog} COMMAND [CONFIG.yaml] [key=value ...] [--help] [--debug]", "", "commands:"]
    for name, path in commands.items():
        lines.append(f"  {name:<12} {summary(module_doc(path))}")
    lines.append(f"\n`{prog} COMMAND --help` lists a command's keys.")
    return "\n".join(lines)


def module_doc(path: str) -> str | None:
    """The docstring of module ``path``, read without importing it (``--help`` stays instant)."""
    spec = importlib.util.find_spec(path)
    if spec is None or spec.origin is None:
        return None
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text()))


def summary(doc: str | None, width: int = 88) -> str:
    """The first sentence of ``doc``'s first paragraph, without its example command."""
    first = " ".join((doc or "").strip().split("\n\n")[0].split())
    first = re.split(r"\.\s+(?=[A-Z])", first)[0].split(" (``")[0].split(": ``")[0].rstrip(".:")
    return first if len(first) <= width else first[: width - 3] + "..."


def run_command(module: types.ModuleType, prog: str, args: list[str]) -> int:
    wants_help = any(a in ("-h", "--help") for a in args)
    args = [a for a in args if a not in ("-h", "--help")]
    raw = read_args(args, prog)
    extras = list(module.extra_configs(raw)) if hasattr(module, "extra_configs") else []
    if wants_help:
        sections = [(module.Config, "keys")] + [(c, f"keys of {c.__name__}") for c in extras]
        print(command_help(prog, module.__doc__, sections))
        return 0
    cfg = make_config(module.Config, extras, raw, prog)
    return int(module.run(cfg) or 0)


def read_args(args: list[str], prog: str) -> dict[str, Any]:
    """The config mapping of ``[CONFIG.yaml] [key=value ...]``."""
    paths = [a for a in args if "=" not in a]
    if len(paths) > 1:
        raise ConfigError(f"{prog} takes one config file, got {paths}; give the other values as key=value")
    raw = load_config(paths[0]) if paths else {}
    for item in args:
        if "=" in item:
            apply_override(raw, item)
    return raw


def make_config(cls: type, extras: list[type], raw: dict[str, Any], prog: str) -> Any:
    """``cls`` built from its own keys; the other keys checked against ``extras`` and put in ``params``."""
    own = set(user_fields(cls))
    rest = {k: v for k, v in raw.items() if k not in own}
    known = {name for c in extras for name in user_fields(c)}
    check_keys(rest, own | known, prog)
    params: dict[str, Any] = {}
    for c in extras:
        params |= coerce_fields(c, {k: v for k, v in rest.items() if k in user_fields(c) and k not in params})
    cfg = build(cls, {k: v for k, v in raw.items() if k in own}, prog)
    return dataclasses.replace(cfg, params=params) if extras else cfg
