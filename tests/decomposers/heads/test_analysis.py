"""Talking-Heads helpers: head picking from synthetic attention, channel candidates and controls."""

import numpy as np
import torch

from interp.decomposers.heads import analysis as H
from interp.decomposers.heads.laundry_list import LaundryResult


def test_mover_and_inhibition_scores_on_synthetic_attention():
    P, nh, W = 4, 2, 3
    a1 = np.zeros((P, nh, W))
    a2 = np.full((P, nh, W), np.nan)
    miss = np.array([0, 1, 2, 1])
    a1[np.arange(P), 0, miss] = 0.6  # head 0 attends to the answer
    a1[:, 1, :] = 0.2  # head 1 spreads evenly
    a2[:, 1, :] = 0.3  # head 1 attends to the re-listed objects
    a2[np.arange(P), 1, miss] = np.nan
    res = LaundryResult(
        np.full(P, 3), miss, np.ones(P, bool), np.ones(P, bool), np.full(P, 2), 0, ((5, 0), (3, 1)), a1, a2
    )
    assert np.allclose(H.mover_scores(res), [0.6, 0.0])
    assert np.allclose(H.inhibition_scores(res), [0.0, 0.6])
    assert H.top_heads(H.mover_scores(res), list(res.heads), 1) == [(5, 0)]
    assert H.top_heads(H.inhibition_scores(res), list(res.heads), 2, max_layer=5) == [(3, 1)]
    assert H.summarise(res)["picks_last"] == {3: 1.0}


def test_channel_candidates_pick_the_outlier_and_controls(tiny_model):
    from interp.decomposers.heads.svd import HeadSVD, all_composition_scores, outlier_zscores

    svd = HeadSVD.fit(tiny_model)
    cs = all_composition_scores(svd, "q")
    rows = H.channel_candidates(svd, cs, [(0, 0), (0, 3)], [(1, 2), (0, 1)], n=5)
    assert len(rows) == 2 and rows[0]["z"] >= rows[1]["z"]  # readers at the writer's layer are skipped
    z = outlier_zscores(cs)
    for r in rows:
        wl, wh = map(int, r["writer"].split("."))
        col = z[wl, wh, :, 1, 2]
        assert r["component"] == int(col.argmax()) and r["control"] == int(col.argmin())
        assert abs(float(col[r["sigma_control"]])) < 1
    m = H.layer_channel_matrix(cs)
    assert m.shape == (2, 2) and np.isinf(m[1]).all() and torch.isfinite(torch.tensor(m[0, 1]))
