"""Config files for the scripts: YAML plus ``key=value`` overrides from the command line.

Values in overrides are parsed as YAML (``k=32`` is an int, ``sites=[a,b]`` a list, ``lr=null``
None). ``include: other.yaml`` merges another file first (paths relative to the including file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    for inc in _as_list(cfg.pop("include", [])):
        cfg = {**load_config(path.parent / inc), **cfg}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        cfg[key.strip()] = yaml.safe_load(value)
    return cfg


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def pick(cfg: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """The entries of ``cfg`` whose keys are in ``keys``."""
    return {k: v for k, v in cfg.items() if k in keys}


def print_table(rows: dict[str, Any], title: str = "") -> None:
    width = max(len(k) for k in rows)
    if title:
        print(f"\n{title}\n" + "-" * max(len(title), width + 14))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
