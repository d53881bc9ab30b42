"""LIB vs PCA around one block of a language model (Bushnaq et al. 2024): ``interp reproduce lib_lm``.

Fits LIB (and the PCA baseline) on ``resid_pre -> resid_mid -> resid_post`` of ``layer`` with
stochastic sources, exports the interaction graphs, and measures held-out next-token CE loss when
only the first k directions of a node layer are kept (node ablation) or only a fraction of a
layer's edges (edge ablation). Prints the time of each stage; writes ``out/results.json``.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp._io import write_json_atomic
from interp.data import tokenize
from interp.decomposers.lib import graph
from interp.decomposers.lib import ops
from interp.decomposers.lib import LIB
from interp.models import load
from interp.decomposers.lib.cut import loss_from_resid, residual_block_cut, site_acts


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    layer: int = 24
    """The block whose resid_pre -> resid_mid -> resid_post node layers are fitted."""
    text: str = "builtin:stdlib-docs?split=train"
    """Text the bases are fitted on."""
    eval_text: str = "builtin:stdlib-docs?split=test"
    """Held-out text of the ablations."""
    n_seqs: int = 4
    """Fitting sequences (the basis rank is bounded by n_seqs * seq_len)."""
    seq_len: int = 24
    """Tokens per sequence."""
    n_eval_seqs: int = 4
    """Held-out sequences of the node ablations."""
    direction_layer: int = 1
    """Node layer of directions() (1: blocks.L.hook_resid_mid)."""
    lib: dict = field(default_factory=dict)
    """LIBConfig fields (sources, integration, batch_size, truncation, ...)."""
    node_ablation_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 97)
    """Directions kept in the node ablations."""
    edge_fracs: tuple[float, ...] = (0.01, 0.1)
    """Fractions of edges kept in the edge ablation (empty: skipped)."""
    edge_eval_seqs: int = 1
    """Held-out sequences of the edge ablation."""
    out: str = "runs/lib_lm"
    """Output folder."""
    threads: int = 1
    """torch CPU threads."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    t0, out, L = time.time(), Path(cfg["out"]), cfg["layer"]
    lm = load(cfg["model"])
    toks = torch.as_tensor(tokenize(cfg["text"], lm.tokenizer, cfg["seq_len"], cfg["n_seqs"] * cfg["seq_len"]).tokens)
    ev = torch.as_tensor(
        tokenize(cfg["eval_text"], lm.tokenizer, cfg["seq_len"], cfg["n_eval_seqs"] * cfg["seq_len"]).tokens
    )
    modules, sites = residual_block_cut(lm, L)
    names = ("resid_pre", "resid_mid", "resid_post")
    acts0 = site_acts(lm, toks, sites[0])
    fns = [ops.fold(m) for m in modules]
    ev_acts = graph.layer_acts(fns, site_acts(lm, ev, sites[0]))
    metric = lambda resid_post: loss_from_resid(lm, ev, L, resid_post[:, :, :])  # noqa: E731
    res = {
        "tokens": toks.numel(),
        "eval_tokens": ev.numel(),
        "clean_loss": metric(ev_acts[-1][..., :-1]),
        "times": {"load+cache": time.time() - t0},
    }
    print(f"{toks.numel()} tokens for the fit, {ev.numel()} held-out; clean CE {res['clean_loss']:.4f}")
    for basis in ("jacobian", "pca"):
        t = time.time()
        lib = LIB.fit(
            modules,
            acts0,
            cfg["lib"],
            basis=basis,
            node_layers=names,
            sites=tuple(sites),
            model=cfg["model"],
            direction_layer=cfg["direction_layer"],
        )
        tag = "lib" if basis == "jacobian" else "pca"
        res["times"][f"fit_{tag}"] = time.time() - t
        lib.save(out / tag)
        graph.export_graph(lib, out / f"graph_{tag}", min_norm_weight=1e-4)
        graph.plot_graph(lib, out / f"graph_{tag}.png", title=f"{tag.upper()} {cfg['model']} block {L}")
        t = time.time()
        r = {"ranks": lib.cfg.ranks, "nodes": {}, "edges": {}}
        for l in range(2):
            ks = [k for k in cfg["node_ablation_ks"] if k <= lib.cfg.ranks[l]] + [lib.cfg.ranks[l]]
            r["nodes"][names[l]] = graph.node_ablation(lib, l, ev_acts[l], fns, metric, sorted(set(ks)))
            n = cfg.get("edge_eval_seqs", 1)
            sub_metric = lambda x: loss_from_resid(lm, ev[:n], L, x)  # noqa: E731
            r["edges"][names[l]] = [
                (
                    frac,
                    graph.edge_ablation(
                        lib, l, ev_acts[l][:n], fns, sub_metric, max(1, int(frac * lib.edges(l).numel()))
                    ),
                )
                for frac in cfg.get("edge_fracs", [])
            ]
            r["edges_clean"] = sub_metric(ev_acts[-1][:n, :, :-1])
        res["times"][f"ablate_{tag}"] = time.time() - t
        res[tag] = r
        print(tag, r)
    res["times"]["total"] = time.time() - t0
    res["times"]["cpu_total"] = time.process_time()
    write_json_atomic(out / "results.json", {"config": cfg, "results": res})
    print(
        "times (s, wall; cpu_total = CPU seconds of this process):", {k: round(v, 1) for k, v in res["times"].items()}
    )
