"""Synthetic feature-recovery benchmark (the GBA paper's setting) for every SAE variant.

    python scripts/bench_synthetic.py [configs/bench_synthetic.yaml] [key=value ...] [out=DIR]

e.g. ``seeds=[0] train.n_tokens=50000`` (a dotted key sets one field of ``data`` or ``train``).
``lr_sweep=[1e-4,1e-3,1e-2]`` runs every method at each of those learning rates instead of its own
(SAE methods; fitted ones, semi-NMF and ITDA, have no learning rate and run once).

Trains each configured method through the one SAE trainer on planted-feature data for each seed
and prints (and writes to ``out``, default runs/bench_synthetic) the recovery table: FRR at each
tau, mean max cosine, held-out FVU and L0, as the mean over seeds with the worst seed in brackets.
Methods not registered in this build are listed as such.
"""

import sys
from pathlib import Path

import torch

import interp.decomposers  # noqa: F401  (registers every method)
from interp._io import write_atomic, write_json_atomic
from interp.cli import load_config
from interp.evals.synthetic import benchmark, format_table


def main(argv: list[str]) -> None:
    path = argv[0] if argv and "=" not in argv[0] else "configs/bench_synthetic.yaml"
    cfg = load_config(path, [a for a in argv if "=" in a])
    for key in [k for k in cfg if "." in k]:  # train.n_tokens=... sets a nested field
        outer, inner = key.split(".", 1)
        cfg[outer] = {**cfg[outer], inner: cfg.pop(key)}
    out = Path(cfg.pop("out", "runs/bench_synthetic"))
    if cfg.get("threads"):  # tiny shapes: one thread avoids OpenMP spinning on a busy machine
        torch.set_num_threads(cfg["threads"])
    thresholds = tuple(cfg["thresholds"])
    data = {k: tuple(tuple(v) for v in val) if k == "sparsity" else val for k, val in cfg["data"].items()}
    methods = cfg["methods"]
    if cfg.get("lr_sweep"):
        from interp.evals.synthetic import FITTED

        methods = [m if m["method"] in FITTED else {**m, "lr": lr, "label": f"{m['label']} @ lr {lr:g}"}
                   for m in methods for lr in cfg["lr_sweep"] if m["method"] not in FITTED or lr == cfg["lr_sweep"][0]]
    rows = benchmark(methods, cfg["seeds"], data, cfg["train"], thresholds)
    table = format_table(rows, thresholds)
    print(f"\nn={data['n_features']} features, d={data['d']}, {len(cfg['seeds'])} seeds, "
          f"d_sae={cfg['train'].get('d_sae')}, {cfg['train'].get('n_tokens')} training samples\n{table}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {"config": cfg, "rows": rows})
    write_atomic(out / "table.md", lambda f: f.write(table + "\n"))
    print(f"\nwritten to {out}/table.md and results.json")


if __name__ == "__main__":
    main(sys.argv[1:])
