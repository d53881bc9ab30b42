"""Budget-aware schedule rules of the SAE trainer (warm-up and decay as fractions of the run with
floors and caps, the default learning rate) checked against hand-computed values, and the
config split: flat dict -> (SAEConfig, TrainConfig), unknown keys, old artifacts."""

import json
import math

import pytest
import torch

import interp.decomposers as dec
from interp.decomposers.base import field_docs
from interp.decomposers.sae import SAE, TopKConfig, train
from interp.decomposers.sae.optim import BASE_LR, default_lr, lr_factor, schedule_steps
from interp.decomposers.sae.train_config import TrainConfig
from interp.errors import ConfigError


@pytest.mark.parametrize(
    "n_steps, frac, floor, cap, want",
    [
        (44, 0.05, 1, 1000, 2),  # round(2.2)
        (10, 0.05, 1, 1000, 1),  # floor
        (40_000, 0.05, 1, 1000, 1000),  # cap
        (4, 0.05, 5, None, 2),  # never more than half the run, even above the floor
        (100, 0.0, 0, None, 0),
    ],
)
def test_schedule_steps(n_steps, frac, floor, cap, want):
    assert schedule_steps(n_steps, frac, floor, cap) == want


def test_warmup_and_decay_follow_the_budget():
    short = TrainConfig(batch_size=4096, n_tokens=44 * 4096, optimizer="adam")
    assert (short.warmup(), short.decay()) == (2, 9)  # 5% and 20% of 44 steps
    long = TrainConfig(batch_size=4096, n_tokens=40_000 * 4096, optimizer="adam")
    assert (long.warmup(), long.decay()) == (1000, 8000)
    assert TrainConfig(n_tokens=44 * 4096, optimizer="signum").decay() == 0  # averaging, no decay
    # schedule-free Signum: the same 2-step warm-up at every budget (never over half the run)
    for n in (44, 880, 40_000):
        sig = TrainConfig(n_tokens=n * 4096, optimizer="signum")
        assert sig.warmup() == 2 and [lr_factor(s, sig.n_steps, 2, sig.decay()) for s in range(3)] == [0.5, 1, 1]
    assert TrainConfig(n_tokens=3 * 4096, optimizer="signum").warmup() == 1
    assert TrainConfig(n_tokens=880 * 4096, optimizer="signum", warmup_frac=0.05).warmup() == 44  # asked for
    assert TrainConfig(n_tokens=44 * 4096, warmup_steps=50).warmup() == 50  # explicit steps win
    assert TrainConfig(n_tokens=40_000 * 4096, optimizer="adam", decay_max=500).decay() == 500


def test_lr_factor_shape():
    # 100 steps, 10 warm-up, 20 decay: ramp to 1, flat, linear to 0 at the end
    assert lr_factor(0, 100, 10, 20) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 20) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, 20) == pytest.approx(1.0)
    assert lr_factor(90, 100, 10, 20) == pytest.approx(0.5)
    assert lr_factor(99, 100, 10, 20) == pytest.approx(0.05)
    assert lr_factor(0, 100, 0, 0) == 1.0


def test_default_lr_rule():
    F = 9216
    width = 1 / math.sqrt(F / 2**14)
    # Adam: Gao et al.'s rate for long runs, sqrt(5000 / n) more for short ones, at most 16x
    assert default_lr("adam", F, 40_000) == pytest.approx(BASE_LR["adam"] * width)
    assert default_lr("adam", F, 44) == pytest.approx(BASE_LR["adam"] * width * math.sqrt(5000 / 44))
    assert default_lr("adam", F, 1) == pytest.approx(BASE_LR["adam"] * width * 16)
    # Signum: the same rate at every budget
    assert default_lr("signum", F, 44) == default_lr("signum", F, 40_000) == pytest.approx(5e-3 * width)
    assert TrainConfig(optimizer="adam", n_tokens=44 * 4096).resolved(F).lr == default_lr("adam", F, 44)


def test_bad_train_settings_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="learning_rate"):
        train({"method": "topk", "learning_rate": 1e-3}, torch.randn(64, 8), progress=False)


def test_every_field_has_a_doc():
    for cls in (TrainConfig, TopKConfig, *[c.config_cls for c in dec.REGISTRY.values() if issubclass(c, SAE)]):
        docs = field_docs(cls)
        assert all(docs.values()), [k for k, v in docs.items() if not v]


def test_artifact_config_holds_only_the_model(tmp_path):
    x = torch.randn(512, 8)
    cfg = dict(
        method="topk",
        d_sae=16,
        k=2,
        batch_size=64,
        n_tokens=64 * 3,
        lr=1e-3,
        wandb="disabled",
        device="cpu",
        optimizer="adam",
        seed=3,
    )
    sae = train(cfg, x, out=tmp_path / "a", progress=False)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert not {"lr", "optimizer", "batch_size", "n_tokens", "seed", "device", "wandb"} & set(saved)
    run = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert (run["lr"], run["optimizer"], run["seed"], run["batch_size"]) == (1e-3, "adam", 3, 64)
    assert dec.load(tmp_path / "a").cfg == sae.cfg


def test_old_artifact_with_run_fields_loads(tmp_path):
    """An artifact written before the split has lr, batch_size, wandb... in config.json."""
    x = torch.randn(512, 8)
    sae = train(
        dict(method="topk", d_sae=16, k=2, batch_size=64, n_tokens=128, wandb="disabled", device="cpu"),
        x,
        out=tmp_path / "a",
        progress=False,
    )
    path = tmp_path / "a" / "config.json"
    old = json.loads(path.read_text()) | {
        "lr": 1e-3,
        "batch_size": 64,
        "n_tokens": 128,
        "seed": 0,
        "warmup_steps": 50,
        "decay_frac": 0.2,
        "wandb": "offline",
        "betas": [0.9, 0.999],
        "prefetch": 2,
        "extra": {},
    }
    path.write_text(json.dumps(old))
    (tmp_path / "a" / "train_config.json").unlink()
    loaded = dec.load(tmp_path / "a")
    assert loaded.cfg == sae.cfg
    torch.testing.assert_close(loaded.W_dec, sae.W_dec)
