"""Time to a good SAE: interp against sparsify, SAELens and dictionary_learning, in one run.

    python scripts/bench_peers.py [--epochs 1 5 20] [--contenders interp sparsify saelens dictionary_learning]
                                  [--variants] [--fresh] [--threads N] [--seeds 0 1 2]

Prepares the shared activations once (SmolLM2-135M layer 15 resid_post on the built-in corpus: 44
batches of 4,096 training tokens and 16,384 held-out tokens, special tokens left out, shuffled with
seed 0) as ``runs/peers/data/{train,heldout}.npy``; creates each peer's own virtual environment
under ``runs/peers/<name>/.venv`` with pinned PyPI versions (they cannot install beside
TransformerLens 4); then trains every contender, each in its own process and environment (adapters
in ``scripts/peers/``), on the same batches in the same order, for each budget in epochs, and prints
tokens/s (training steps only), held-out FVU, the held-out FVU without massive-activation tokens
("bulk": one held-out token carries 20% of the variance), L0, dead fraction (latents that never fire
on the held-out tokens) and the training time each needs to reach a common FVU (the one sparsify
reaches in one epoch; with several seeds, its worst seed's), read from the FVU on the first half of
the held-out tokens, measured every 4 steps with the clock stopped (the weights are restored bit for
bit afterwards, so scoring does not perturb the run). Contenders run one after another, so their
ratios come from one run of this command; results are kept in ``runs/peers/results`` (``--fresh``
retrains).

``--seeds`` repeats every contender with other initialisation seeds on the same batches and prints
means over seeds: at 5 epochs one seed's plain FVU moves by about 0.007 with float rounding alone.

``--variants`` adds interp's other SAE variants at their new defaults and at the defaults before
this benchmark (Adam, lr 2e-4 / sqrt(d_sae / 2**14), 50 warm-up steps, decay over the last 20%).
A contender ``interp:key=value,...`` passes settings to interp's trainer; ``interp-old:...`` starts
from those old defaults.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

PEERS = {
    "sparsify": "eai-sparsify==1.3.3",
    "saelens": "sae-lens==6.54.12",
    "dictionary_learning": "dictionary-learning==0.1.0",
}
SITE, MODEL, D_SAE, K, BATCH, STEPS, HELD = "blocks.15.hook_resid_post", "smollm2-135m", 9216, 32, 4096, 44, 16384
OLD = {"optimizer": "adam", "lr": 2e-4 / (D_SAE / 2**14) ** 0.5, "warmup_steps": 50, "decay_frac": 0.2}
VARIANTS = [
    "interp-old",
    "interp:method=batchtopk",
    "interp-old:method=batchtopk",
    "interp:method=jumprelu",
    "interp-old:method=jumprelu",
    "interp:method=topafa,afa_target=centred",
    "interp-old:method=topafa,afa_target=centred",
    "interp:method=gba",
    "interp-old:method=gba",
]
HERE = Path(__file__).parent / "peers"


def prepare(root: Path, cache: Path) -> Path:
    """The shared activations as .npy (once)."""
    data = root / "data"
    if (data / "meta.json").exists():
        return data
    from interp.activations import ActivationCache, cache_activations

    if not (cache / "manifest.json").exists():
        cache_activations(MODEL, "builtin:stdlib-docs", [SITE], 200_000, cache, seq_len=128, batch_size=16)
    c = ActivationCache(cache)
    keep = torch.from_numpy(~c.special_mask().reshape(-1))
    x = c.activations(SITE).reshape(-1, c.width(SITE))[keep].float()
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    if len(x) < STEPS * BATCH + HELD:
        sys.exit(f"{cache} holds {len(x)} usable tokens; need {STEPS * BATCH + HELD}")
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "train.npy", x[: STEPS * BATCH].numpy())
    np.save(data / "heldout.npy", x[-HELD:].numpy())
    meta = {"model": MODEL, "site": SITE, "d_sae": D_SAE, "k": K, "batch": BATCH, "n_train": STEPS * BATCH}
    (data / "meta.json").write_text(json.dumps(meta))
    return data


def venv_python(root: Path, peer: str) -> str:
    """The peer's own interpreter, its venv created and installed on first use."""
    venv = root / peer / ".venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    if subprocess.run(
        [py, "-c", f"import {'sae_lens' if peer == 'saelens' else peer}"], capture_output=True
    ).returncode:
        # the same torch build as interp's, so kernels and threads are alike for every contender
        subprocess.run([py, "-m", "pip", "install", "-q", f"torch=={torch.__version__}", PEERS[peer]], check=True)
        # unused here, and their wheels want another torch build (torchvision breaks transformers'
        # imports; triton makes sparsify try GPU kernels on a CPU)
        subprocess.run([py, "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "triton"])
    return py


def run(
    root: Path,
    data: Path,
    contender: str,
    epochs: int,
    fresh: bool,
    stored_only: bool = False,
    threads: int | None = None,
    seed: int = 0,
) -> dict | None:
    name, _, settings = contender.partition(":")
    tag = contender.replace(":", "_").replace(",", "_")
    out = root / "results" / f"{tag}-{epochs}{f'-seed{seed}' if seed else ''}.json"
    if out.exists() and not fresh:
        return json.loads(out.read_text()) | {"name": contender}
    if stored_only:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    kv = [s for s in settings.split(",") if s]
    if name in PEERS:
        cmd = [venv_python(root, name), str(HERE / f"run_{name}.py")]
    else:
        cmd = [sys.executable, str(HERE / "run_interp.py")]
        kv = [f"{k}={json.dumps(v)}" for k, v in OLD.items()] * (name == "interp-old") + kv
    print(f"-- {contender}, {epochs} epoch(s), seed {seed}", flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    subprocess.run([*cmd, str(data), str(out), str(epochs), f"seed={seed}", *kv], check=True, env=env)
    result = json.loads(out.read_text())
    result["name"] = contender
    return result


def reach(result: dict, target: float) -> float | None:
    """Training seconds until the FVU on the curve's tokens (the first half of the held-out
    tokens, scored during training) first reached ``target`` (None: never)."""
    return next((s for s, f in result["curve"] if f <= target + 1e-9), None)


def table(results: list[dict], target: float, what: str) -> None:
    """One row per contender and budget; with several seeds, the means over seeds (and the
    seeds' FVUs), and the time ratio of the mean times."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["name"], r["epochs"]), []).append(r)
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731

    def time_to(rs: list[dict]) -> float | None:
        ts = [reach(r, target) for r in rs]
        return None if None in ts else sum(ts) / len(ts)

    print(
        f"\ncommon FVU = {target:.3f} ({what}, on the curve's half of the held-out tokens); "
        f"time = training seconds to reach it; with several seeds, means over seeds"
    )
    print(
        f"{'contender':<34}{'epochs':>6}{'seeds':>6}{'tok/s':>9}{'FVU':>8}{'bulk':>8}{'L0':>7}{'dead':>7}"
        f"{'time':>8}{'vs sparsify':>13}  FVU per seed"
    )
    for (name, epochs), rs in groups.items():
        t, s = time_to(rs), groups.get(("sparsify", epochs))
        ts = time_to(s) if s else None
        ratio = f"{ts / t:.2f}x" if t and ts else "-"
        per_seed = " ".join(f"{r['fvu']:.4f}" for r in rs)
        bulk = f"{mean(rs, 'fvu_bulk'):.3f}" if all("fvu_bulk" in r for r in rs) else "-"
        print(
            f"{name:<34}{epochs:>6}{len(rs):>6}{mean(rs, 'tokens_per_s'):>9.0f}{mean(rs, 'fvu'):>8.3f}{bulk:>8}"
            f"{mean(rs, 'l0'):>7.1f}{mean(rs, 'dead_frac'):>7.3f}{(f'{t:.0f}s' if t else 'never'):>8}{ratio:>13}"
            f"  {per_seed}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--contenders", nargs="+", default=["interp", "sparsify", "saelens", "dictionary_learning"])
    ap.add_argument("--variants", action="store_true", help="also interp's other variants, new vs old defaults")
    ap.add_argument("--root", default="runs/peers")
    ap.add_argument("--cache", default="runs/bench/smollm2-L15")
    ap.add_argument("--fresh", action="store_true", help="retrain contenders that have results")
    ap.add_argument("--table", action="store_true", help="print the table of stored results only")
    ap.add_argument("--threads", type=int, help="torch threads of every contender (default: torch's own)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisation seeds (same batches)")
    args = ap.parse_args()
    root = Path(args.root)
    data = prepare(root, Path(args.cache))
    contenders = args.contenders + VARIANTS * args.variants
    results = [
        r
        for e in args.epochs
        for seed in args.seeds
        for c in contenders
        if (r := run(root, data, c, e, args.fresh, args.table, args.threads, seed)) is not None
    ]
    # the common FVU: the worst sparsify seed's after one epoch (stored), which every sparsify seed reaches
    one = [
        r
        for seed in args.seeds
        if (r := run(root, data, "sparsify", 1, False, stored_only=True, seed=seed)) is not None
    ]
    if one:
        table(results, max(r["curve"][-1][1] for r in one), "sparsify's after one epoch")
    else:
        table(results, max(r["curve"][-1][1] for r in results), "the worst final FVU here: no one-epoch sparsify run")


if __name__ == "__main__":
    main()
