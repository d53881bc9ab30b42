"""BA / GBA: the bias update against a hand-computed step, statistics from real steps, group
targets, no gradient on the biases, exact resume of the adaptation state, SAELens export."""

from interp.decomposers.sae.train_config import TrainConfig
import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import interp.decomposers as dec
import interp.decomposers.sae.trainer as trainer_mod
from interp.decomposers.sae import BAConfig, BiasAdaptationSAE, GBAConfig, GroupBiasAdaptationSAE, train
from interp.decomposers.sae.bias_adaptation import group_targets


def test_group_targets_are_geometric():
    t = group_targets(10, 0.1, 1e-3)
    assert math.isclose(t[0].item(), 0.1, rel_tol=1e-6) and math.isclose(t[-1].item(), 1e-3, rel_tol=1e-5)
    ratios = t[:-1] / t[1:]
    assert torch.allclose(ratios, ratios[0].expand(9), rtol=1e-4)
    assert group_targets(1, 0.2, 1e-3).tolist() == [pytest.approx(0.2)]


@pytest.mark.parametrize("tied", [True, False])
def test_quantile_bias_init_fires_each_neuron_at_its_target(tied):
    """bias_init="quantile": on the batch it was set from, each neuron fires at its group's target
    (up to one token of rounding; less where the bias is clamped at 0), checked per neuron against
    torch.quantile."""
    cfg = GBAConfig(d_in=16, d_sae=40, n_groups=4, htf=0.5, ltf=0.05, tied=tied, bias_init="quantile")
    sae = GroupBiasAdaptationSAE(cfg, TrainConfig(seed=1))
    x = torch.randn(1000, 16) + 0.5
    sae.init_from_data(x)
    y = (x - sae.b_dec) @ sae._W()
    target = sae.targets[sae.group]
    freq = (y + sae.b_enc > 0).float().mean(0)
    free = sae.b_enc < 0
    assert free.sum() > 30 and (freq - target)[free].abs().max() <= 1.5 / len(x)
    assert (freq[~free] <= target[~free]).all()
    for m in range(cfg.d_sae):
        want = (-torch.quantile(y[:, m], 1 - target[m].item(), interpolation="nearest")).clamp(max=0)
        assert sae.b_enc[m] == pytest.approx(want.item(), abs=1e-6)
    assert torch.equal(GroupBiasAdaptationSAE(dataclasses.replace(cfg, bias_init="zero")).b_enc, torch.zeros(40))
    with pytest.raises(ValueError, match="bias_init"):
        GroupBiasAdaptationSAE(dataclasses.replace(cfg, bias_init="median"))


def test_bias_update_matches_hand_computed_step():
    sae = GroupBiasAdaptationSAE(
        GBAConfig(
            d_in=4,
            d_sae=6,
            n_groups=2,
            htf=0.5,
            ltf=0.1,
            update_every=1,
            buffer_tokens=20,
            gamma_up=0.1,
            gamma_down=0.2,
            bias_min=-1.0,
        ),
        TrainConfig(batch_size=10),
    )
    sae.group.copy_(torch.tensor([0, 0, 0, 1, 1, 1]))  # targets 0.5 (group 0), 0.1 (group 1)
    sae.b_enc.copy_(torch.tensor([-0.3, -0.5, -0.1, -0.2, -0.95, -0.4]))
    # two buffered batches of 10 tokens: firing counts and peaks per neuron
    sae.ring_tokens.copy_(torch.tensor([10.0, 10.0]))
    sae.ring_fired.copy_(torch.tensor([[7, 0, 3, 2, 1, 0], [5, 0, 2, 1, 0, 0.0]]))
    sae.ring_peak.copy_(torch.tensor([[1.0, 0, 0.4, 2.0, 0.6, 0], [2.0, 0, 0.8, 1.0, 0.2, 0]]))
    sae.adapt_biases()
    # p = [0.6, 0, 0.25, 0.15, 0.05, 0]; r = [2, 0, 0.8, 2, 0.6, 0]
    # group means of positive peaks: g0 (2 + 0.8)/2 = 1.4, g1 (2 + 0.6)/2 = 1.3
    expect = [
        -0.3 - 0.2 * 2.0,  # 0.6 > 0.5: lowered by gamma_down * r
        min(-0.5 + 0.1 * 1.4, 0.0),  # dead: raised by gamma_up * group mean peak
        -0.1,  # 0 < 0.25 < 0.5: unchanged
        max(-0.2 - 0.2 * 2.0, -1.0),  # 0.15 > 0.1: lowered
        -0.95,  # 0 < 0.05 < 0.1: unchanged
        min(-0.4 + 0.1 * 1.3, 0.0),  # dead
    ]
    assert torch.allclose(sae.b_enc, torch.tensor(expect))
    sae.b_enc.copy_(torch.tensor([-0.9, -0.01, 0, 0, 0, -0.01]))
    sae.adapt_biases()  # clamps: lowered to at most bias_min, raised to at most 0
    assert sae.b_enc[0].item() == -1.0 and sae.b_enc[1].item() == 0.0 and sae.b_enc[5].item() == 0.0


