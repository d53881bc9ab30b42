"""LLM comparison of the SAE family: ``interp reproduce sweep_sae configs/experiments/sweep_sae.yaml``.

Caches one middle residual site of the built-in SmolLM2-135M once, trains every method of the
config over its sparsity sweep on that cache (the one trainer, wandb offline per run), evaluates
each SAE spliced into the model on held-out text (``interp.evals.reconstruction.evaluate_many``,
all runs together, sharing the clean and ablated passes: FVU, L0, CE-loss recovered, KL, dead
fraction) and the median per-token εLBO on held-out activations
(``interp.evals.afa.elbo``). Writes ``OUT/results.json``, ``OUT/results.md`` and
``OUT/frontiers.png`` (FVU-L0 and CE-recovered-L0). Re-running resumes: finished runs and
evaluations are read back.

Scale (configs/experiments/sweep_sae.yaml, reduced for a 2-core CPU): 131k cached training tokens at
blocks.15.hook_resid_post, 197k training tokens per run (192 steps of 1024, cycling over the
cache), d_sae 4608 (8x), 3 settings per method, evaluation on 2,048 held-out tokens (16 sequences
of 128). Override e.g. ``sae={...}`` or ``cache_tokens=...`` for another scale.
"""

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp._io import read_json, write_json_atomic
from interp.activations import ActivationCache, cache_activations
from interp.decomposers import REGISTRY
from interp.decomposers.sae import SAE, train
from interp.errors import ConfigError
from interp.evals.afa import elbo
from interp.evals.reconstruction import evaluate_many
from interp.models import load

COLUMNS = ("l0", "fvu", "ce_loss_recovered", "kl", "dead_frac_train", "dead_frac", "elbo_median", "train_s")


