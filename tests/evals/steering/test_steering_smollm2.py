"""Steering the built-in SmolLM2 (sdpa attention, real tokenizer): hooks fire in HF generation through
the bridge, batched left-padded generation equals one-by-one, calibration hits a KL budget, and the
model is clean afterwards."""

import pytest

from interp.evals.steering import calibrate_alpha, diff_in_means, generate, steer

pytestmark = pytest.mark.slow
SITE = "blocks.10.hook_mlp_out"


@pytest.fixture(scope="module")
def smollm2():
    import interp.models

    return interp.models.load("smollm2-135m", device="cpu")


def test_steering_smollm2_end_to_end(smollm2):
    prompts = ["I think that", "The weather today is"]
    plain = generate(smollm2, prompts, max_new_tokens=6, temperature=0)
    assert plain == [generate(smollm2, [p], max_new_tokens=6, temperature=0)[0] for p in prompts]
    v = diff_in_means(
        smollm2,
        SITE,
        ["The ship sailed across the stormy ocean.", "Waves hit the shore."],
        ["The meeting is on Thursday.", "She opened the door."],
    )
    cal = calibrate_alpha(
        smollm2, v, SITE, [0.5], ["The meeting is on Thursday.", "There are three chairs."], signs=(1,), tol=0.1
    )
    (p,) = cal.points
    assert p.hit and abs(p.kl - 0.5) <= 0.05 and p.alpha > 0
    with steer(smollm2, v, SITE, 8 * p.alpha):
        steered = generate(smollm2, prompts, max_new_tokens=6, temperature=0)
    assert steered != plain
    assert generate(smollm2, prompts, max_new_tokens=6, temperature=0) == plain
    assert sum(len(h._forward_hooks) for h in smollm2.bridge.hook_dict.values()) == 0