@pytest.mark.parametrize("activation, tied", [("relu", True), ("jumprelu", False)])
def test_statistics_from_steps_and_no_bias_gradient(activation, tied):
    cfg = BAConfig(d_in=8, d_sae=32, update_every=2, activation=activation, tied=tied, htf=0.2)
    sae = BiasAdaptationSAE(cfg, TrainConfig(batch_size=16, seed=0))
    sae.b_enc.fill_(-0.2)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(16, 8, generator=g) for _ in range(2)]
    pres = []
    for step, x in enumerate(xs, 1):
        with torch.no_grad():
            pres.append((x - sae.b_dec) @ (sae.W_dec.T if tied else sae.W_enc) + sae.b_enc)
        out = sae.step(x, None)
        out.loss.backward()
        assert sae.b_enc.grad is None and sae.W_dec.grad is not None
        assert (sae.W_enc.grad is None) == tied and (sae.scale.grad is None) != tied
        sae.after_step(x, out, step)
    pre = torch.cat(pres)
    p, r = (pre > 0).float().mean(0), pre.max(0).values.clamp_min(0)
    group_mean = r[r > 0].mean()
    b = torch.full((32,), -0.2)
    expect = torch.where(p > 0.2, (b - cfg.gamma_down * r).clamp_min(-math.sqrt(8)), b)
    expect = torch.where(p < 1e-6, (b + cfg.gamma_up * group_mean).clamp_max(0), expect)
    assert torch.allclose(sae.b_enc, expect, atol=1e-6)


def test_sparse_and_dense_paths_agree():
    sae = GroupBiasAdaptationSAE(
        GBAConfig(d_in=8, d_sae=64, activation="jumprelu", train_b_dec=True, sparse_frac=1.0),
        TrainConfig(batch_size=16, seed=0),
    )
    sae.b_enc.copy_(-torch.rand(64) * 4)
    x = torch.randn(16, 8)
    out_sparse = sae.step(x, None)
    stats_sparse = sae._pending
    sae.cfg = dataclasses.replace(sae.cfg, sparse_frac=0.0)
    out_dense = sae.step(x, None)
    assert torch.allclose(out_sparse.x_hat, out_dense.x_hat, atol=1e-5)
    # the buffered firing counts and peaks (what the bias update reads) agree too
    for a, b in zip(stats_sparse, sae._pending):
        assert torch.allclose(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=1e-5)
    assert torch.equal(out_sparse.fired, out_dense.fired) and torch.allclose(
        out_sparse.terms["l0"], out_dense.terms["l0"]
    )
    g1 = torch.autograd.grad(out_sparse.loss, [sae.W_dec, sae.b_dec, sae.scale])
    g2 = torch.autograd.grad(out_dense.loss, [sae.W_dec, sae.b_dec, sae.scale])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)


