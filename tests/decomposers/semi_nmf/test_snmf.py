"""Semi-NMF: each update step against a direct dense computation (the paper's formulas written
out naively), the streamed iteration against the dense one, best-iterate bookkeeping, exact
recovery of a planted factorisation, NNLS encoding against scipy, and the artifact round trip."""

import numpy as np
import pytest
import torch

import interp.decomposers
from interp.decomposers.semi_nmf import SNMF, ops
from interp.decomposers.semi_nmf.fit import _first_pass, initialise, iterate
from interp.decomposers.semi_nmf.source import as_rows


def planted(n=1500, d=48, k=5, keep=5, density=0.3, seed=0):
    """X = G Fᵀ with signed F of exactly ``keep`` neurons per feature and sparse G >= 0."""
    gen = torch.Generator().manual_seed(seed)
    F = torch.zeros(d, k)
    for j in range(k):
        idx = torch.randperm(d, generator=gen)[:keep]
        F[idx, j] = torch.randn(keep, generator=gen).sign() * (1 + torch.rand(keep, generator=gen))
    G = torch.rand(n, k, generator=gen) * (torch.rand(n, k, generator=gen) < density)
    return G @ F.T, F, G


def dense_iteration(A, F, G, keep, ridge=1e-6, eps=1e-6):
    """One iteration exactly as the paper writes it, A = Xᵀ [d, n], with a per-column WTA loop."""
    k = G.shape[1]
    F = A @ G @ torch.linalg.inv(G.T @ G + ridge * torch.eye(k, dtype=G.dtype))
    for j in range(k):
        drop = F[:, j].abs().argsort(descending=True)[keep:]
        F[drop, j] = 0
    norms = G.norm(dim=0).clamp(min=1e-8)
    G, F = G / norms, F * norms
    P, Q = A.T @ F, F.T @ F
    pos, neg = (lambda M: (M.abs() + M) / 2), (lambda M: (M.abs() - M) / 2)
    G = G * torch.sqrt((pos(P) + G @ neg(Q)) / (neg(P) + G @ pos(Q) + eps))
    return F, G, ((A - F @ G.T) ** 2).sum().item()


