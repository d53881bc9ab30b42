"""Feature-quality comparison: ``interp reproduce quality configs/experiments/quality.yaml``.

Every key of ``interp.evals.quality.QualityConfig`` may appear in the YAML or as an override
(``artifacts=[runs/a,runs/b]``, ``metrics=[core,probing]``, ``explainer_url=...``). Writes
``out/{table.md,table.csv,results.json,quality.png,autointerp.csv,autointerp.parquet,core/}``
and prints the table.
"""

from pathlib import Path

from interp.evals.quality import QualityConfig as Config
from interp.evals.quality import compare

__all__ = ["Config", "run"]


def run(cfg: Config) -> None:
    compare(cfg)
    print((Path(cfg.out) / "table.md").read_text())
