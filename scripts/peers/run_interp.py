"""interp's trainer on the shared batches: ``interp.decomposers.sae.train`` with a flat config
(method, k, batch, budget and any ``key=value`` given: optimizer, lr, warmup_steps...), the
defaults otherwise. Scored at the weights it saves (schedule-free: the average)."""

import json

import common

import interp.decomposers.sae.trainer as trainer_mod
from interp.decomposers import REGISTRY
from interp.decomposers.sae import train


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


a = common.args()
data, held, meta = common.load(a["data"])
F, B = meta["d_sae"], meta["batch"]
n_steps = a["epochs"] * (len(data) // B)
given = {k: _value(v) for k, v in a.items() if k not in ("data", "out", "epochs", "seed")}
cfg = (
    dict(
        method="topk",
        d_sae=F,
        batch_size=B,
        n_tokens=n_steps * B,
        wandb="disabled",
        device="cpu",
        exclude_special=False,
        seed=a["seed"],
    )
    | given
)
cls = REGISTRY[cfg["method"]]
if "k" in cls.config_cls.__dataclass_fields__:
    cfg.setdefault("k", meta["k"])

live = {}  # the SAE and optimiser train() builds, for scoring during the run
real_setup, real_make, real_after = trainer_mod._setup, trainer_mod.make_optimizers, cls.after_step
trainer_mod._setup = lambda *args, **kw: live.setdefault("sae", real_setup(*args, **kw))
trainer_mod.make_optimizers = lambda *args, **kw: live.setdefault("opt", real_make(*args, **kw))
clock = common.Clock(held, n_steps, lambda x: live["sae"].reconstruct(x), None)


def after_step(sae, xn, out, step):
    real_after(sae, xn, out, step)
    clock.tick(step, live["opt"].eval, live["opt"].train, sae)


cls.after_step = after_step
sae = train(cfg, list(common.batches(data, B, a["epochs"])), progress=False)
label = " ".join(["interp"] + [f"{k}={v}" for k, v in given.items()])
common.finish(a, label, clock, n_steps * B, common.score(held, sae.reconstruct, sae.encode))
