"""One paper's numbers beside ours: ``interp reproduce paper paper=topafa [quick=true]``.

``paper`` is one of topafa, gba, snmf, itda, lib, heads. Writes ``out/PAPER.md``: each published
number beside ours, the settings, seeds, wall time and a one-line reading
(``interp.evals.reproduce``), and prints it. ``quick=true`` runs a small version of the same measurement: a smoke
test, not a reproduction.
"""

from dataclasses import dataclass
from pathlib import Path

from interp.evals.reproduce import run as run_paper


@dataclass(frozen=True)
class Config:
    paper: str
    """Which paper: topafa, gba, snmf, itda, lib or heads."""
    quick: bool = False
    """Small sizes (seconds): a smoke test of the reproduction, not its numbers."""
    out: str = "runs/reproduce"
    """Output folder; the report is out/PAPER.md."""
    threads: int | None = None
    """torch CPU threads (None: torch's default). On a shared 2-core machine 1 is faster: the LIB
    mod-add trainer ran 20 epochs in 25 s with 1 thread and 89 s with 2 at load ~15."""


def run(cfg: Config) -> None:
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    path = run_paper(cfg.paper, cfg.quick, Path(cfg.out))
    print(path.read_text())
    print(f"written to {path}")
