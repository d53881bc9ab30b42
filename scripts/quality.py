"""Feature-quality comparison: ``python scripts/quality.py configs/quality.yaml [key=value ...]``.

Every key of ``interp.evals.quality.QualityConfig`` may appear in the YAML or as an override
(``artifacts=[runs/a,runs/b]``, ``metrics=[core,probing]``, ``explainer_url=...``). Writes
``out/{table.md,table.csv,results.json,quality.png,autointerp.csv,autointerp.parquet,core/}``
and prints the table.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from interp.cli import load_config  # noqa: E402
from interp.decomposers.base import config_from  # noqa: E402
from interp.evals.quality import QualityConfig, compare  # noqa: E402


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = config_from(QualityConfig, load_config(argv[0], argv[1:]))
    compare(cfg)
    print((Path(cfg.out) / "table.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
