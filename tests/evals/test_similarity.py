"""Similarity measures: Jaccard on label sets, layer matching, and the baselines against their
direct (textbook) formulas."""

import numpy as np
import pytest
import torch

from interp.evals.similarity import (
    best_matches,
    boundary_keys,
    boundary_overlap,
    jaccard,
    jaccard_matrix,
    label_keys,
    layer_matching_score,
    linear_cka,
    model_similarity,
    relative_similarity,
    span_jaccard,
    span_jaccard_matrices,
    svcca,
)


def _labels(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_jaccard_self_disjoint_and_partial():
    a = _labels([[0, 1, 0, 3], [0, 2, 3, 5], [1, 0, 0, 4]])
    b = _labels([[2, 1, 0, 3], [3, 2, 3, 5]])
    c = _labels([[0, 1, 0, 3], [5, 5, 9, 9]])
    assert jaccard(a, a) == 1 and jaccard(a, a, "span") == 1
    assert jaccard(a, b) == 0 and jaccard(a, b, "span") == 0
    assert jaccard(a, c) == pytest.approx(1 / 4)
    assert jaccard(a, _labels([[0, 1], [0, 1]])) == pytest.approx(1 / 3)  # repeats count once
    with pytest.raises(ValueError, match="no character spans"):
        jaccard(a, _labels([[0, 1]]), "span")
    np.testing.assert_allclose(jaccard_matrix([a, b], [a, c]), [[1, 0.25], [0, 0]])


def test_span_key_matches_same_end_character():
    a = _labels([[0, 5, 10, 14]])
    b = _labels([[0, 3, 11, 14]])  # another tokenizer: different start and position, same end
    assert jaccard(a, b, "span") == 1 and jaccard(a, b, "token") == 0
    assert len(label_keys(_labels([[0, 1, 0, 2], [0, 2, 1, 2]]), "span")) == 1  # byte pieces of one char


def test_model_similarity_unions_layers_after_the_first():
    m1 = [_labels([[9, 9]]), _labels([[0, 1]]), _labels([[0, 2]])]
    m2 = [_labels([[0, 1]]), _labels([[0, 2]]), _labels([[0, 3]])]
    assert model_similarity(m1, m2) == pytest.approx(1 / 3)
    assert model_similarity(m1, m2, skip_first=False) == pytest.approx(2 / 4)


def test_layer_matching_score():
    eye = np.eye(4) + 0.1
    assert layer_matching_score(eye) == 1
    shuffled = eye[:, [0, 2, 1, 3]]
    assert layer_matching_score(shuffled) == pytest.approx(1 / 3)  # layers 1..3, only 3 matches
    S = np.stack([np.stack([eye, shuffled]), np.stack([shuffled, eye])])  # [2, 2, 4, 4]
    assert layer_matching_score(S) == pytest.approx((1 + 1 / 3 + 1 / 3 + 1) / 4)
    assert layer_matching_score(S, include_self=False) == pytest.approx(1 / 3)
    tall = np.eye(3)[[0, 1, 1, 1, 2]]  # 5 layers vs 3: layer i corresponds to round(i / 2)
    assert layer_matching_score(tall, skip_first=False) == pytest.approx(4 / 5)  # layer 3 -> 2
    assert layer_matching_score(tall, skip_first=False, tolerance=1) == 1
    m = best_matches(np.array([[1, 0, 0], [0, 1, 0], [0, 0.5, 0.4], [0, 0, 1]]))
    assert m["best"] == [0, 1, 1, 2] and m["monotone"] and m["spearman"] > 0.9


def _data(n=300, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(d, 9, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(
        n, 9, generator=g, dtype=torch.float64
    )
    return x, y


def test_linear_cka_matches_hsic_formula():
    x, y = _data()
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - 1 / n

    def hsic(k, l_):
        return torch.trace(k @ h @ l_ @ h)

    k, l_ = x @ x.T, y @ y.T
    ref = hsic(k, l_) / (hsic(k, k) * hsic(l_, l_)).sqrt()
    assert linear_cka(x, y) == pytest.approx(ref.item(), rel=1e-9)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1)


def test_svcca_matches_cca_formula():
    x, y = _data()
    c = 5

    def reduce(z):
        z = z - z.mean(0)
        u, s, _ = torch.linalg.svd(z, full_matrices=False)
        return u[:, :c] * s[:c]

    a, b = reduce(x), reduce(y)
    sxx, syy, sxy = a.T @ a, b.T @ b, a.T @ b
    m = torch.linalg.solve(sxx, sxy) @ torch.linalg.solve(syy, sxy.T)
    rho = torch.linalg.eigvals(m).real.clamp(min=0).sqrt()
    assert svcca(x, y, n_components=c) == pytest.approx(rho.mean().item(), rel=1e-8)
    assert svcca(x, x @ torch.randn(12, 12, dtype=torch.float64), n_components=c) < 1.0001
    assert svcca(x, 2 * x + 5, n_components=c) == pytest.approx(1)


def test_relative_similarity_matches_loop():
    x, y = _data(n=80)
    anchors = torch.randperm(80, generator=torch.Generator().manual_seed(42))[:10]
    total = 0.0
    for i in range(80):
        rx = torch.stack([torch.nn.functional.cosine_similarity(x[i], x[j], dim=0) for j in anchors])
        ry = torch.stack([torch.nn.functional.cosine_similarity(y[i], y[j], dim=0) for j in anchors])
        total += torch.nn.functional.cosine_similarity(rx, ry, dim=0).item()
    assert relative_similarity(x, y, n_anchors=10) == pytest.approx(total / 80, rel=1e-9)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    assert relative_similarity(x, 2 * x @ q) == pytest.approx(1)


def test_similarity_matrices_match_pairwise_functions():
    from interp.evals.similarity import similarity_matrices

    xs = [_data(n=120, seed=s)[0] for s in range(2)]
    ys = [_data(n=120, seed=s)[1] for s in range(3)]
    m = similarity_matrices(xs, ys, n_components=5, n_anchors=30)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert m["cka"][i, j] == pytest.approx(linear_cka(x, y), rel=1e-4)
            assert m["svcca"][i, j] == pytest.approx(svcca(x, y, 5), rel=1e-6)
            assert m["relative"][i, j] == pytest.approx(relative_similarity(x, y, 30), rel=1e-4)


def test_span_jaccard_reports_its_boundary_ceiling():
    # stream A ends tokens at chars 3, 5, 11 of doc 0; stream B at 5, 9, 11 (3 and 9 unshared)
    stream_a = np.array([[0, -1, -1, -1], [0, 0, 0, 3], [0, 1, 3, 5], [0, 2, 5, 11]])
    stream_b = np.array([[0, 0, 0, 5], [0, 1, 5, 9], [0, 2, 9, 11]])
    ov = boundary_overlap(stream_a, stream_b)
    assert ov == {"jaccard": pytest.approx(2 / 4), "a_in_b": pytest.approx(2 / 3), "b_in_a": pytest.approx(2 / 3)}
    ba, bb = boundary_keys(stream_a), boundary_keys(stream_b)
    assert len(ba) == 3  # the special token is not a boundary
    a = _labels([[0, 0, 0, 3], [0, 1, 3, 5]])  # one of two atoms can exist in B
    b = _labels([[0, 0, 0, 5], [0, 1, 5, 9], [0, 2, 9, 11]])  # two of three can exist in A
    r = span_jaccard(a, b, ba, bb)
    assert r["jaccard"] == pytest.approx(1 / 4) == jaccard(a, b, "span")
    assert r["ceiling"] == pytest.approx(1 / 2) and r["normalised"] == pytest.approx(1 / 2)
    # the ceiling bounds every dictionary pair drawn from the two streams
    for ka in range(1, 4):
        for kb in range(1, 4):
            x, y = _labels(stream_a[1 : 1 + ka]), _labels(stream_b[:kb])
            assert jaccard(x, y, "span") <= span_jaccard(x, y, ba, bb)["ceiling"] + 1e-12
    m = span_jaccard_matrices([a, b], [b], ba, bb)
    np.testing.assert_allclose(m["ceiling"][:, 0], [0.5, 2 / 3])
