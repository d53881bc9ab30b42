"""Shared by every contender of ``scripts/bench_peers.py``; runs in each peer's own venv, so it
needs only torch and numpy. Reads the shared activations, yields the same batches in the same
order to everyone, times training steps only (evaluation pauses the clock) and scores held-out
FVU, L0 and dead fraction with one piece of code."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def args() -> dict:
    """``python run_x.py DATA_DIR OUT_JSON EPOCHS [seed=S] [key=value ...]`` (seed: of the weights'
    initialisation, 0 by default; the batches are the same for every seed)."""
    data, out, epochs, *rest = sys.argv[1:]
    kv = dict(s.split("=", 1) for s in rest)
    return {"data": Path(data), "out": Path(out), "epochs": int(epochs), "seed": int(kv.pop("seed", 0)), **kv}


def load(data: Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    meta = json.loads((data / "meta.json").read_text())
    train = torch.from_numpy(np.load(data / "train.npy"))
    held = torch.from_numpy(np.load(data / "heldout.npy"))
    return train, held, meta


def batches(train: torch.Tensor, batch: int, epochs: int):
    """The same batches for everyone: the pre-shuffled tokens in order, ``epochs`` times."""
    for _ in range(epochs):
        for a in range(0, len(train) - batch + 1, batch):
            yield train[a : a + batch]


MASSIVE = 100.0  # a token whose squared deviation from the mean is over 100x the median's is "massive"


@torch.no_grad()
def score(held: torch.Tensor, reconstruct, encode) -> dict:
    """Held-out FVU, L0 and dead fraction; also the FVU without massive-activation tokens
    (``fvu_bulk``): on SmolLM2 layer 15 one held-out token of norm 7,364 (median 170) carries 20%
    of the held-out variance, so the plain FVU moves with how that one token is reconstructed."""
    x_hat = torch.cat([reconstruct(c) for c in held.split(4096)])
    err, dev = (held - x_hat).pow(2).sum(1), (held - held.mean(0)).pow(2).sum(1)
    fvu = (err.sum() / dev.sum()).item()
    bulk = dev <= MASSIVE * dev.median()
    fired, l0 = None, 0.0
    for c in held.split(4096):
        active = encode(c) != 0
        l0 += active.sum().item()
        fired = active.any(0) if fired is None else fired | active.any(0)
    return {
        "fvu": fvu,
        "fvu_bulk": (err[bulk].sum() / dev[bulk].sum()).item(),
        "n_massive": int((~bulk).sum()),
        "l0": l0 / len(held),
        "dead_frac": 1 - fired.float().mean().item(),
    }


CURVE_EVERY = 4  # steps between points of the FVU curve, at every budget (time-to-FVU resolution)


class Clock:
    """Training time only: ``tick(step)`` after each step; every ``CURVE_EVERY`` steps (and at the
    end) the clock stops while held-out FVU is measured, giving the (seconds, FVU) curve."""

    def __init__(self, held: torch.Tensor, n_steps: int, reconstruct, encode, every: int = CURVE_EVERY):
        self.held, self.n_steps, self.rec, self.enc, self.every = held, n_steps, reconstruct, encode, every
        self.seconds, self.curve, self.start = 0.0, [], time.perf_counter()

    def tick(self, step: int, to_eval=None, to_train=None, module: torch.nn.Module | None = None) -> None:
        """``step`` counts from 1; ``to_eval``/``to_train`` swap schedule-free weights around scoring.
        With ``module`` its parameters are restored bit for bit afterwards (the swap back rounds
        differently), so scoring never changes the training run."""
        if step % self.every and step != self.n_steps:
            return
        self.seconds += time.perf_counter() - self.start
        kept = [p.detach().clone() for p in module.parameters()] if module is not None else []
        if to_eval:
            to_eval()
        with torch.no_grad():
            x_hat = torch.cat([self.rec(c) for c in self.held[:8192].split(4096)])
            h = self.held[:8192]
            fvu = ((h - x_hat).pow(2).sum() / (h - h.mean(0)).pow(2).sum()).item()
        if to_train:
            to_train()
        if module is not None:
            with torch.no_grad():
                for p, q in zip(module.parameters(), kept):
                    p.copy_(q)
        self.curve.append((self.seconds, fvu))
        self.start = time.perf_counter()


def finish(a: dict, name: str, clock: Clock, n_tokens: int, final: dict) -> None:
    result = {
        "name": name,
        "epochs": a["epochs"],
        "seed": a["seed"],
        "train_seconds": clock.seconds,
        "tokens_per_s": n_tokens / clock.seconds,
        "curve": clock.curve,
        **final,
    }
    a["out"].write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