def sweep_runs(methods: dict[str, dict]) -> list[tuple[str, str, Any, dict]]:
    """(method, swept key, value, fixed settings) for every run of the config."""
    runs = []
    for method, spec in methods.items():
        if method not in REGISTRY or not issubclass(REGISTRY[method], SAE):
            known = sorted(m for m, c in REGISTRY.items() if issubclass(c, SAE))
            raise ConfigError(f"methods.{method}: not a registered SAE method; choose from {known}")
        lists = [k for k, v in spec.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise ConfigError(f"methods.{method}: give exactly one list of sparsity settings, got {lists}")
        key = lists[0]
        fixed = {k: v for k, v in spec.items() if k != key}
        runs += [(method, key, value, fixed) for value in spec[key]]
    return runs


def held_out_activations(model, cfg: dict, out: Path) -> torch.Tensor:
    path = cache_activations(
        model,
        cfg["eval"]["text_spec"],
        [cfg["site"]],
        cfg["elbo_tokens"],
        out / "cache-heldout",
        seq_len=cfg["seq_len"],
    )
    cache = ActivationCache(path)
    keep = torch.from_numpy(~cache.special_mask().reshape(-1))
    return cache.activations(cfg["site"]).reshape(-1, cache.width(cfg["site"]))[keep].float()


def train_one(cfg: dict, cache: ActivationCache, run: tuple) -> tuple[dict, SAE]:
    """Train (or read back) one run: its table row so far and the SAE."""
    method, key, value, fixed = run
    row = {"method": method, "setting": f"{key}={value}", "status": "ok"}
    out = Path(cfg["out"]) / "runs" / f"{method}-{key}={value}"
    start = time.time()
    sae = train({**cfg["sae"], **fixed, "method": method, key: value}, cache, out=out)
    row["train_s"] = (
        read_json(out / "timing.json", "timing") if (out / "timing.json").exists() else {"train_s": time.time() - start}
    )["train_s"]
    write_json_atomic(out / "timing.json", {"train_s": row["train_s"]})
    row["dead_frac_train"] = sae.meta.get("dead_frac")
    return row | {"_dir": out}, sae


def evaluate_runs(cfg: dict, model, trained: list[tuple[dict, SAE]], x_held) -> None:
    """Fill every row's evaluation: spliced into the model (the runs not yet evaluated with this
    ``eval`` config together, sharing the clean and ablated passes) and the εLBO median."""

    def done(row: dict) -> bool:
        path = row["_dir"] / "eval.json"
        return path.exists() and read_json(path, "eval").get("eval_config") == cfg["eval"]

    todo = [(row, sae) for row, sae in trained if not done(row)]
    if todo:
        results = evaluate_many([sae for _, sae in todo], model, cfg["site"], **cfg["eval"])
        for (row, _), result in zip(todo, results):
            write_json_atomic(row["_dir"] / "eval.json", {"eval_config": cfg["eval"], **result})
    for row, sae in trained:
        saved = read_json(row.pop("_dir") / "eval.json", "eval")
        row |= {k: v for k, v in saved.items() if k != "eval_config"}
        with torch.no_grad():
            row["elbo_median"] = elbo(sae, x_held.to(sae.W_enc.device)).median().item()


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_table(rows: list[dict], cfg: dict, out: Path) -> None:
    head = ["method", "setting", *COLUMNS]
    lines = [
        f"SAE sweep on {cfg['model']} {cfg['site']}: {cfg['sae']['n_tokens']} training tokens per run "
        f"(cache {cfg['cache_tokens']}), expansion {cfg['sae'].get('expansion_factor')}, evaluated on "
        f"{cfg['eval']['n_tokens']} held-out tokens.",
        "",
        "| " + " | ".join(head + ["status"]) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in head + ["status"]) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    write_json_atomic(out / "results.json", {"config": cfg, "rows": rows})


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted(
            (r["l0"], r["fvu"], r["ce_loss_recovered"]) for r in rows if r["method"] == method and r["status"] == "ok"
        )
        if pts:
            l0, fvu, ce = zip(*pts)
            axes[0].plot(l0, fvu, "o-", label=method)
            axes[1].plot(l0, ce, "o-", label=method)
    for ax, name in zip(axes, ("FVU (lower is better)", "CE loss recovered (higher is better)")):
        ax.set_xscale("log")
        ax.set_xlabel("L0 (active latents per token)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "frontiers.png", dpi=120)


def log_wandb(rows: list[dict], cfg: dict, out: Path) -> None:
    """The results table as one wandb run (each training run already logged itself)."""
    mode = cfg["sae"].get("wandb", "offline")
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=cfg["sae"].get("wandb_project", "interp"),
        mode=mode,
        dir=str(out),
        name="sweep_sae",
        config=cfg,
        reinit="finish_previous",
    )
    head = ["method", "setting", "status", *COLUMNS]
    run.log({"results": wandb.Table(columns=head, data=[[r.get(c) for c in head] for r in rows])})
    run.finish()


@dataclass(frozen=True)
class Config:
    methods: dict
    """{method: {one swept key: [values], fixed key: value, ...}} for every SAE method compared."""
    model: str = "smollm2-135m"
    """Model spec."""
    site: str = "blocks.15.hook_resid_post"
    """Hook site trained and evaluated on."""
    text: str = "builtin:stdlib-docs?split=train"
    """Training text."""
    cache_tokens: int = 131_072
    """Tokens cached once and reused by every run."""
    seq_len: int = 128
    """Tokens per context row."""
    out: str = "runs/sweep_sae"
    """Output folder (runs/, results.json, results.md, frontiers.png)."""
    sae: dict = field(default_factory=dict)
    """SAE config fields shared by every run (n_tokens, expansion_factor, lr, wandb, ...)."""
    eval: dict = field(default_factory=dict)
    """Arguments of evaluate_many (text_spec, n_tokens, seq_len, batch_size)."""
    elbo_tokens: int = 4096
    """Held-out activations for the εLBO medians."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    out = Path(cfg["out"])
    runs = sweep_runs(cfg["methods"])  # validates the config before any compute
    t0 = time.time()
    model = load(cfg["model"])
    cache = ActivationCache(
        cache_activations(model, cfg["text"], [cfg["site"]], cfg["cache_tokens"], out / "cache", seq_len=cfg["seq_len"])
    )
    x_held = held_out_activations(model, cfg, out)
    rows, trained = [], []
    for run in runs:
        try:
            row, sae = train_one(cfg, cache, run)
            trained.append((row, sae))
        except Exception as e:  # one failed run (e.g. a diverged loss) is reported, the sweep goes on
            row = {"method": run[0], "setting": f"{run[1]}={run[2]}", "status": f"error: {e}"}
        rows.append(row)
        print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k in ("method", "setting", "status", *COLUMNS)))
    print(f"evaluating {len(trained)} SAEs on {cfg['eval']['n_tokens']} held-out tokens")
    evaluate_runs(cfg, model, trained, x_held)
    write_table(rows, cfg, out)
    plot(rows, out)
    log_wandb(rows, cfg, out)
    print(
        f"\n{(out / 'results.md').read_text()}\ntotal {time.time() - t0:.0f} s; "
        f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'frontiers.png'}"
    )
