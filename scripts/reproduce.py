"""Reproduce one paper: ``python scripts/reproduce.py PAPER [--quick] [--out DIR]``.

PAPER is one of topafa, gba, snmf, itda, lib, heads. Writes ``DIR/PAPER.md`` (default
runs/reproduce) with each published number beside ours; see ``interp.evals.reproduce``.
"""

import argparse
from pathlib import Path

from interp.evals.reproduce import PAPERS, run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paper", choices=sorted(PAPERS))
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a reproduction")
    ap.add_argument("--out", default="runs/reproduce")
    args = ap.parse_args()
    print(run(args.paper, args.quick, Path(args.out)))
