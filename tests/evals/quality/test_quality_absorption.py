"""Absorption on a planted case: 30% of the "a" words have their "starts with a" feature absorbed by
token-specific features (each aligned with the letter direction), the other letters none."""

import numpy as np
import pytest
import torch

from interp.errors import DataError
from interp.evals.quality import absorption as absn


def _planted(n_per_letter=200, absorbed_frac=0.3, d=128, seed=0):
    rng = np.random.default_rng(seed)
    letters = np.repeat(np.arange(3), n_per_letter)  # a, b, c
    n = len(letters)
    a_words = np.flatnonzero(letters == 0)
    absorbed = np.zeros(n, bool)
    absorbed[rng.choice(a_words, int(absorbed_frac * n_per_letter), replace=False)] = True
    eye = np.eye(d)
    # features: 0..2 main letter features, then one absorber per absorbed word, then 20 noise features
    absorber_rows = np.flatnonzero(absorbed)
    dirs = [eye[0], eye[1], eye[2]]
    dirs += [(eye[0] + eye[3 + i]) / np.sqrt(2) for i in range(len(absorber_rows))]
    noise_dirs = rng.normal(size=(20, d))
    noise_dirs[:, :3] = 0
    dirs += list(noise_dirs / np.linalg.norm(noise_dirs, axis=1, keepdims=True))
    dirs = np.array(dirs)
    codes = np.zeros((n, len(dirs)))
    for w in range(n):
        if absorbed[w]:
            codes[w, 3 + int(np.flatnonzero(absorber_rows == w)[0])] = 3 * np.sqrt(2)
        else:
            codes[w, letters[w]] = 3.0
    noise_on = rng.random((n, 20)) < 0.1
    codes[:, -20:] = noise_on * rng.uniform(0.5, 1.5, size=(n, 20))
    x = codes @ dirs + rng.normal(scale=0.2, size=(n, d))
    train = rng.random(n) < 0.7
    return torch.tensor(x), torch.tensor(codes), torch.tensor(dirs), letters, train, absorbed


def test_planted_absorption_is_found():
    x, codes, dirs, letters, train, absorbed = _planted()
    res = absn.absorption(x, codes, dirs, letters, train)
    a, b, c = (res["per_letter"][k] for k in "abc")
    assert a["main_features"] == [0] and b["main_features"] == [1] and c["main_features"] == [2]
    # the probe calls every test "a" word positive; the planted share among them:
    want = absorbed[(letters == 0) & ~train].mean()
    assert a["n_words"] == ((letters == 0) & ~train).sum()
    assert a["absorption_fraction"] == pytest.approx(want, abs=0.02)
    assert a["full_absorption"] == pytest.approx(want, abs=0.02)
    assert b["absorption_fraction"] == c["absorption_fraction"] == 0.0
    assert b["full_absorption"] == c["full_absorption"] == 0.0
    assert res["mean_absorption_fraction_score"] == pytest.approx(want / 3, abs=0.01)
    assert res["mean_num_split_features"] == 0.0
    assert res["n_letters"] == res["n_letters_probe"] == 3  # the three planted letters, all probed and scored
    assert set(res["letter_probe_f1"]) == set(absn.LETTERS) and res["letter_probe_f1"]["a"] >= 0.6


def test_no_absorption_without_absorbers():
    x, codes, dirs, letters, train, _ = _planted(absorbed_frac=0.0)
    res = absn.absorption(x, codes, dirs, letters, train)
    assert res["mean_absorption_fraction_score"] == 0.0 and res["mean_full_absorption_score"] == 0.0


def test_word_absorption_partial_case():
    """Main feature carries 1 of the probe projection 3, an aligned absorber 2: fraction 2/3."""
    probe = torch.tensor([1.0, 0.0, 0.0])
    act = torch.tensor([3.0, 1.0, 0.0])
    cos = torch.tensor([1.0, 0.9, 0.0])
    codes = torch.tensor([1.0, 2 / 0.9, 5.0])
    frac, full = absn.word_absorption(act, codes, cos, probe, [0], absn.AbsorptionConfig())
    assert frac == pytest.approx(2 / 3) and not full