def _fail_on_step(monkeypatch, n):
    real, calls = trainer_mod._train_step, []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "_train_step", wrapped)


def test_adaptation_state_survives_resume(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2048, 24, generator=g)) @ torch.randn(24, 12, generator=g)
    cfg = dict(
        method="gba",
        d_sae=48,
        batch_size=64,
        n_tokens=64 * 20,
        lr=3e-3,
        wandb="disabled",
        seed=0,
        device="cpu",
        warmup_steps=5,
        checkpoint_every=5,
        update_every=3,
        buffer_tokens=64 * 4,
        tied=False,
        activation="jumprelu",
    )
    ref = train(cfg, x, out=tmp_path / "ref", progress=False)
    assert ref.b_enc.min() < 0  # the adaptation did act
    _fail_on_step(monkeypatch, 12)
    with pytest.raises(RuntimeError):
        train(cfg, x, out=tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    sae = train(cfg, x, out=tmp_path / "resumed", progress=False)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, sae.state_dict()[k]), k
    loaded = dec.load(tmp_path / "ref")
    assert isinstance(loaded, GroupBiasAdaptationSAE)
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x[:32]), ref.reconstruct(x[:32]))


@pytest.mark.parametrize("activation, arch", [("relu", "standard"), ("jumprelu", "jumprelu")])
def test_saelens_export_reproduces_forward(tmp_path, activation, arch):
    x = torch.randn(1024, 12) * 6 + 1
    sae = train(
        dict(
            method="ba",
            d_sae=40,
            batch_size=128,
            n_tokens=1024,
            wandb="disabled",
            device="cpu",
            activation=activation,
            update_every=2,
        ),
        x,
        out=tmp_path,
        progress=False,
    )
    with torch.no_grad():
        sae.scale[:5] = -sae.scale[:5]  # negative output scales must map exactly too
        sae.b_enc.copy_(-torch.rand(40) * 3)
        ours = sae.reconstruct(x)
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == arch and (cfg["d_in"], cfg["d_sae"]) == (12, 40)
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert torch.allclose(w["W_dec"].norm(dim=1), torch.ones(40), atol=1e-5)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    feats = torch.relu(pre) * (pre > w["threshold"]) if arch == "jumprelu" else torch.relu(pre)
    assert torch.allclose(feats @ w["W_dec"] + w["b_dec"], ours, atol=1e-4)


def test_default_scale_start_is_the_least_squares_scale():
    """scale_init=None (the default): every a_m starts at the common scale that best reconstructs
    the first batch: reconstruction error is smallest there, checked against nearby scales."""
    cfg = BAConfig(d_in=16, d_sae=64, htf=0.2)
    sae = BiasAdaptationSAE(cfg, TrainConfig(seed=0))
    x = torch.randn(500, 16) + 0.3
    sae.init_from_data(x)
    a = sae.scale[0].item()
    assert torch.all(sae.scale == a) and 0 < a < 1

    def err(scale: float) -> float:
        codes = torch.relu(sae.pre_acts(x)) * scale
        return ((codes @ sae.W_dec + sae.b_dec - x) ** 2).sum().item()

    assert err(a) < min(err(0.9 * a), err(1.1 * a), err(1.0))
    assert torch.all(BiasAdaptationSAE(dataclasses.replace(cfg, scale_init=1.0)).scale == 1)


def test_default_update_period_follows_the_budget():
    """update_every=None: n_steps // 500 within [1, 50]; an explicit period is kept."""
    cfg = GBAConfig(d_in=8, d_sae=32)
    periods = [
        GroupBiasAdaptationSAE(cfg, TrainConfig(n_tokens=n * 256, batch_size=256)).update_every
        for n in (100, 5_000, 100_000)
    ]
    assert periods == [1, 10, 50]
    assert GroupBiasAdaptationSAE(dataclasses.replace(cfg, update_every=7), TrainConfig()).update_every == 7
