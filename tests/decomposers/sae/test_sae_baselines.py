"""Numeric checks of the baseline SAEs against direct computations: BatchTopK's batch selection and
inference threshold, JumpReLU's straight-through gradients, the ReLU SAE's weighted L1 and folded
interface, and the sparse and dense step paths agreeing."""

from interp.decomposers.sae.train_config import TrainConfig
import math

import pytest
import torch

import interp.decomposers.sae.ops as ops
from interp.decomposers.sae import (
    BatchTopKConfig,
    BatchTopKSAE,
    JumpReLUConfig,
    JumpReLUSAE,
    ReLUConfig,
    ReLUSAE,
    train,
)
from interp.decomposers.sae.batchtopk import batch_threshold

D, F, B = 16, 48, 64


def _x(n=B, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 2 + 0.3


def _perturb(sae, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(0.3 * torch.randn(sae.cfg.d_sae, generator=g))
        sae.b_dec.copy_(0.2 * torch.randn(sae.cfg.d_in, generator=g))
    return sae


def _grads(sae, xn):
    sae.zero_grad()
    out = sae.step(xn, None)
    out.loss.backward()
    return out, {k: p.grad.clone() for k, p in sae.named_parameters() if p.grad is not None}


# -- BatchTopK ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_keep", [1, 7, 64, 500, B * F])
def test_batch_threshold_is_the_kth_largest(n_keep):
    acts = torch.relu(torch.randn(B, F, generator=torch.Generator().manual_seed(n_keep)))
    want = acts.reshape(-1).sort(descending=True).values[n_keep - 1]
    assert batch_threshold(acts, n_keep).item() == want.item()


def test_batch_threshold_when_one_token_holds_most_of_the_top():
    """The per-token shortlist is too short for a token with many large values: exact fallback."""
    acts = torch.rand(B, F) * 0.1
    acts[3] = 5.0 + torch.rand(F)  # one token has all of the F largest values
    n_keep = 2 * F
    want = acts.reshape(-1).sort(descending=True).values[n_keep - 1]
    assert batch_threshold(acts, n_keep).item() == want.item()


def test_batchtopk_training_step_keeps_k_per_token_on_average():
    sae = _perturb(BatchTopKSAE(BatchTopKConfig(d_in=D, d_sae=F, k=3)))
    xn = _x()
    out = sae.step(xn, None)
    pre = sae.pre_acts(xn).detach()
    flat = torch.relu(pre).reshape(-1)
    t = flat.sort(descending=True).values[3 * B - 1]
    assert out.terms["l0"].item() == 3.0  # exactly k * B kept over the batch (no ties here)
    assert out.terms["batch_threshold"].item() == pytest.approx(t.item())
    codes = torch.where(pre >= t, torch.relu(pre), torch.zeros_like(pre))
    torch.testing.assert_close(out.x_hat, codes @ sae.W_dec.detach() + sae.b_dec.detach(), atol=1e-5, rtol=1e-5)
    counts = (codes > 0).sum(1)
    assert counts.min() < 3 < counts.max()  # varies per token, unlike TopK
    sae.train()
    torch.testing.assert_close(sae.encode(xn), codes)  # training-mode encode is the batch top-k


def test_batchtopk_threshold_is_a_bias_corrected_ema_of_the_smallest_kept_activation():
    sae = BatchTopKSAE(BatchTopKConfig(d_in=D, d_sae=F, k=3, threshold_lr=0.1))
    seen = []
    for step in range(1, 4):
        xn = _x(seed=step)
        out = sae.step(xn, None)
        with torch.no_grad():
            kept = out.terms["batch_threshold"]
            pre = sae.pre_acts(xn)
            assert kept.item() == pytest.approx(torch.relu(pre).reshape(-1).topk(3 * B).values.min().item())
        sae.after_step(xn, out, step)
        seen.append(kept.item())
        ema = 0.0
        for v in seen:
            ema = 0.9 * ema + 0.1 * v
        assert sae.threshold.item() == pytest.approx(ema / (1 - 0.9 ** len(seen)), rel=1e-6)
    assert sae.threshold.item() == pytest.approx((0.081 * seen[0] + 0.09 * seen[1] + 0.1 * seen[2]) / 0.271, rel=1e-6)


def test_batchtopk_eval_encode_uses_the_threshold():
    sae = _perturb(BatchTopKSAE(BatchTopKConfig(d_in=D, d_sae=F, k=3))).eval()
    with torch.no_grad():
        sae.threshold.fill_(0.7)
        sae.norm_scale.fill_(0.5)
        x = _x()
        pre = sae.pre_acts(x * 0.5)
        torch.testing.assert_close(sae.encode(x), torch.where(pre > 0.7, pre, torch.zeros_like(pre)))
        one = sae.encode(x[:1])  # a token's code no longer depends on its batch
        torch.testing.assert_close(one, sae.encode(x)[:1])


def test_batchtopk_trained_threshold_matches_k_at_inference():
    g = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(64, D, generator=g), dim=1)
    codes = torch.zeros(20_000, 64).scatter_(
        1, torch.rand(20_000, 64, generator=g).argsort(1)[:, :3], torch.rand(20_000, 3, generator=g) + 0.5
    )
    X = codes @ atoms
    sae = train(
        dict(
            method="batchtopk",
            d_sae=F,
            k=3,
            batch_size=256,
            n_tokens=256 * 150,
            lr=3e-3,
            threshold_lr=0.05,
            wandb="disabled",
            device="cpu",
        ),
        X,
        progress=False,
    )
    assert sae.threshold.item() > 0
    with torch.no_grad():
        l0 = (sae.encode(X[:4096]) != 0).float().sum(1).mean().item()
    assert 2.0 < l0 < 4.5, l0


# -- JumpReLU ------------------------------------------------------------------------------------------


def _jumprelu(**kw):
    sae = _perturb(JumpReLUSAE(JumpReLUConfig(d_in=D, d_sae=F, bandwidth=0.05, l0_coeff=0.02, **kw)))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # thresholds spread over the pre-activations, many inside the window
        sae.log_threshold.copy_((0.5 + torch.rand(F, generator=g)).log())
    return sae


def test_jumprelu_ste_gradients_match_a_direct_computation():
    sae = _jumprelu()
    xn = _x() * 0.5
    out, grads = _grads(sae, xn)
    with torch.no_grad():
        z = sae.pre_acts(xn)
        theta, eps = sae.threshold, sae.eps
        H = (z > theta).float()
        f = z * H
        x_hat = f @ sae.W_dec + sae.b_dec
        n = len(xn)
        recon = (x_hat - xn).pow(2).sum() / (n * D)
        torch.testing.assert_close(out.terms["recon"], recon)
        torch.testing.assert_close(out.terms["l0"], H.sum() / n)
        dL_df = 2 * (x_hat - xn) @ sae.W_dec.T / (n * D)
        K = ((z - theta).abs() < eps / 2).float()  # rectangle kernel at (z - theta) / eps
        assert 0 < K.sum() < K.numel()
        d_theta = (-(theta / eps) * K * dL_df).sum(0) + 0.02 * (-(1 / eps) * K).sum(0) / n
        torch.testing.assert_close(grads["log_threshold"], d_theta * theta, atol=1e-5, rtol=1e-4)
        dz = H * dL_df  # no gradient through H, none from the L0 term
        torch.testing.assert_close(grads["b_enc"], dz.sum(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grads["W_enc"], (xn - sae.b_dec).T @ dz, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grads["W_dec"], f.T @ (2 * (x_hat - xn) / (n * D)), atol=1e-5, rtol=1e-4)


def test_jumprelu_units_and_encode():
    sae = JumpReLUSAE(JumpReLUConfig(d_in=D, d_sae=F))
    assert sae.eps == pytest.approx(1e-3 * math.sqrt(D))
    torch.testing.assert_close(sae.threshold, torch.full((F,), 1e-3 * math.sqrt(D)))
    sae = _jumprelu()
    with torch.no_grad():
        sae.norm_scale.fill_(0.5)
        x = _x()
        z = sae.pre_acts(x * 0.5)
        torch.testing.assert_close(sae.encode(x), z * (z > sae.threshold))


def test_jumprelu_init_l0_starts_codes_at_the_requested_sparsity():
    sae = JumpReLUSAE(JumpReLUConfig(d_in=D, d_sae=F, init_l0=6))
    xn = _x(2048)
    sae.init_from_data(xn)
    with torch.no_grad():
        l0 = (sae.encode(xn) != 0).float().sum(1).mean().item()
    assert 5.0 < l0 < 7.0, l0


# -- ReLU -------------------------------------------------------------------------------------------------


def test_relu_loss_is_mse_plus_decoder_norm_weighted_l1():
    sae = _perturb(
        ReLUSAE(
            ReLUConfig(d_in=D, d_sae=F, l1_coeff=2.0, l1_warmup_frac=0.5), TrainConfig(n_tokens=B * 10, batch_size=B)
        )
    )
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(F, 1, generator=torch.Generator().manual_seed(2)) * 3 + 0.5)
    xn = _x()
    sae.steps_done.fill_(2)  # 2 of 5 warm-up steps
    out = sae.step(xn, None)
    with torch.no_grad():
        f = torch.relu(sae.pre_acts(xn))
        mse = (f @ sae.W_dec + sae.b_dec - xn).pow(2).sum(1).mean()
        l1 = (f * sae.W_dec.norm(dim=1)).sum(1).mean()
        torch.testing.assert_close(out.loss, mse + 2.0 * 0.4 * l1, atol=1e-4, rtol=1e-5)
        sae.steps_done.fill_(0)
        torch.testing.assert_close(sae.step(xn, None).loss, mse, atol=1e-4, rtol=1e-5)


def test_relu_interface_folds_decoder_norms():
    sae = _perturb(ReLUSAE(ReLUConfig(d_in=D, d_sae=F)))
    norms = torch.rand(F, generator=torch.Generator().manual_seed(3)) * 2 + 0.1
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(sae.W_dec, dim=1) * norms[:, None])
        sae.norm_scale.fill_(0.25)
        x = _x()
        f = torch.relu(sae.pre_acts(x * 0.25))
        torch.testing.assert_close(sae.encode(x), f * norms, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.reconstruct(x), (f @ sae.W_dec + sae.b_dec) / 0.25, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(sae.directions(), sae.W_dec / norms[:, None])


def test_relu_decoder_norms_train_freely_or_stay_unit():
    X = _x(4096)
    free = train(
        dict(
            method="relu",
            d_sae=F,
            batch_size=256,
            n_tokens=256 * 20,
            lr=3e-3,
            l1_coeff=0.5,
            wandb="disabled",
            device="cpu",
        ),
        X,
        progress=False,
    )
    norms = free.W_dec.detach().norm(dim=1)
    assert (norms - 0.1).abs().max() > 0.02 and norms.std() > 1e-3  # moved from the 0.1 init
    unit = train(
        dict(
            method="relu",
            d_sae=F,
            batch_size=256,
            n_tokens=256 * 20,
            lr=3e-3,
            l1_coeff=0.5,
            unit_decoder=True,
            wandb="disabled",
            device="cpu",
        ),
        X,
        progress=False,
    )
    torch.testing.assert_close(unit.W_dec.detach().norm(dim=1), torch.ones(F), atol=1e-5, rtol=0)


# -- sparse and dense step paths agree --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: _perturb(ReLUSAE(ReLUConfig(d_in=D, d_sae=F, l1_coeff=0.3))),
        lambda: _jumprelu(),
        lambda: _perturb(BatchTopKSAE(BatchTopKConfig(d_in=D, d_sae=F, k=4))),
    ],
    ids=["relu", "jumprelu", "batchtopk"],
)
def test_sparse_and_dense_steps_agree(make, monkeypatch):
    xn = _x()
    monkeypatch.setattr(ops, "SPARSE_MAX_DENSITY", 1.0)
    sparse_out, sparse = _grads(make(), xn)
    monkeypatch.setattr(ops, "SPARSE_MAX_DENSITY", 0.0)
    dense_out, dense = _grads(make(), xn)
    torch.testing.assert_close(sparse_out.loss, dense_out.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse_out.x_hat, dense_out.x_hat, atol=1e-5, rtol=1e-5)
    assert torch.equal(sparse_out.fired, dense_out.fired)
    assert sparse.keys() == dense.keys()
    for key in sparse:
        torch.testing.assert_close(sparse[key], dense[key], atol=1e-5, rtol=1e-4, msg=key)
