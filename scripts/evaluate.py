"""Evaluate an artifact: ``python scripts/evaluate.py RUN_DIR [key=value ...]``.

Keys: model, site (default: those recorded in the artifact), text, n_tokens, seq_len, batch_size.
Prints the metrics and writes them to RUN_DIR/eval.json.
"""

import sys
from pathlib import Path

import yaml

from interp._io import write_json_atomic
from interp.cli import print_table
from interp.evals.reconstruction import evaluate


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    run = Path(argv[0])
    kw = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in argv[1:])}
    kw.setdefault("text_spec", kw.pop("text", "builtin:stdlib-docs?split=test"))
    metrics = evaluate(str(run), **kw)
    write_json_atomic(run / "eval.json", metrics)
    print_table(metrics, f"reconstruction metrics of {run}")


if __name__ == "__main__":
    main(sys.argv[1:])
