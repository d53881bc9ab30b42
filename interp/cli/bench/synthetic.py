"""Synthetic feature-recovery benchmark (the GBA paper's setting) for every SAE variant.

    interp bench synthetic configs/experiments/bench_synthetic.yaml [key=value ...] [out=DIR]

e.g. ``seeds=[0] train.n_tokens=50000`` (a dotted key sets one field of ``data`` or ``train``).
``lr_sweep=[1e-4,1e-3,1e-2]`` runs every method at each of those learning rates instead of its own
(SAE methods; fitted ones, semi-NMF and ITDA, have no learning rate and run once).

Trains each configured method through the one SAE trainer on planted-feature data for each seed
and prints (and writes to ``out``, default runs/bench_synthetic) the recovery table: FRR at each
tau, mean max cosine, held-out FVU and L0, as the mean over seeds with the worst seed in brackets.
Methods not registered in this build are listed as such.
"""

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

import interp.decomposers  # noqa: F401  (registers every method)
from interp._io import write_atomic, write_json_atomic
from interp.cli.config import check_keys, coerce_fields
from interp.evals.synthetic import benchmark, format_table, make_dataset


@dataclass(frozen=True)
class Config:
    data: dict
    """Planted-feature data: n_samples, n_features, d, sparsity [[fraction, active], ...], spectrum, ..."""
    train: dict
    """SAE settings shared by every method (any SAE config field)."""
    methods: tuple[dict, ...]
    """One {label, method, ...that method's fields} per row of the table."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds; the table shows the mean and the worst seed."""
    thresholds: tuple[float, ...] = (0.8, 0.9, 0.95)
    """Cosine thresholds tau of the feature recovery rate."""
    threads: int | None = 1
    """torch threads (tiny shapes: one avoids OpenMP spinning on a busy machine; None: torch's default)."""
    lr_sweep: tuple[float, ...] = ()
    """Learning rates to run every SAE method at instead of its own (empty: each method's own lr)."""
    out: str = "runs/bench_synthetic"
    """Output folder (results.json, table.md)."""


def _data(raw: dict) -> dict:
    """``make_dataset``'s keyword arguments from the config's ``data``, refused before any compute
    when a key is unknown or a value has the wrong type."""
    known = set(inspect.signature(make_dataset).parameters) - {"seed", "feature_seed"}
    check_keys(raw, known, "bench synthetic's data", "the keys: " + ", ".join(sorted(known)))
    return coerce_fields(make_dataset, raw, "data.")  # sparsity: tuples, as typed


def run(cfg: Config) -> None:
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    thresholds = cfg.thresholds
    data = _data(cfg.data)
    methods = list(cfg.methods)
    if cfg.lr_sweep:
        from interp.evals.synthetic import FITTED

        methods = [
            m if m["method"] in FITTED else {**m, "lr": lr, "label": f"{m['label']} @ lr {lr:g}"}
            for m in methods
            for lr in cfg.lr_sweep
            if m["method"] not in FITTED or lr == cfg.lr_sweep[0]
        ]
    rows = benchmark(methods, list(cfg.seeds), data, cfg.train, thresholds)
    table = format_table(rows, thresholds)
    print(
        f"\nn={data['n_features']} features, d={data['d']}, {len(cfg.seeds)} seeds, "
        f"d_sae={cfg.train.get('d_sae')}, {cfg.train.get('n_tokens')} training samples\n{table}"
    )
    out.mkdir(parents=True, exist_ok=True)
    saved = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out"}
    write_json_atomic(out / "results.json", {"config": saved, "rows": rows})
    write_atomic(out / "table.md", lambda f: f.write(table + "\n"))
    print(f"\nwritten to {out}/table.md and results.json")
