"""Streaming statistics against brute force over the full activation matrix."""

import numpy as np
import pytest
import torch

from interp.browser.build import FeatureStats, StoreConfig
from interp.browser.collect import Histogram, SlotTopK, window_start
from interp.browser.write import quantile_examples

ROWS, S, F = 24, 16, 40


def _codes(seed=0, signed=False):
    """Sparse codes [ROWS*S, F] with varied densities (one feature never fires)."""
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand(ROWS * S, F, generator=g) * torch.linspace(0.1, 50, F)
    if signed:
        vals = vals * torch.where(torch.rand(ROWS * S, F, generator=g) < 0.3, -1.0, 1.0)
    keep = torch.rand(ROWS * S, F, generator=g) < torch.linspace(0.002, 0.6, F)
    codes = vals * keep
    codes[:, 0] = 0
    return codes


def _stream(codes, cfg, rows_per_chunk):
    stats = FeatureStats(F, cfg)
    for r in range(0, ROWS, rows_per_chunk):
        chunk = codes[r * S : (r + rows_per_chunk) * S]
        stats.update(chunk.clone(), S, r * S, len(chunk))
    return stats


@pytest.mark.parametrize("rows_per_chunk", [1, 5, ROWS])
@pytest.mark.parametrize("rank", ["value", "abs"])
def test_running_topk_equals_brute_force(rows_per_chunk, rank):
    codes = _codes(signed=rank == "abs")
    cfg = StoreConfig(seq_len=S, k=7, n_samples=5, window_left=3, window_right=2, rank=rank)
    top = _stream(codes, cfg, rows_per_chunk).top
    score, value, pos, window = top.sorted()
    ref_score = codes if rank == "value" else codes.abs()
    ref_score = ref_score.masked_fill(ref_score <= 0, float("-inf"))
    ref = ref_score.T.topk(cfg.k, dim=1)
    for f in range(F):
        got = score[f][torch.isfinite(score[f])]
        want = ref.values[f][torch.isfinite(ref.values[f])]
        torch.testing.assert_close(got, want)  # same values (ties may pick other positions)
        n = len(got)
        assert torch.equal(ref_score[pos[f, :n], f], got)  # positions hold those values
        assert torch.equal(codes[pos[f, :n], f], value[f, :n])
        for j in range(n):  # the window is the feature's codes around the token, inside its row
            row, p = divmod(int(pos[f, j]), S)
            a = int(window_start(torch.tensor(p), S, 3, cfg.width))
            assert torch.equal(window[f, j], codes[row * S + a : row * S + a + cfg.width, f])
            assert a <= p < a + cfg.width


def test_slot_merge_with_few_candidates():
    """Fewer tokens in a chunk than k, and features firing on fewer tokens than k."""
    t = SlotTopK(3, 4, 2)
    codes3 = torch.tensor([[[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]]])  # 1 row, 2 tokens, 3 features
    score = codes3[0].masked_fill(codes3[0] <= 0, float("-inf"))
    assert t.update(score, codes3, 10, 0) == 3
    s, v, p, w = t.sorted()
    assert s[0, :2].tolist() == [3.0, 1.0] and p[0, :2].tolist() == [11, 10]
    assert not torch.isfinite(s[1]).any()
    assert s[2, 0] == 2.0 and p[2, 0] == 10 and w[2, 0].tolist() == [2.0, 0.0]


@pytest.mark.parametrize("signed", [False, True])
def test_histogram_exact_and_sums_to_tokens(signed):
    codes = _codes(seed=3, signed=signed)
    h = Histogram(F, 16)
    for r in range(0, len(codes), 37):  # uneven chunks; ranges grow as larger values arrive
        h.update(codes[r : r + 37])
    zeros = (codes == 0).sum(0)
    assert torch.equal(h.counts.sum((1, 2)) + zeros, torch.full((F,), len(codes)))
    top = h.edges()
    for f in range(1, F):
        for sign, sel in ((0, codes[:, f] > 0), (1, codes[:, f] < 0)):
            ref, _ = np.histogram(codes[sel, f].abs().numpy(), bins=16, range=(0, float(top[f])))
            assert h.counts[f, sign].tolist() == ref.tolist()
        assert float(top[f]) > codes[:, f].abs().max() >= float(top[f]) / 2  # tightest power of two