def test_prompts_and_word_position():
    words = ["apple", "banana", "cherry", "dates", "elder", "figs"]
    ps = absn.prompts(words, n_icl=3)
    assert all(p.endswith(f"\n {w} has the first letter:") for p, w in zip(ps, words))
    assert all(p.count("\n") == 4 and p.startswith("\n ") for p in ps)
    assert " apple has the first letter: A" not in ps[0]  # no example repeats the word itself


def test_mismatched_rows_are_refused():
    with pytest.raises(DataError):
        absn.absorption(torch.zeros(5, 3), torch.zeros(4, 2), torch.zeros(2, 3), np.zeros(5, int), np.ones(5, bool))


def test_absorption_reads_codes_in_the_activation_units():
    """An SAE's codes live on inputs scaled by its norm_scale (SmolLM2 layer 15: about 0.1). The
    same planted case, with codes 10x smaller and decoder rows 10x longer (unit directions over the
    scale), must score the same when the rows are given; read as unit rows it scores no absorption
    at all (what every SAE showed before the rows were used)."""
    x, codes, dirs, letters, train, absorbed = _planted()
    want = absn.absorption(x, codes, dirs, letters, train)
    scaled = codes * 0.1

    def row_dot(probe):
        return (dirs / 0.1 @ probe).expand(len(x), -1)

    got = absn.absorption(x, scaled, dirs, letters, train, row_dot=row_dot)
    for key in ("mean_absorption_fraction_score", "mean_full_absorption_score"):
        assert got[key] == pytest.approx(want[key], abs=1e-9)
    assert got["per_letter"]["a"]["absorption_fraction"] > 0.2
    assert absn.absorption(x, scaled, dirs, letters, train)["per_letter"]["a"]["absorption_fraction"] == 0.0


@pytest.mark.parametrize("method", ["topk", "topafa", "relu"])
def test_row_dot_is_each_features_decoded_contribution(method):
    """passes.row_dot against a direct computation: decoding one feature's code alone adds
    code * row, so codes * row_dot(probe) sums to (decode(codes) - decode(0)) @ probe per token, and
    where rows do not depend on the token they equal one-hot decodes."""
    from interp.decomposers.sae import TopKConfig, TopKSAE, TopAFAConfig, TopAFASAE, ReLUConfig, ReLUSAE
    from interp.evals.quality.passes import codes_of, row_dot

    torch.manual_seed(0)
    make = {
        "topk": lambda: TopKSAE(TopKConfig(d_in=16, d_sae=40, k=4)),
        "topafa": lambda: TopAFASAE(TopAFAConfig(d_in=16, d_sae=40)),
        "relu": lambda: ReLUSAE(ReLUConfig(d_in=16, d_sae=40)),
    }
    sae = make[method]()
    with torch.no_grad():
        sae.norm_scale.fill_(0.1)
        sae.b_dec.normal_()
        sae.W_dec.mul_(torch.rand(40, 1) + 0.5)  # rows of different norms (ReLU keeps them)
    x = torch.randn(12, 16) * 5
    codes = codes_of(sae, x)
    probe = torch.nn.functional.normalize(torch.randn(16), dim=0)
    rows = row_dot(sae, codes)(probe)
    assert rows.shape == (12, 40)
    total = (sae.decode(codes) - sae.decode(torch.zeros_like(codes))).detach() @ probe
    torch.testing.assert_close((codes * rows).sum(1), total, rtol=1e-4, atol=1e-4)
    if method != "topafa":  # token-independent rows: one-hot decodes (top-AFA scales each token by its spread)
        eye = torch.eye(40)
        one_hot = ((sae.decode(eye) - sae.decode(torch.zeros_like(eye))).detach() @ probe).expand(12, -1)
        torch.testing.assert_close(rows, one_hot, rtol=1e-4, atol=1e-4)
        assert rows.abs().mean() > 5 * (sae.directions() @ probe).abs().mean()  # not the unit directions
