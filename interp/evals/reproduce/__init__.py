"""One reproduction per paper: ``run(paper, quick, out)`` writes a markdown report.

Each paper's function measures our implementation in the paper's setting where we can run it (or
the closest one we can, said so in the report) and tabulates every published number beside ours,
with the settings, seeds, wall time and a one-line reading. ``quick=True`` runs a small version of
the same measurement (seconds; all six together are meant for CI, where the numbers are a smoke
test, not a reproduction); ``quick=False`` is the variant to quote.

The functions live here, in ``interp.evals``, rather than beside each method: they use the
evaluation code (synthetic recovery, reconstruction), and the pipeline's layering lets only
``interp.evals`` import it.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from interp.errors import ConfigError
from interp.evals.reproduce.report import Report

PAPERS = {"topafa": "sae", "gba": "sae", "snmf": "snmf", "itda": "itda", "lib": "lib", "heads": "heads"}


def run(paper: str, quick: bool, out: Path) -> Path:
    """Run one paper's reproduction and write ``out/<paper>.md``; returns that path."""
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {paper!r}; choose one of {sorted(PAPERS)}")
    module = importlib.import_module(f"interp.evals.reproduce.{PAPERS[paper]}")
    fn = getattr(module, paper)
    extra = {"out": Path(out)} if "out" in inspect.signature(fn).parameters else {}  # where it caches models
    report: Report = fn(quick, **extra)
    return report.write(Path(out) / f"{paper}.md")


__all__ = ["PAPERS", "Report", "run"]