def test_histogram_rejects_bad_bins():
    with pytest.raises(ValueError, match="power of two"):
        Histogram(3, 10)


def test_sample_is_uniform_over_active_tokens():
    codes = _codes(seed=5)
    cfg = StoreConfig(seq_len=S, k=3, n_samples=6, window_left=3, window_right=2)
    stats = _stream(codes, cfg, 4)
    score, value, pos, _ = stats.sample.sorted()
    n_active = (codes != 0).sum(0)
    for f in range(F):
        n = int(torch.isfinite(score[f]).sum())
        assert n == min(6, int(n_active[f]))
        assert (codes[pos[f, :n], f] != 0).all() and torch.equal(codes[pos[f, :n], f], value[f, :n])
    # chunking does not change the sample (keys are seeded by token position)
    other = _stream(codes, cfg, 1).sample.sorted()
    assert torch.equal(other[2], pos)
    # uniformity: over many seeds, every active token of a feature is picked about equally often
    f = 10
    hits = torch.zeros(len(codes))
    for seed in range(200):
        s = _stream(codes, StoreConfig(seq_len=S, k=1, n_samples=2, window_left=3, window_right=2, seed=seed), ROWS)
        p = s.sample.pos[f][torch.isfinite(s.sample.score[f])]
        hits[p] += 1
    active = (codes[:, f] != 0).nonzero().squeeze(1)
    expected = 200 * 2 / len(active)
    assert hits[active].min() > 0.2 * expected and hits[active].max() < 3 * expected
    assert hits.sum() == hits[active].sum()


def test_quantile_bands_from_histogram():
    codes = _codes(seed=7)
    cfg = StoreConfig(
        seq_len=S, k=3, n_samples=40, n_quantiles=4, per_quantile=3, window_left=3, window_right=2, n_bins=64
    )
    stats = _stream(codes, cfg, ROWS)
    q = quantile_examples(stats)
    for f in q["feature"].unique().tolist():
        sel = q["feature"] == f
        vals, lo, hi = q["value"][sel], q["bin_min"][sel], q["bin_max"][sel]
        assert ((vals >= lo) & (vals < hi)).all()  # each example lies in its band
        active = codes[:, f][codes[:, f] > 0]
        for b in q["band"][sel].unique().tolist():
            m = sel & (q["band"] == b)
            assert m.sum() <= 3
            a, z = float(q["bin_min"][m][0]), float(q["bin_max"][m][0])
            frac = ((active >= a) & (active < z)).double().mean()
            assert abs(float(q["bin_contains"][m][0]) - float(frac)) < 1e-6  # exact: edges are bin edges


def test_sink_mask_flags_first_token_and_massive_norms_only():
    from interp.browser.collect import sink_mask

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 8, generator=g)  # ordinary tokens: norms near sqrt(8)
    special = torch.zeros(3, 10, dtype=torch.bool)
    special[0, 0] = special[1, 0] = True  # rows 0 and 1 start with BOS; row 2 does not
    special[1, 5] = True  # a separator inside row 1
    x[0, 0] *= 100  # a massive BOS: special, never a sink, and left out of the median
    x[1, 7] *= 20  # a massive ordinary token
    x[2, 3] *= 3  # large but under the ratio
    got = sink_mask(x, special, ratio=5.0)
    want = torch.zeros_like(special)
    want[0, 1] = want[1, 1] = True  # first token after BOS
    want[1, 7] = True
    assert torch.equal(got, want)
    off = sink_mask(x, special, 0.0)  # ratio 0: the norm test is off
    assert off[0, 1] and off[1, 1] and not off[1, 7]
