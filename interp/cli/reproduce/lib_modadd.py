"""LIB vs PCA on modular addition (Bushnaq et al. 2024): ``interp reproduce lib_modadd configs/experiments/lib_modadd.yaml``.

Trains (or loads the cached) one-layer mod-add transformers, fits LIB and PCA at rib's node layers
``ln1.0 -> ln2.0 -> unembed -> output`` on the train set, and measures on the evaluation split
(default: the full p² grid, where one example is 1/p² = 0.008 pp, well below the 0.1 pp tolerance):
node-ablation curves (accuracy vs features kept), features needed and edges needed to stay within
``tolerance`` of the unablated accuracy. Seeds that have not grokked (test accuracy below the
model's ``stop_test_acc``) are analysed but left out of the tables, which name them. Writes ``out/seed{S}/{lib,pca}`` artifacts, interaction
graphs (GraphML/JSON/PNG), ``out/results.json``, ``out/tables.md`` and ``out/ablation_curves.png``.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp._io import write_atomic, write_json_atomic
from interp.decomposers.lib import graph
from interp.decomposers.lib import LIB
from interp.decomposers.lib import modadd

PUBLISHED = {  # rib's shipped outputs, 5 seeds (reference notes, section 2(c)); d_model 128
    "features": {"ln1.0": "9-15", "ln2.0": "13-19", "unembed": "7-11"},
    "edges": {
        "ln1.0": ("86.6 (58-133)", "117.4 (76-167)"),
        "ln2.0": ("74.0 (60-82)", "85.2 (53-117)"),
        "unembed": ("634 (535-699)", "663 (547-752)"),
        "total": ("795", "865"),
    },
}


def analyse_seed(params, mcfg, cfg, out: Path) -> dict:
    params = {k: v.double() for k, v in params.items()}
    tokens, labels, train = modadd.dataset(mcfg)
    tr_idx = train.nonzero()[:, 0]
    tr_idx = tr_idx[torch.randperm(len(tr_idx), generator=torch.Generator().manual_seed(0))]
    tr = tokens[tr_idx[: cfg["n_basis"]]]
    split = cfg.get("eval_split", "all")
    if split == "all":  # the full p^2 grid
        te, te_lab = tokens, labels
    elif split == "test":
        te, te_lab = tokens[~train], labels[~train]
    else:  # train points the bases never saw (for a model that memorised but did not grok)
        te, te_lab = tokens[tr_idx[cfg["n_basis"] :]], labels[tr_idx[cfg["n_basis"] :]]
    fns, names = modadd.modules(params), modadd.NODE_LAYERS
    res = {}
    for basis in ("jacobian", "pca"):
        lib = LIB.fit(
            fns,
            modadd.embed(params, tr),
            cfg["lib"],
            basis=basis,
            node_layers=names,
            sites=names,
            model=str(out.parent / "models"),
        )
        tag = "lib" if basis == "jacobian" else "pca"
        lib.save(out / tag)
        graph.export_graph(lib, out / f"graph_{tag}", min_norm_weight=cfg.get("graph_min_norm_weight", 1e-4))
        graph.plot_graph(lib, out / f"graph_{tag}.png", title=f"{tag.upper()} mod-add {out.name}")
        res[tag] = ablations(lib, params, te, te_lab, cfg)
        if tag == "lib":
            res["n_edges"] = {n: lib.edges(l).numel() for l, n in enumerate(names[:-1])}
    return res


def ablations(lib, params, te, te_lab, cfg) -> dict:
    params = {k: v.float() for k, v in params.items()}  # evaluation in float32 (fits are float64)
    fns = modadd.modules(params)
    n_nodes, n_edges = cfg.get("n_eval_nodes") or len(te), cfg.get("n_eval_edges") or len(te)
    acts = graph.layer_acts(fns, modadd.embed(params, te[:n_nodes]), dtype=torch.float32)
    acc = lambda lab: lambda out: float((out[:, -1].argmax(-1) == lab).double().mean())  # noqa: E731
    metric = acc(te_lab[:n_nodes])
    base = metric(acts[-1][..., :-1])
    out = {
        "base_acc": base,
        "n_eval": n_nodes,
        "n_eval_edges": n_edges,
        "curves": {},
        "features_needed": {},
        "edges_needed": {},
        "edge_evals": {},
    }
    for l, name in enumerate(lib.cfg.node_layers[:-1]):
        curve = graph.node_ablation(lib, l, acts[l], fns, metric, graph.ablation_schedule(lib.cfg.ranks[l]))
        out["curves"][name] = curve
        out["features_needed"][name] = next(k for k, v in curve if v >= base - cfg["tolerance"])
        sub = [a[:n_edges] for a in acts]
        m_sub = acc(te_lab[:n_edges])
        k, seen = graph.edges_needed(lib, l, sub[l], fns, m_sub, m_sub(sub[-1][..., :-1]) - cfg["tolerance"])
        out["edges_needed"][name], out["edge_evals"][name] = k, seen
        print(f"  {lib.cfg.basis:8s} {name:8s} features {out['features_needed'][name]:4d}  edges {k}")
    return out


def summarise(results: dict, mcfg) -> str:
    def stat(xs):
        return f"{sum(xs) / len(xs):.1f} ({min(xs)}-{max(xs)})"

    grokked = [s for s in sorted(results) if results[s]["model"]["test_acc"] >= (mcfg.stop_test_acc or 0)]
    left_out = [
        f"seed {s} (test accuracy {results[s]['model']['test_acc']:.4f})" for s in sorted(results) if s not in grokked
    ]
    if not grokked:
        return (
            "No seed has grokked (test accuracy >= stop_test_acc): nothing to tabulate; " + ", ".join(left_out) + "\n"
        )
    seeds = grokked
    names = modadd.NODE_LAYERS[:-1]
    lines = [
        ("Left out, not grokked: " + ", ".join(left_out) + ". " if left_out else "")
        + f"Seeds {seeds}; model d_model {mcfg.d_model}, d_mlp {mcfg.d_mlp}; ablations on the "
        f"{results[seeds[0]]['eval_split']} split, {results[seeds[0]]['lib']['n_eval']} points (base accuracy "
        + ", ".join(f"{results[s]['lib']['base_acc']:.4f}" for s in seeds)
        + "); model test accuracy "
        + ", ".join(f"{results[s]['model']['test_acc']:.4f}" for s in seeds),
        "",
        "| node layer | LIB features needed | PCA features needed | published (LIB ~ PCA) |",
        "|---|---|---|---|",
    ]
    for n in names:
        f = [[results[s][t]["features_needed"][n] for s in seeds] for t in ("lib", "pca")]
        lines.append(f"| {n} | {stat(f[0])} | {stat(f[1])} | {PUBLISHED['features'][n]} |")
    lines += ["", "| edges | LIB | PCA | published LIB | published PCA | possible here |", "|---|---|---|---|---|---|"]
    tot = {"lib": [0] * len(seeds), "pca": [0] * len(seeds)}
    for l, n in enumerate(names):
        e = {t: [results[s][t]["edges_needed"][n] for s in seeds] for t in ("lib", "pca")}
        for t in tot:
            tot[t] = [a + b for a, b in zip(tot[t], e[t])]
        pub = PUBLISHED["edges"][n]
        lines.append(
            f"| {n}->{modadd.NODE_LAYERS[l + 1]} | {stat(e['lib'])} | {stat(e['pca'])} | {pub[0]} | "
            f"{pub[1]} | {results[seeds[0]]['n_edges'][n]} |"
        )
    lines.append(f"| total | {stat(tot['lib'])} | {stat(tot['pca'])} | 795 | 865 | |")
    lines += [
        "",
        f"Mean accuracy ({results[seeds[0]]['eval_split']} split) with k features kept (constant direction counted):",
        "",
        "| layer | method | " + " | ".join(f"k={k}" for k in range(6, 12)) + " |",
        "|---|---|" + "---|" * 6,
    ]
    for n in names:
        for t in ("lib", "pca"):
            vals = [sum(dict(results[s][t]["curves"][n])[k] for s in seeds) / len(seeds) for k in range(6, 12)]
            lines.append(f"| {n} | {t.upper()} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = modadd.NODE_LAYERS[:-1]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6))
    for ax, n in zip(axes, names):
        for t, c in (("lib", "tab:blue"), ("pca", "tab:orange")):
            for i, s in enumerate(sorted(results)):
                k, v = zip(*results[s][t]["curves"][n])
                ax.plot(k, v, color=c, alpha=0.7, label=t.upper() if i == 0 else None)
        ax.set_xscale("log"), ax.set_title(n), ax.set_xlabel("features kept"), ax.set_ylabel("accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@dataclass(frozen=True)
class Config:
    model: dict = field(default_factory=dict)
    """ModAddConfig fields of the trained transformers (p, d_model, n_heads, lr, max_epochs, ...)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One trained model per seed."""
    out: str = "runs/lib_modadd"
    """Output folder (trained models cached under out/models)."""
    lib: dict = field(default_factory=dict)
    """LIBConfig fields."""
    n_basis: int = 600
    """Train points for Gram / M / edges (rib: the whole train set)."""
    n_eval_nodes: int | None = None
    """Evaluation points for node ablations (None: the whole split)."""
    n_eval_edges: int | None = None
    """Evaluation points for the edge bisection (None: the whole split; one flipped example must stay
    well below the tolerance)."""
    eval_split: str = "all"
    """all (the full p^2 grid), test, or train_heldout (train points not used for the bases)."""
    tolerance: float = 0.001
    """Needed = fewest features / edges with accuracy >= base - tolerance."""
    threads: int = 1
    """torch CPU threads."""
    graph_min_norm_weight: float = 1e-4
    """Graph files keep edges above this fraction of the layer's largest."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    mcfg = modadd.ModAddConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()})
    out = Path(cfg["out"])
    models = modadd.train_or_load(mcfg, cfg["seeds"], out / "models")
    results = {}
    for seed, (params, metrics) in zip(cfg["seeds"], models):
        print(f"seed {seed}: {metrics}")
        results[seed] = analyse_seed(params, mcfg, cfg, out / f"seed{seed}") | {
            "model": metrics,
            "eval_split": cfg.get("eval_split", "all"),
        }
        write_json_atomic(
            out / "results.json", {"config": cfg, "model_config": dataclasses.asdict(mcfg), "results": results}
        )
    table = summarise(results, mcfg)
    write_atomic(out / "tables.md", lambda f: f.write(table))
    plot_curves(
        {s: r for s, r in results.items() if r["model"]["test_acc"] >= (mcfg.stop_test_acc or 0)} or results,
        out / "ablation_curves.png",
    )
    print(table)
