"""LIB on tiny models against dense autograd references (Gram, M, basis, edges, integration,
stochastic sources), the PCA baseline, artifacts, graph export and ablations."""

import torch
import pytest

from interp.decomposers.lib import model as lib_mod
from interp.decomposers.lib import graph
from interp.decomposers.lib import ops
from interp.decomposers.lib import LIB, LIBConfig, pca_basis


def _mlp(seed=0, act=torch.relu):
    g = torch.Generator().manual_seed(seed)
    W1, b1 = torch.randn(4, 6, generator=g).double(), torch.randn(6, generator=g).double()
    W2, b2 = torch.randn(6, 5, generator=g).double(), torch.randn(5, generator=g).double()
    W3, b3 = torch.randn(5, 3, generator=g).double(), torch.randn(3, generator=g).double()
    mods = [lambda x: act(x @ W1 + b1), lambda x: act(x @ W2 + b2), lambda x: x @ W3 + b3]
    X = torch.randn(60, 4, generator=g).double()
    return mods, X


def _dense_jac(fn, f):
    """Per-sample Jacobian [N, Q*o, P*d] of fn at folded inputs f [N, P, d] (loop over samples)."""
    out = []
    for x in f:
        J = torch.autograd.functional.jacobian(lambda z: fn(z[None])[0], x)  # [Q, o, P, d]
        out.append(J)
    return torch.stack(out)


def _dense_M(fn, f, C_next, R_pinv):
    J = _dense_jac(lambda z: fn(z) @ C_next, f)  # [N, Q, o, P, d]
    Jz = J @ R_pinv.T
    return torch.einsum("nqosi,nqosj->ij", Jz, Jz) / (f.shape[0] * f.shape[1])


def test_gram_and_interaction_matrix_match_dense_reference():
    mods, X = _mlp()
    fns = [ops.fold(m, "perspective") for m in mods]
    lib = LIB.fit(mods, X, fold="perspective")
    acts = lib_mod._forward_all(fns, ops.append_const(X[:, None]), 1000)
    cfg = lib.cfg
    for l in range(3):
        f = acts[l]
        x = f[:, 0, :-1]
        cov = torch.cov(x.T, correction=0)
        U, D, Y, Y_inv, n_iso = lib_mod._pca(cfg, l, f)
        G = ops.gram(f, Y)
        assert torch.allclose(G[:-1, :-1], cov, atol=1e-10) and abs(G[-1, -1] - 1) < 1e-12
        R_pinv = D.sqrt()[:, None] * (U.T @ Y_inv)
        M = lib_mod._interaction_matrix(cfg, fns[l], f, lib.basis(l + 1), R_pinv)
        assert torch.allclose(M, _dense_M(fns[l], f, lib.basis(l + 1), R_pinv), rtol=1e-9, atol=1e-9)
        lam_ref = torch.linalg.eigvalsh(M[1:, 1:]).flip(0)
        lam_ref = lam_ref[lam_ref.abs() > cfg.truncation_threshold]
        assert torch.allclose(lib.eigenvalues(l)[1:], lam_ref, rtol=1e-8, atol=1e-10)


def test_basis_rotates_in_and_out_and_whitens():
    mods, X = _mlp()
    lib = LIB.fit(mods, X, fold="perspective")
    fns = [ops.fold(m, "perspective") for m in mods]
    acts = lib_mod._forward_all(fns, ops.append_const(X[:, None]), 1000)
    for l in range(3):
        C, Cp = lib.basis(l), lib.basis_pinv(l)
        r = C.shape[1]
        assert torch.allclose(Cp @ C, torch.eye(r, dtype=C.dtype), atol=1e-6)
        f_hat = acts[l] @ C
        proj = f_hat @ Cp  # onto the kept subspace (directions the next layer ignores are dropped)
        assert torch.allclose(proj @ C @ Cp, proj, atol=1e-8)  # identity on the kept subspace
        # the module in LIB coordinates reproduces the next layer's LIB coordinates
        assert torch.allclose(fns[l](f_hat @ Cp) @ lib.basis(l + 1), acts[l + 1] @ lib.basis(l + 1), atol=1e-8)
        # LIB coordinates are uncorrelated with second moments = eigenvalues (constant excluded)
        z = f_hat[:, 0, 1:]
        big = lib.eigenvalues(l)[1:] > 1e-8
        S = (z.T @ z / len(z))[big][:, big]
        assert torch.allclose(S, torch.diag(lib.eigenvalues(l)[1:][big]), rtol=1e-6, atol=1e-8)
        assert torch.allclose(f_hat[:, 0, 0], f_hat[0, 0, 0].expand(len(X)))  # constant feature


