"""Evaluate an artifact spliced into its model on held-out text (``interp eval run=RUN_DIR``).

Prints the reconstruction metrics (FVU, L0, CE-loss recovered, KL, dead fraction) and writes them to
``RUN_DIR/eval.json``. The model and site default to those recorded in the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    run: str
    """The artifact folder (a decomposer saved by interp train)."""
    model: str | None = None
    """Model spec (None: the one recorded in the artifact)."""
    site: str | None = None
    """Hook site (None: the one recorded in the artifact)."""
    text: str = "builtin:stdlib-docs?split=test"
    """Held-out text source."""
    n_tokens: int = 16_384
    """Tokens evaluated."""
    seq_len: int = 128
    """Tokens per context row."""
    batch_size: int = 8
    """Sequences per forward pass."""
    exclude_special: bool = True
    """Leave BOS/separator/pad tokens out of the metrics."""
    dense_threshold: float = 0.1
    """A latent active on more than this fraction of tokens counts as dense."""
    shuffle_seed: int | None = 1
    """Shuffle the held-out documents with this seed (None: source order)."""


def run(cfg: Config) -> None:
    from pathlib import Path

    from interp._io import write_json_atomic
    from interp.cli import print_table
    from interp.evals.reconstruction import evaluate

    metrics = evaluate(
        cfg.run,
        cfg.model,
        cfg.site,
        text_spec=cfg.text,
        n_tokens=cfg.n_tokens,
        seq_len=cfg.seq_len,
        batch_size=cfg.batch_size,
        exclude_special=cfg.exclude_special,
        dense_threshold=cfg.dense_threshold,
        shuffle_seed=cfg.shuffle_seed,
    )
    write_json_atomic(Path(cfg.run) / "eval.json", metrics)
    print_table(metrics, f"reconstruction metrics of {cfg.run}")