def test_f_step_and_wta_match_dense():
    X, _, _ = planted()
    G = torch.rand(len(X), 5, dtype=torch.float64)
    Xd = X.double()
    F = ops.f_step(Xd.T @ G, G.T @ G, 1e-6)
    ref = Xd.T @ G @ torch.linalg.inv(G.T @ G + 1e-6 * torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(F, ref, rtol=1e-9, atol=1e-9)
    Fs, support = ops.wta(F, 4)
    for j in range(5):
        keep = set(F[:, j].abs().argsort(descending=True)[:4].tolist())
        assert set(support[j].tolist()) == keep
        assert set(Fs[:, j].nonzero().flatten().tolist()) == keep
        torch.testing.assert_close(Fs[list(keep), j], F[list(keep), j])


def test_g_step_and_gather_match_dense():
    X, F, _ = planted()
    Fs, support = ops.wta(torch.randn(48, 5), 3)
    torch.testing.assert_close(ops.x_times_f(X, Fs, support), X @ Fs, rtol=1e-5, atol=1e-5)
    wide, (Fw, sw) = torch.randn(100, 400), ops.wta(torch.randn(400, 5), 3)  # k·s ≤ d/4: the gather path
    torch.testing.assert_close(ops.x_times_f(wide, Fw, sw), wide @ Fw, rtol=1e-5, atol=1e-5)
    G = torch.rand(len(X), 5, dtype=torch.float64)
    Fd, Xd = Fs.double(), X.double()
    P, Q = Xd @ Fd, Fd.T @ Fd
    new = ops.g_step(G, P, Q, 1e-6)
    pos, neg = (lambda M: (M.abs() + M) / 2), (lambda M: (M.abs() - M) / 2)
    ref = G * torch.sqrt((pos(P) + G @ neg(Q)) / (neg(P) + G @ pos(Q) + 1e-6))
    torch.testing.assert_close(new, ref)
    assert (new >= 0).all()


def test_streamed_iteration_equals_dense_paper_iteration():
    torch.manual_seed(1)
    X, _, _ = planted()
    rows = as_rows(X)
    F0, G = initialise(rows, 5, "random", 0, 400, "cpu")
    XtG, GtG, x_sq, loss0 = _first_pass(rows, F0, G, 400, "cpu")
    assert loss0 == pytest.approx(((X - G @ F0.T) ** 2).sum().item(), rel=1e-4)
    Fd, Gd = F0.double(), G.double()
    for _ in range(3):
        F, part = iterate(rows, F0, G, XtG, GtG, keep=5, ridge=1e-6, eps=1e-6, chunk=400, device="cpu")
        Fd, Gd, loss_d = dense_iteration(X.T.double(), Fd, Gd, 5)
        torch.testing.assert_close(F.double(), Fd, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(G.double(), Gd, rtol=1e-3, atol=1e-4)
        assert x_sq + part == pytest.approx(loss_d, rel=1e-3)
        assert (G >= 0).all()


@pytest.mark.parametrize("keep_best", [True, False])
def test_returned_iterate_is_the_best_seen(keep_best):
    X = torch.randn(600, 40).relu()  # no exact factorisation: the loss wanders under WTA
    s = SNMF.fit(X, rank=8, sparsity=0.05, max_iter=60, patience=1000, keep_best=keep_best, progress=False)
    hist = s.meta["history"]
    loss = ((X - s.fit_codes @ s.W_dec) ** 2).sum().item()
    assert (s.fit_codes >= 0).all()
    if keep_best:
        assert s.meta["loss"] <= s.meta["initial_loss"]
        assert s.meta["loss"] == pytest.approx(min(hist), rel=1e-12)
        assert loss == pytest.approx(s.meta["loss"], rel=1e-3)
    else:
        assert loss == pytest.approx(hist[-1], rel=1e-3)


def test_early_stopping_uses_patience():
    X, _, _ = planted(n=400)
    s = SNMF.fit(X, rank=5, sparsity=0.1, max_iter=5000, patience=5, tol=1e30, progress=False)
    assert s.meta["iterations"] == 6 and s.meta["best_iter"] == 0  # nothing beats the first by 1e30


def _match(F_true, F_hat):
    from scipy.optimize import linear_sum_assignment

    a = torch.nn.functional.normalize(F_true, dim=0)
    b = torch.nn.functional.normalize(F_hat, dim=0)
    cos = (a.T @ b).numpy()
    r, c = linear_sum_assignment(-cos)
    return cos[r, c], c


def test_random_init_with_restarts_recovers_most_planted_features():
    """Random starts can end in local optima of the WTA iteration (a feature stuck on a wrong
    support, or a dead G column: multiplicative updates cannot revive zeros); the best of a few
    restarts by loss recovers most features."""
    X, F, _ = planted(n=800)
    fits = [
        SNMF.fit(
            X, rank=5, sparsity=5 / 48, init="random", max_iter=1500, patience=200, tol=1e-9, progress=False, seed=seed
        )
        for seed in range(4)
    ]
    best = min(fits, key=lambda s: s.meta["loss"])
    cos, _ = _match(F, best.F)
    assert (cos > 0.99).sum() >= 4, cos
    assert best.meta["fvu"] < 0.1


@pytest.mark.parametrize("init", ["kmeans"])
def test_recovers_planted_factorisation(init):
    X, F, G = planted(n=800)
    s = SNMF.fit(X, rank=5, sparsity=5 / 48, init=init, max_iter=1500, patience=200, tol=1e-9, progress=False, seed=3)
    cos, perm = _match(F, s.F)
    assert cos.min() > 0.999, cos
    assert s.meta["fvu"] < 1e-4
    # the coefficients match too, up to the per-feature scale carried by F
    Gh = s.fit_codes[:, perm]
    scale = (Gh * G).sum(0) / (G * G).sum(0)
    torch.testing.assert_close(Gh, G * scale, atol=1e-2 * Gh.max().item(), rtol=0)


def _planted_80(seed):
    """The issue-21 setting: 80 neurons, 8 features of 8 neurons each, 3,000 tokens, 30% density."""
    return planted(n=3000, d=80, k=8, keep=8, density=0.3, seed=seed)


@pytest.mark.parametrize(("init", "seed"), [("random", 1), ("kmeans", 2)])
def test_default_restarts_recover_where_one_start_stalls(init, seed):
    """Data seeds on which the single start of seed 42 stalls in a local optimum (min |cos| 0.0 for
    random on data seed 1 and k-means on data seed 2); the default keeps the best of ``n_init``
    starts by loss."""
    X, F, _ = _planted_80(seed)
    s = SNMF.fit(X, rank=8, sparsity=0.1, init=init, progress=False, device="cpu")
    cos, _ = _match(F, s.F)
    assert s.meta["restarts"] == 3 and abs(cos).min() >= 0.95, cos


@pytest.mark.slow
@pytest.mark.parametrize("init", ["random", "kmeans"])
def test_default_recovers_planted_features_on_19_of_20_seeds(init):
    ok = 0
    for seed in range(20):
        X, F, _ = _planted_80(seed)
        cos, _ = _match(F, SNMF.fit(X, rank=8, sparsity=0.1, init=init, progress=False, device="cpu").F)
        ok += int(abs(cos).min() >= 0.95)
    assert ok >= 19, ok


def test_nnls_matches_scipy():
    from scipy.optimize import nnls as scipy_nnls

    gen = torch.Generator().manual_seed(0)
    F = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    X = torch.randn(50, 30, generator=gen, dtype=torch.float64)
    g = ops.nnls(X @ F, F.T @ F, iters=2000, tol=1e-10)
    for i in range(len(X)):
        ref, _ = scipy_nnls(F.numpy(), X[i].numpy())
        obj = lambda v: np.sum((F.numpy() @ v - X[i].numpy()) ** 2)  # noqa: E731
        assert obj(g[i].numpy()) <= obj(ref) * (1 + 1e-8) + 1e-10
        np.testing.assert_allclose(g[i].numpy(), ref, atol=1e-6)
    assert (g >= 0).all()


def test_encode_recovers_planted_codes_and_round_trips(tmp_path):
    X, F, G = planted(n=800)
    s = SNMF.fit(
        X, rank=5, sparsity=5 / 48, init="kmeans", max_iter=1500, patience=200, tol=1e-9, progress=False, seed=3
    )
    codes = s.encode(X[:200])
    assert (codes >= 0).all()
    torch.testing.assert_close(codes, s.fit_codes[:200], atol=1e-2 * codes.max().item(), rtol=0)
    path = s.save(tmp_path / "snmf")
    back = interp.decomposers.load(path)
    assert type(back) is SNMF and back.cfg == s.cfg and back.meta["iterations"] == s.meta["iterations"]
    torch.testing.assert_close(back.encode(X[:50]), s.encode(X[:50]))
    d = back.directions()
    torch.testing.assert_close(d.norm(dim=1), torch.ones(5))
    ids, w = back.support()
    assert ids.shape == (5, 5) and (w != 0).all()
    torch.testing.assert_close(back.W_dec.gather(1, ids), w)


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="init"):
        SNMF.fit(torch.rand(50, 8), rank=2, init="nope")
    with pytest.raises(ValueError, match="sparsity"):
        SNMF.fit(torch.rand(50, 8), rank=2, sparsity=0)
    with pytest.raises(ValueError, match=r"\[N, d_mlp\]"):
        SNMF.fit(torch.rand(50), rank=2)
    s = SNMF.fit(torch.rand(50, 8), rank=2, max_iter=2, progress=False)
    with pytest.raises(ValueError, match="d_mlp=8"):
        s.encode(torch.rand(3, 9))


def test_svd_init_is_the_truncated_svd():
    X = torch.randn(300, 20).relu()
    F, G = initialise(as_rows(X), 4, "svd", 0, 128, "cpu")
    U, S, Vh = torch.linalg.svd(X.T, full_matrices=False)  # the paper's A = Xᵀ
    for j in range(4):
        sign = 1.0 if (X @ U[:, j]).sum() >= 0 else -1.0
        torch.testing.assert_close(F[:, j], sign * U[:, j] * S[j].sqrt(), atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(G[:, j], (sign * Vh[j] * S[j].sqrt()).clamp(min=1e-6), atol=1e-4, rtol=1e-3)


def test_kmeans_init_gives_one_hot_codes_and_centroids():
    X = torch.cat([torch.randn(100, 6) * 0.01 + c for c in torch.eye(6)[:3] * 5])
    F, G = initialise(as_rows(X), 3, "kmeans", 0, 64, "cpu")
    assert ((G == 1) | (G == 1e-6)).all() and ((G == 1).sum(1) == 1).all()
    labels = G.argmax(1)
    for j in range(3):
        torch.testing.assert_close(F[:, j], X[labels == j].mean(0))
    assert len(set(labels.view(3, 100).mode(1).values.tolist())) == 3  # the three blobs split apart


def test_cache_source_equals_tensor_source(tmp_path, tiny_model, tiny_corpus):
    from interp.activations import ActivationCache, cache_activations

    site = "blocks.1.mlp.hook_post"
    path = cache_activations(tiny_model, tiny_corpus, [site], 1024, tmp_path / "c", seq_len=64, progress=False)
    cache = ActivationCache(path)
    rows = as_rows(cache, site)
    keep = ~cache.special_mask().reshape(-1)
    X = cache.activations(site).reshape(-1, 128)[torch.from_numpy(keep)]
    kw = dict(rank=6, sparsity=0.05, max_iter=15, progress=False, chunk_tokens=300)
    a, b = SNMF.fit(cache, site=site, **kw), SNMF.fit(X.clone(), **kw)
    assert rows.n == len(X) == len(a.token_index) and a.cfg.site == site and a.cfg.model == "tiny-llama"
    torch.testing.assert_close(a.W_dec, b.W_dec, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.fit_codes, b.fit_codes, rtol=1e-4, atol=1e-6)


def test_minibatch_mode_approaches_full_mode():
    X, F, _ = planted(n=2000)
    kw = dict(rank=5, sparsity=5 / 48, init="kmeans", seed=3, progress=False)
    full = SNMF.fit(X, max_iter=300, patience=300, **kw)
    mb = SNMF.fit(X, mode="minibatch", batch_size=250, epochs=3, warmup_iters=50, **kw)
    assert mb.fit_codes is None and mb.meta["fvu"] < max(0.01, 2 * full.meta["fvu"])
    cos, _ = _match(F, mb.F)
    assert cos.min() > 0.98, cos


def test_train_command_fits_snmf_from_a_cache(tmp_path, tiny_model, tiny_corpus):
    from pathlib import Path

    from interp.activations import cache_activations
    from interp.cli.main import main

    site = "blocks.0.mlp.hook_post"
    cache = cache_activations(tiny_model, tiny_corpus, [site], 512, tmp_path / "c", seq_len=64, progress=False)
    root = Path(__file__).resolve().parents[3]
    assert (
        main(
            [
                "train",
                str(root / "configs" / "methods" / "snmf.yaml"),
                f"data={cache}",
                f"out={tmp_path / 'snmf'}",
                "rank=4",
                "max_iter=5",
                "sparsity=0.05",
                "progress=false",
            ]
        )
        == 0
    )
    back = interp.decomposers.load(tmp_path / "snmf")
    assert type(back) is SNMF and back.cfg.site == site and back.cfg.rank == 4
    assert back.cfg.model == "tiny-llama" and back.meta["iterations"] == 5


@pytest.mark.gpu
def test_cuda_fit_and_encode_match_cpu():
    X, _, _ = planted(n=800)
    kw = dict(rank=5, sparsity=5 / 48, init="kmeans", seed=3, max_iter=50, progress=False)
    cpu, gpu = SNMF.fit(X, device="cpu", **kw), SNMF.fit(X.cuda(), device="cuda", **kw)
    assert gpu.W_dec.is_cuda and gpu.fit_codes.is_cuda
    torch.testing.assert_close(gpu.W_dec.cpu(), cpu.W_dec, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu.encode(X[:100].cuda()).cpu(), cpu.encode(X[:100]), rtol=1e-3, atol=1e-4)
