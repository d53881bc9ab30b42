"""Talking Heads on a built-in model: ``interp reproduce heads configs/experiments/heads.yaml``.

Writes to ``out``: ``components.csv`` (every OV component: sigma, its strongest Q-composition
reader, CS and within-head z-score), ``channels.png`` (layer x layer max outlier z-score),
``laundry_baseline.json`` + ``laundry_curve.png`` (accuracy per list length and position),
``candidates.json`` (mover-like / inhibition-like heads and candidate channels) and
``interventions.json`` + ``laundry_interventions.png`` (accuracy and reader attention with each
channel component scaled, removed by weight edit, and two controls of the same head: the lowest-z
component removed and a sigma-matched component scaled like the channel).
"""

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch

import interp.models
from interp.decomposers.heads import analysis as H
from interp.decomposers.heads.interventions import ComponentEdit, component_hooks, edit_weights
from interp.decomposers.heads.laundry_list import evaluate
from interp.decomposers.heads.laundry_prompts import make_prompts
from interp.decomposers.heads.svd import HeadSVD, all_composition_scores, outlier_zscores

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_components(path, svd, cs):
    z = outlier_zscores(cs).nan_to_num(nan=-np.inf)
    L, Hn, r = cs.shape[:3]
    best = z.flatten(-2).argmax(-1)  # [L, H, r]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "head", "index", "sigma", "top_q_reader", "q_cs", "q_z"])
        for l in range(L - 1):
            for h in range(Hn):
                for i in range(r):
                    rl, rh = divmod(int(best[l, h, i]), Hn)
                    w.writerow(
                        [
                            l,
                            h,
                            i,
                            f"{svd.S_ov[l, h, i]:.4g}",
                            f"{rl}.{rh}",
                            f"{cs[l, h, i, rl, rh]:.4g}",
                            f"{z[l, h, i, rl, rh]:.3g}",
                        ]
                    )


