"""LIB vs PCA around one block of a language model: ``python scripts/lib_lm.py configs/lib_lm.yaml [key=value]``.

Fits LIB (and the PCA baseline) on ``resid_pre -> resid_mid -> resid_post`` of ``layer`` with
stochastic sources, exports the interaction graphs, and measures held-out next-token CE loss when
only the first k directions of a node layer are kept (node ablation) or only a fraction of a
layer's edges (edge ablation). Prints the time of each stage; writes ``out/results.json``.
"""

import sys
import time
from pathlib import Path

import torch

from interp._io import write_json_atomic
from interp.cli import load_config
from interp.data import tokenize
from interp.decomposers.lib import graph
from interp.decomposers.lib import ops
from interp.decomposers.lib import LIB
from interp.models import load
from interp.decomposers.lib.cut import loss_from_resid, residual_block_cut, site_acts


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    torch.set_num_threads(int(cfg.get("threads", 1)))
    t0, out, L = time.time(), Path(cfg["out"]), cfg["layer"]
    lm = load(cfg["model"])
    toks = torch.as_tensor(tokenize(cfg["text"], lm.tokenizer, cfg["seq_len"], cfg["n_seqs"] * cfg["seq_len"]).tokens)
    ev = torch.as_tensor(tokenize(cfg["eval_text"], lm.tokenizer, cfg["seq_len"],
                                  cfg["n_eval_seqs"] * cfg["seq_len"]).tokens)
    modules, sites = residual_block_cut(lm, L)
    names = ("resid_pre", "resid_mid", "resid_post")
    acts0 = site_acts(lm, toks, sites[0])
    fns = [ops.fold(m) for m in modules]
    ev_acts = graph.layer_acts(fns, site_acts(lm, ev, sites[0]))
    metric = lambda resid_post: loss_from_resid(lm, ev, L, resid_post[:, :, :])  # noqa: E731
    res = {"tokens": toks.numel(), "eval_tokens": ev.numel(), "clean_loss": metric(ev_acts[-1][..., :-1]),
           "times": {"load+cache": time.time() - t0}}
    print(f"{toks.numel()} tokens for the fit, {ev.numel()} held-out; clean CE {res['clean_loss']:.4f}")
    for basis in ("jacobian", "pca"):
        t = time.time()
        lib = LIB.fit(modules, acts0, cfg["lib"], basis=basis, node_layers=names, sites=tuple(sites),
                      model=cfg["model"], direction_layer=cfg["direction_layer"])
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
                (frac, graph.edge_ablation(lib, l, ev_acts[l][:n], fns, sub_metric,
                                           max(1, int(frac * lib.edges(l).numel()))))
                for frac in cfg.get("edge_fracs", [])]
            r["edges_clean"] = sub_metric(ev_acts[-1][:n, :, :-1])
        res["times"][f"ablate_{tag}"] = time.time() - t
        res[tag] = r
        print(tag, r)
    res["times"]["total"] = time.time() - t0
    res["times"]["cpu_total"] = time.process_time()
    write_json_atomic(out / "results.json", {"config": cfg, "results": res})
    print("times (s, wall; cpu_total = CPU seconds of this process):", {k: round(v, 1) for k, v in res["times"].items()})


if __name__ == "__main__":
    main(sys.argv[1:])
