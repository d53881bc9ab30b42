"""The sparse SAE kernels (gather_encode, sparse_decode) against naive dense implementations."""

from interp.decomposers.sae.train_config import TrainConfig
import pytest
import torch

from interp.decomposers.sae import TopKConfig, TopKSAE, train
from interp.decomposers.sae.ops import Pattern, gather_encode, sparse_decode
from interp.decomposers.sae.topk import normalized_mse

B, D, F, K = 6, 5, 9, 3


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _params(dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device).requires_grad_()  # noqa: E731
    x = torch.randn(B, D, generator=g, dtype=dtype).to(device)
    return x, make(D), make(D, F), make(F), make(F, D)  # x, b_dec, W_enc, b_enc, W_dec


def _topk_idx(x, b_dec, W_enc, b_enc, k=K):
    with torch.no_grad():
        return ((x - b_dec) @ W_enc + b_enc).topk(k, dim=1).indices


def _sparse_vals(x, b_dec, W_enc, b_enc, idx):
    with torch.no_grad():
        pre = (x - b_dec) @ W_enc + b_enc
    return gather_encode(x, b_dec, W_enc, b_enc, pre, idx)


def _dense_vals(x, b_dec, W_enc, b_enc, idx):
    return ((x - b_dec) @ W_enc + b_enc).gather(1, idx)


def _dense_decode(vals, idx, W_dec):
    zeros = torch.zeros(vals.shape[0], W_dec.shape[0], dtype=vals.dtype, device=vals.device)
    return zeros.scatter(1, idx, vals) @ W_dec


def test_gather_encode_forward_values():
    x, b_dec, W_enc, b_enc, _ = _params()
    idx = _topk_idx(x, b_dec, W_enc, b_enc)
    torch.testing.assert_close(_sparse_vals(x, b_dec, W_enc, b_enc, idx), _dense_vals(x, b_dec, W_enc, b_enc, idx))


def test_gather_encode_gradcheck():
    x, b_dec, W_enc, b_enc, _ = _params()
    idx = _topk_idx(x, b_dec, W_enc, b_enc)  # fixed: the selection is not differentiated
    assert torch.autograd.gradcheck(lambda bd, we, be: _sparse_vals(x, bd, we, be, idx), (b_dec, W_enc, b_enc))