def plot_curves(path, curves: dict, title: str):
    plt.figure(figsize=(6, 4))
    for name, acc in curves.items():
        plt.plot(list(acc), list(acc.values()), marker="o", label=name)
    plt.xlabel("objects in the list (N)"), plt.ylabel("accuracy (candidate first tokens)")
    plt.title(title), plt.ylim(0, 1), plt.legend(fontsize=7), plt.tight_layout(), plt.savefig(path), plt.close()


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    out: str = "runs/heads/smollm2-135m"
    """Output folder."""
    seed: int = 0
    """Seed of the Laundry List prompts (interventions use seed + 1)."""
    dtype: str = "float32"
    """Model dtype."""
    lengths: tuple[int, ...] = (3, 4, 5, 6, 8, 10, 12, 15, 20)
    """List lengths of the baseline curve."""
    n_prompts: int = 16
    """Prompts per list length, baseline curve (the paper: 250)."""
    batch_size: int = 16
    """Prompts per forward pass."""
    n_readers: int = 2
    """Mover-like heads: most attention from the last position to the target object."""
    n_writers: int = 4
    """Inhibition-like heads: most attention to the re-listed objects (earlier layers)."""
    n_channels: int = 3
    """Candidate channels (writer component -> reader) taken to intervention."""
    rotary: str = "ignore"
    """ignore | separate: how Q-composition treats the rotary reader."""
    intervention_lengths: tuple[int, ...] = (3, 5, 8)
    """List lengths of the interventions."""
    intervention_prompts: int = 16
    """Fresh prompts per intervention length."""
    alphas: tuple[float, ...] = (0.0, 3.0)
    """Activation-side scales of the channel component (1 = no change)."""
    weight_edit: bool = True
    """Also run the o_proj weight edit (gamma=0) per channel."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    save_svd: bool = False
    """Write the HeadSVD artifact (about 160 MB for smollm2-135m)."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    model = interp.models.load(cfg["model"], dtype=getattr(torch, cfg["dtype"]), attn_implementation="eager")
    t0 = time.time()
    svd = HeadSVD.fit(model)
    cs_q = all_composition_scores(svd, "q", cfg["rotary"])
    timing = {"svd_and_q_scores_s": time.time() - t0}
    if cfg["save_svd"]:
        svd.save(out / "svd")
    write_components(out / "components.csv", svd, cs_q)
    plt.imshow(H.layer_channel_matrix(cs_q).T, origin="lower", cmap="viridis")
    plt.colorbar(label="max within-head z (Q-composition)"), plt.xlabel("writer layer"), plt.ylabel("reader layer")
    plt.savefig(out / "channels.png"), plt.close()

    heads = [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]
    prompts = [p for n in cfg["lengths"] for p in make_prompts(n, cfg["n_prompts"], cfg["seed"])]
    base = evaluate(model, prompts, heads=tuple(heads), batch_size=cfg["batch_size"])
    json.dump(
        {
            "acc_cand": base.accuracy(),
            "acc_full": base.accuracy(metric="full"),
            "by_position": {f"{n}.{i}": a for (n, i), a in base.accuracy("position").items()},
            "summary": H.summarise(base),
            "n_prompts_per_length": cfg["n_prompts"],
        },
        open(out / "laundry_baseline.json", "w"),
        indent=1,
        default=str,
    )
    plot_curves(
        out / "laundry_curve.png",
        {"cand": base.accuracy(), "full vocab": base.accuracy(metric="full")},
        f"{cfg['model']} Laundry List",
    )

    readers = H.top_heads(H.mover_scores(base), heads, cfg["n_readers"])
    writers = H.top_heads(H.inhibition_scores(base), heads, cfg["n_writers"], max(l for l, _ in readers))
    channels = H.channel_candidates(svd, cs_q, writers, readers, cfg["n_channels"])
    json.dump(
        {
            "readers": readers,
            "writers": writers,
            "channels": channels,
            "timing": timing,
            "mover_scores": {f"{l}.{h}": float(s) for (l, h), s in zip(heads, H.mover_scores(base))},
            "inhibition_scores": {f"{l}.{h}": float(s) for (l, h), s in zip(heads, H.inhibition_scores(base))},
        },
        open(out / "candidates.json", "w"),
        indent=1,
    )
    print(
        json.dumps(
            {
                "readers": readers,
                "writers": writers,
                "channels": channels,
                "timing": timing,
                "baseline_acc": base.accuracy(),
            },
            indent=1,
        ),
        flush=True,
    )

    test = [
        p for n in cfg["intervention_lengths"] for p in make_prompts(n, cfg["intervention_prompts"], cfg["seed"] + 1)
    ]
    results, curves = {}, {}
    watched = sorted({tuple(map(int, ch["reader"].split("."))) for ch in channels})

    def run(name, hooks=()):
        res = evaluate(model, test, heads=tuple(watched), hooks=hooks, batch_size=cfg["batch_size"])
        results[name] = H.summarise(res)
        results[name]["readers"] = {f"{l}.{h}": H.summarise(res, k)["reader"] for k, (l, h) in enumerate(watched)}
        curves[name] = results[name]["acc_cand"]
        print(name, json.dumps(results[name]), flush=True)

    run("baseline")
    for ch in channels:
        wl, wh = map(int, ch["writer"].split("."))
        tag = f"{ch['writer']}.{ch['component']}->{ch['reader']}"
        for a in cfg["alphas"]:
            run(f"{tag} act x{a}", component_hooks(svd, [ComponentEdit(wl, wh, ch["component"], a)]))
        if cfg["weight_edit"]:  # equals "act x0" by construction (tested); a check on the real model
            with edit_weights(model, svd, [ComponentEdit(wl, wh, ch["component"], 0.0)]):
                run(f"{tag} weight-removed")
        for key in ("control", "sigma_control"):
            for a in cfg["alphas"] if key == "sigma_control" else [0.0]:
                run(
                    f"{key} {ch['writer']}.{ch[key]} act x{a}",
                    component_hooks(svd, [ComponentEdit(wl, wh, ch[key], a)]),
                )
    json.dump(results, open(out / "interventions.json", "w"), indent=1, default=str)
    plot_curves(out / "laundry_interventions.png", curves, "interventions (channel components)")