def test_edges_match_brute_force_attribution():
    mods, X = _mlp(1)
    lib = LIB.fit(mods, X, fold="perspective")
    fns = [ops.fold(m, "perspective") for m in mods]
    acts = lib_mod._forward_all(fns, ops.append_const(X[:, None]), 1000)
    for l in range(3):
        C, Cp, Cn = lib.basis(l), lib.basis_pinv(l), lib.basis(l + 1)
        E = torch.zeros(Cn.shape[1], C.shape[1], dtype=torch.float64)
        for f in acts[l]:  # one sample at a time, every (i, j) by hand
            fh = f @ C
            J = torch.autograd.functional.jacobian(lambda z: fns[l]((z @ Cp)[None])[0] @ Cn, fh)  # [Q,o,P,r]
            A = torch.einsum("qosj,sj->qoj", J, fh)
            E += A.pow(2).sum(0)
        assert torch.allclose(lib.edges(l), E / len(X), rtol=1e-8, atol=1e-12)


def _attention_like(seed=0):
    """A position-mixing module with a non-homogeneous non-linearity (tanh), 3 positions."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 5, generator=g).double() / 2
    A = torch.softmax(torch.randn(3, 3, generator=g), -1).double()
    return lambda x: torch.tanh(torch.einsum("ts,bsd->btd", A, x) @ W + 0.3), torch.randn(
        16, 3, 4, generator=g
    ).double()


@pytest.fixture(scope="module")
def quadrature_case():
    fn, X = _attention_like()
    f = ops.append_const(X)
    folded = ops.fold(fn, "perspective")
    xs, ws = ops.integration_rule("gauss-legendre", 20)  # dense reference: high-order quadrature
    ref = sum(w * _dense_jac(folded, a * f) for a, w in zip(xs, ws))  # [N, Q, o, P, d]
    at_one = _dense_jac(folded, f)
    return (
        folded,
        f,
        ref.permute(1, 2, 0, 3, 4).reshape(18, *f.shape),
        at_one.permute(1, 2, 0, 3, 4).reshape(18, *f.shape),
    )


@pytest.mark.parametrize("method,n", [("trapezoidal", 60), ("gauss-legendre", 6)])
def test_integrated_gradients_match_dense_quadrature(quadrature_case, method, n):
    folded, f, ref, at_one = quadrature_case
    C_next = torch.eye(6, dtype=torch.float64)
    cot, _ = ops.cotangents(len(f), 3, 6, None, None, torch.Generator())
    alphas, weights = ops.integration_rule(method, n)
    got = ops.integrated_vjps(lambda z: folded(z) @ C_next, f, cot, alphas, weights, 1000)
    tol = 1e-3 if method == "trapezoidal" else 1e-6
    assert torch.allclose(got, ref, atol=tol)
    assert sum(weights) == pytest.approx(1.0)
    # and the plain gradient is the Jacobian at alpha = 1
    g1 = ops.integrated_vjps(lambda z: folded(z) @ C_next, f, cot, [1.0], [1.0], 7)
    assert torch.allclose(g1, at_one)


@pytest.mark.parametrize(
    "sources",
    [
        dict(n_sources_pos=None, n_sources_hidden=True),
        dict(n_sources_pos=True, n_sources_hidden=None),
        dict(n_sources_pos=True, n_sources_hidden=True),
    ],
)
def test_stochastic_sources_converge_to_exact(sources):
    fn, X = _attention_like(2)
    folded = ops.fold(fn, "perspective")
    f = ops.append_const(X)
    cfg = LIBConfig(batch_size=1000)
    U, D, Y, Y_inv, _ = lib_mod._pca(cfg, 0, f)
    R_pinv = D.sqrt()[:, None] * (U.T @ Y_inv)
    C_next = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = lib_mod._interaction_matrix(cfg, folded, f, C_next, R_pinv)
    errs = []
    both = all(sources.values())
    for n in (2, 8, 40) if both else (2, 32, 512):
        kw = {k: (n if v else None) for k, v in sources.items()}
        M = lib_mod._interaction_matrix(LIBConfig(batch_size=1000, seed=3, **kw), folded, f, C_next, R_pinv)
        errs.append(float((M - exact).norm() / exact.norm()))
    assert errs[2] < errs[0] / 4 and errs[2] < (0.15 if both else 0.1), errs


def test_pca_basis_against_numpy():
    x = torch.randn(300, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    C, lam = pca_basis(x)
    import numpy as np

    w, v = np.linalg.eigh(np.cov(x.numpy().T, bias=True))
    assert np.allclose(lam.numpy(), w[::-1]) and np.allclose(np.abs(C.numpy()), np.abs(v[:, ::-1]), atol=1e-8)
    mods, X = _mlp()
    pca = LIB.fit(mods, X, fold="perspective", basis="pca")
    assert torch.allclose(pca.basis(0)[:-1, 1:].abs(), pca_basis(X)[0].abs(), atol=1e-8)


def test_artifact_roundtrip_directions_and_encode(tmp_path):
    mods, X = _mlp()
    lib = LIB.fit(mods, X, fold="perspective", model="tiny-mlp", sites=("in", "h1", "h2", "out"), direction_layer=1)
    lib.save(tmp_path / "lib")
    from interp.decomposers import load

    back = load(tmp_path / "lib")
    assert back.cfg == lib.cfg and back.cfg.site == "h1"
    for l in range(4):
        assert torch.equal(back.basis(l), lib.basis(l)) and torch.equal(back.eigenvalues(l), lib.eigenvalues(l))
    D = back.directions()
    assert D.shape == (lib.cfg.ranks[1] - 1, 6) and torch.allclose(D.norm(dim=-1), torch.ones(len(D)))
    h1 = mods[0](X)
    once = back.decode(back.encode(h1))  # a projection onto the kept subspace
    assert torch.allclose(back.decode(back.encode(once)), once, atol=1e-8)
    first = LIB.fit(mods, X, fold="perspective")  # the input layer keeps every direction
    assert torch.allclose(first.decode(first.encode(X)), X, atol=1e-8)


def test_graph_export_and_ablations(tmp_path):
    mods, X = _mlp()
    lib = LIB.fit(mods, X, fold="perspective", node_layers=("in", "h1", "h2", "out"))
    g = graph.interaction_graph(lib)
    assert g.number_of_nodes() == sum(lib.cfg.ranks)
    stem = graph.export_graph(lib, tmp_path / "g")
    assert stem.with_suffix(".graphml").exists() and stem.with_suffix(".json").exists()
    assert graph.plot_graph(lib, tmp_path / "g.png").exists()
    fns = [ops.fold(m, "perspective") for m in mods]
    acts = graph.layer_acts(fns, X[:, None], dtype=torch.float64)
    ref = acts[-1][..., :-1]
    metric = lambda out: float((out - ref).pow(2).mean())  # noqa: E731
    curve = graph.node_ablation(lib, 1, acts[1], fns, metric, [1, 3, lib.cfg.ranks[1]])
    assert curve[-1][1] < 1e-16 and curve[0][1] > curve[1][1]
    # all edges kept = the unablated model; a naive per-output loop agrees with the vectorised one
    full = graph.edge_ablation(lib, 1, acts[1], fns, metric, lib.edges(1).numel())
    assert full < 1e-16
    mask = graph.edge_mask(lib.edges(1), 7, True)
    got = graph.edge_ablated_next(lib, 1, acts[1], fns[1], mask)
    f_hat = acts[1] @ lib.basis(1)
    cols = [(fns[1]((f_hat * mask[i]) @ lib.basis_pinv(1)) @ lib.basis(2))[..., i] for i in range(len(mask))]
    assert torch.allclose(got, torch.stack(cols, -1) @ lib.basis_pinv(2), atol=1e-10)
    k, seen = graph.edges_needed(lib, 1, acts[1], fns, lambda o: -metric(o), -1e-12)
    assert 0 < k <= lib.edges(1).numel() and seen


def test_fit_accepts_float32_modules_and_matches_float64():
    """Ordinary float32 nn.Modules (the public API takes any callables) fit as their float64 copies."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    mods = [net[:2], net[2:]]
    X = torch.randn(80, 4)
    lib = LIB.fit(mods, X)
    assert next(net.parameters()).dtype == torch.float32  # the caller's modules are not converted
    ref = [lambda x, m=m: m(x) for m in (net.double()[:2], net.double()[2:])]
    want = LIB.fit(ref, X.double())
    for l in range(3):
        assert torch.allclose(lib.eigenvalues(l), want.eigenvalues(l), rtol=1e-10, atol=1e-12)
    assert torch.allclose(lib.edges(0), want.edges(0), rtol=1e-10, atol=1e-12)