def test_sparse_decode_forward_and_gradcheck():
    x, b_dec, W_enc, b_enc, W_dec = _params()
    idx = _topk_idx(x, b_dec, W_enc, b_enc)
    vals = torch.randn(B, K, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(sparse_decode(vals, idx, W_dec), _dense_decode(vals, idx, W_dec))
    assert torch.autograd.gradcheck(lambda v, w: sparse_decode(v, idx, w), (vals, W_dec))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared_pattern", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_full_sparse_pass_gradients_equal_dense(dtype, tol, shared_pattern, device):
    """Encode (top-k, ReLU) then decode, squared error: every parameter's gradient as dense."""
    grads = []
    for impl in ("sparse", "dense"):
        x, b_dec, W_enc, b_enc, W_dec = _params(dtype, seed=1, device=device)
        idx = _topk_idx(x, b_dec, W_enc, b_enc)
        if impl == "sparse":
            sel = Pattern(idx, F) if shared_pattern else idx
            vals = torch.relu(_sparse_vals(x, b_dec, W_enc, b_enc, sel))
            x_hat = sparse_decode(vals, sel, W_dec) + b_dec
        else:
            vals = torch.relu(_dense_vals(x, b_dec, W_enc, b_enc, idx))
            x_hat = _dense_decode(vals, idx, W_dec) + b_dec
        ((x_hat - x) ** 2).sum().backward()
        grads.append([p.grad for p in (W_enc, b_enc, b_dec, W_dec)])
    for name, gs, gd in zip(("W_enc", "b_enc", "b_dec", "W_dec"), *grads):
        assert gs is not None and gs.abs().sum() > 0, name
        torch.testing.assert_close(gs, gd, atol=tol, rtol=tol, msg=name)


def test_pattern_by_feature():
    idx = torch.tensor([[2, 0], [2, 1], [0, 3]])
    crow, tokens, order = Pattern(idx, 5).by_feature()
    assert crow.tolist() == [0, 2, 3, 5, 6, 6]  # latent 0: 2 entries, 1: 1, 2: 2, 3: 1, 4: 0
    flat = idx.reshape(-1)
    assert flat[order].tolist() == [0, 0, 1, 2, 2, 3]
    assert tokens.tolist() == (order // 2).tolist()
    assert sorted(zip(flat[order].tolist(), tokens.tolist())) == [(0, 0), (0, 2), (1, 1), (2, 0), (2, 1), (3, 2)]


def test_gather_encode_repeated_latents_across_tokens():
    """Many tokens selecting the same latents: index_add/sparse products must accumulate."""
    x, b_dec, W_enc, b_enc, _ = _params()
    idx = torch.tensor([[0, 1, 2]] * B)
    weights = torch.randn(B, 3, dtype=torch.float64)
    (_sparse_vals(x, b_dec, W_enc, b_enc, idx) * weights).sum().backward()
    sparse = [p.grad.clone() for p in (b_dec, W_enc, b_enc)]
    for p in (b_dec, W_enc, b_enc):
        p.grad = None
    (_dense_vals(x, b_dec, W_enc, b_enc, idx) * weights).sum().backward()
    for gs, p in zip(sparse, (b_dec, W_enc, b_enc)):
        torch.testing.assert_close(gs, p.grad)


def test_gather_encode_gradient_wrt_input():
    x, b_dec, W_enc, b_enc, _ = _params()
    idx = _topk_idx(x, b_dec, W_enc, b_enc)
    x = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda xx: _sparse_vals(xx, b_dec.detach(), W_enc.detach(), b_enc.detach(), idx), (x,)
    )


def _random_sae(cfg: TopKConfig, seed: int) -> TopKSAE:
    """A float64 TopK SAE with random encoder and decoder biases."""
    sae = TopKSAE(cfg, TrainConfig(seed=seed)).double()
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    return sae


def _grads_of_step(sae: TopKSAE, xn: torch.Tensor, dead: torch.Tensor | None):
    """(step output, gradients of its loss), the SAE's grads zeroed again for the reference."""
    out = sae.step(xn, dead=dead)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    return out, grads


def _dense_top(pre: torch.Tensor, k: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-autograd codes: relu of each row's top k entries of ``pre`` (among ``allowed``)."""
    ranked = pre.detach() if allowed is None else pre.detach().masked_fill(~allowed, float("-inf"))
    idx = ranked.topk(k, dim=1).indices
    return torch.zeros_like(pre).scatter(1, idx, torch.relu(pre.gather(1, idx)))


def test_topk_step_gradients_equal_dense_reference():
    """TopKSAE.step (FVU loss through the sparse kernels) has the gradients of a dense version."""
    sae = _random_sae(TopKConfig(d_in=D, d_sae=F, k=K, aux_alpha=0.0), seed=3)
    xn = torch.randn(16, D, dtype=torch.float64)
    out, sparse = _grads_of_step(sae, xn, None)

    pre = (xn - sae.b_dec) @ sae.W_enc + sae.b_enc
    codes = _dense_top(pre, K)
    x_hat = codes @ sae.W_dec + sae.b_dec
    loss = ((x_hat - xn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    torch.testing.assert_close(out.loss, loss)
    torch.testing.assert_close(out.x_hat, x_hat.detach())
    loss.backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(sparse[n], p.grad, atol=1e-10, rtol=1e-8, msg=n)
    # fired: exactly the latents with a positive code somewhere in the batch
    fired = out.fired.nonzero().flatten() if out.fired.dtype == torch.bool else out.fired.unique()
    assert sorted(fired.tolist()) == torch.nonzero(codes.sum(0) > 0).flatten().tolist()


@pytest.mark.parametrize(
    "n_dead, aux_k",
    [(12, 12), (20, 8), (40, 4), (60, 64)],
    ids=["dense-all-dead-selected", "dense-top-of-dead", "sparse-few-of-many", "aux_k-capped"],
)
def test_topk_aux_loss_and_gradients_equal_dense_reference(n_dead, aux_k):
    """The AuxK term (dense block or sparse kernels, by how many latents are dead) has the loss and
    gradients of a plain autograd version: each token's top aux_k dead latents reconstruct the
    detached residual."""
    F_, K_ = 64, 4
    sae = _random_sae(TopKConfig(d_in=D, d_sae=F_, k=K_, aux_k=aux_k, aux_alpha=0.5), seed=1)
    xn = torch.randn(16, D, dtype=torch.float64)
    dead = torch.zeros(F_, dtype=torch.bool)
    dead[torch.randperm(F_, generator=torch.Generator().manual_seed(0))[:n_dead]] = True
    out, ours = _grads_of_step(sae, xn, dead)

    pre = (xn - sae.b_dec) @ sae.W_enc + sae.b_enc
    x_hat = _dense_top(pre, K_) @ sae.W_dec + sae.b_dec
    fvu = ((x_hat - xn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    aux_codes = _dense_top(pre, min(aux_k, n_dead), allowed=dead)
    err = (xn - x_hat).detach()
    aux = ((aux_codes @ sae.W_dec - err) ** 2).sum() / ((err - err.mean(0)) ** 2).sum()
    torch.testing.assert_close(out.terms["aux"], aux)
    (fvu + 0.5 * aux).backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(ours[n], p.grad, atol=1e-10, rtol=1e-8, msg=n)


def test_normalized_mse_is_batch_fvu():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert normalized_mse(x, x).item() == 0
    mean_pred = x.mean(0).expand_as(x)
    assert normalized_mse(mean_pred, x).item() == pytest.approx(1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_pattern_equals_dense(device):
    """A ragged pattern (any count per token, one token with none): values, x_hat and every
    gradient, including the input's, as a dense masked computation."""
    x, b_dec, W_enc, b_enc, W_dec = _params(seed=2, device=device)
    x.requires_grad_()
    with torch.no_grad():
        pre = (x - b_dec) @ W_enc + b_enc
    mask = pre > 0.3
    mask[2] = False
    tok, lat = mask.nonzero(as_tuple=True)
    pattern = Pattern.ragged(tok, lat, B, F)
    assert pattern.crow.tolist() == [0, *mask.sum(1).cumsum(0).tolist()]
    weights = torch.randn(B, D, dtype=x.dtype, device=device)
    results = []
    for impl in ("ragged", "dense"):
        if impl == "ragged":
            vals = torch.relu(gather_encode(x, b_dec, W_enc, b_enc, pre, pattern))
            assert vals.shape == (len(lat),)
            x_hat = sparse_decode(vals, pattern, W_dec)
        else:
            codes = torch.relu((x - b_dec) @ W_enc + b_enc) * mask
            x_hat = codes @ W_dec
        grads = torch.autograd.grad((x_hat * weights).sum(), (x, b_dec, W_enc, b_enc, W_dec))
        results.append((x_hat, *grads))
    for name, a, b in zip(("x_hat", "x", "b_dec", "W_enc", "b_enc", "W_dec"), *results):
        torch.testing.assert_close(a, b, msg=name)


def test_ragged_decode_gradcheck():
    _, _, _, _, W_dec = _params()
    tok = torch.tensor([0, 0, 0, 1, 3, 3, 5])
    lat = torch.tensor([4, 0, 7, 4, 1, 2, 8])
    pattern = Pattern.ragged(tok, lat, B, F)
    vals = torch.randn(len(lat), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, w: sparse_decode(v, pattern, w), (vals, W_dec))


@pytest.mark.parametrize("n_dead", [0, 20])
def test_tied_topk_step_gradients_equal_dense_reference(n_dead):
    """``tied=True``: the encoder is W_dec^T, so the loss (FVU and AuxK) sends the encoder path's
    gradient into W_dec, as a plain autograd version with one matrix does; W_enc is an untrained
    copy, kept equal to W_dec^T after ``normalize_decoder`` and after training."""
    F_, K_ = 64, 4
    sae = _random_sae(TopKConfig(d_in=D, d_sae=F_, k=K_, aux_k=8, aux_alpha=0.5, tied=True), seed=1)
    assert torch.equal(sae.W_enc, sae.W_dec.t()) and not sae.W_enc.requires_grad
    xn = torch.randn(16, D, dtype=torch.float64)
    dead = torch.zeros(F_, dtype=torch.bool)
    dead[:n_dead] = True
    out = sae.step(xn, dead=dead if n_dead else None)
    out.loss.backward()
    ours = {n: p.grad.clone() for n, p in sae.named_parameters() if p.requires_grad}
    sae.zero_grad()

    W = sae.W_dec
    pre = (xn - sae.b_dec) @ W.t() + sae.b_enc
    x_hat = _dense_top(pre, K_) @ W + sae.b_dec
    loss = ((x_hat - xn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    if n_dead:
        err = (xn - x_hat).detach()
        aux_codes = _dense_top(pre, 8, allowed=dead)
        loss = loss + 0.5 * ((aux_codes @ W - err) ** 2).sum() / ((err - err.mean(0)) ** 2).sum()
    loss.backward()
    assert set(ours) == {"W_dec", "b_enc", "b_dec"}
    for n, g in ours.items():
        torch.testing.assert_close(g, getattr(sae, n).grad, atol=1e-10, rtol=1e-8, msg=n)

    with torch.no_grad():
        sae.W_dec.add_(0.1)
    sae.normalize_decoder()
    assert torch.equal(sae.W_enc, sae.W_dec.t())
    x = torch.randn(512, D)
    trained = train(
        dict(method="topk", k=K_, d_sae=F_, tied=True, batch_size=64, n_tokens=512, wandb="disabled"), x, progress=False
    )
    assert torch.equal(trained.W_enc, trained.W_dec.t())
