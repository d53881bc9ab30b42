"""The command line (``interp COMMAND ...``, see ``interp.cli.main``) and the helpers its commands
share: ``load_config`` (YAML + ``key=value`` overrides), ``pick`` and ``print_table``."""

from __future__ import annotations

from typing import Any

from interp.cli.config import load_config, pick

__all__ = ["load_config", "pick", "print_table"]


def print_table(rows: dict[str, Any], title: str = "") -> None:
    """Print ``rows`` as an aligned two-column table (floats to 4 significant digits)."""
    width = max(len(k) for k in rows)
    if title:
        print(f"\n{title}\n" + "-" * max(len(title), width + 14))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
