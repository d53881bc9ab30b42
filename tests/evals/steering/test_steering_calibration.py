"""KL calibration on the tiny model: targets hit within tolerance (checked by a direct KL), misses
reported, bad input refused."""

import pytest
import torch
import torch.nn.functional as F

from interp.evals.steering import NextTokenKL, calibrate_alpha, steer
from interp.models.prompts import encode_prompts

SITE = "blocks.0.hook_resid_post"
PROMPTS = ["The river", "A young astronomer watched the sky", "Hi there", "Numbers: 1, 2,"]


def _direct_kl(model, v, alpha):
    """KL(base || steered) at the last token, one prompt at a time, averaged."""
    kls = []
    for p in PROMPTS:
        ids = torch.tensor([encode_prompts(model, [p])[0]])
        with torch.no_grad():
            base = F.log_softmax(model.hf_model(ids).logits[0, -1], -1)
            with steer(model, v, SITE, alpha):
                st = F.log_softmax(model.hf_model(ids).logits[0, -1], -1)
        kls.append((base.exp() * (base - st)).sum().item())
    return sum(kls) / len(kls)


def test_calibration_hits_targets_and_reports_misses(tiny_model):
    v = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(0))
    kl = NextTokenKL(tiny_model, PROMPTS)
    targets = [0.002, 0.008, 1e3]  # the last is far beyond what this near-uniform model can reach
    cal = calibrate_alpha(tiny_model, v, SITE, targets, kl=kl, tol=0.05)
    assert len(cal.points) == 6  # every (sign, target) reported, hit or not
    for p in cal.points:
        if p.target < 1:
            assert p.hit, p
            assert abs(p.kl - p.target) <= 0.05 * p.target
            assert abs(_direct_kl(tiny_model, v, p.alpha) - p.target) <= 0.06 * p.target
            assert (p.alpha > 0) == (p.sign > 0)
        else:
            assert not p.hit and "unreachable" in p.note
    assert {(p.target, p.sign) for p in cal.misses} == {(1e3, 1), (1e3, -1)}
    assert cal.alpha(0.002, -1) < 0 < cal.alpha(0.008, 1)
    assert cal.alpha(1e3) is None
    assert abs(cal.alpha(0.002)) < abs(cal.alpha(0.008))


def test_tight_budget_miss_is_reported(tiny_model):
    v = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(1))
    cal = calibrate_alpha(tiny_model, v, SITE, [0.004], PROMPTS, signs=(1,), tol=1e-9, max_iter=3)
    (p,) = cal.points
    assert not p.hit and "tolerance" in p.note and p.kl > 0


def test_calibration_bad_input(tiny_model):
    v = torch.randn(tiny_model.d_model)
    with pytest.raises(ValueError, match="width"):
        calibrate_alpha(tiny_model, torch.randn(5), SITE, [0.1], PROMPTS)
    with pytest.raises(ValueError, match="unknown hook site"):
        calibrate_alpha(tiny_model, v, "blocks.0.nope", [0.1], PROMPTS)
    with pytest.raises(ValueError, match="non-empty"):
        calibrate_alpha(tiny_model, v, SITE, [0.1], [])
    with pytest.raises(ValueError, match="positive"):
        calibrate_alpha(tiny_model, v, SITE, [], PROMPTS)
