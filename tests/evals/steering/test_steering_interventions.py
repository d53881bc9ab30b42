"""Interventions and generation on the tiny model: exact edits, clean exit, padding, bad input."""

import pytest
import torch

from interp.evals.steering import (
    decomposer_direction,
    diff_in_means,
    generate,
    prompt_length,
    residual_directions,
    steer,
)
from interp.models.prompts import encode_prompts, forward, left_pad, pad_id

SITE = "blocks.0.hook_resid_post"
PROMPTS = ["The river", "A young astronomer watched the sky", "Hi"]


def _batch(model, prompts=PROMPTS):
    return left_pad(encode_prompts(model, prompts), pad_id(model.tokenizer))


def _capture(model, site, fn):
    got = []
    handle = model.bridge.hook_dict[site].register_forward_hook(lambda m, i, o: got.append(o.detach().clone()))
    try:
        fn()
    finally:
        handle.remove()
    return got


def _n_hooks(model):
    return sum(len(hp._forward_hooks) for hp in model.bridge.hook_dict.values())


def test_add_changes_site_by_exactly_alpha_v(tiny_model):
    ids, mask = _batch(tiny_model)
    v = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(0))
    run = lambda: forward(tiny_model, ids, mask)  # noqa: E731
    before = _capture(tiny_model, SITE, run)[0]
    earlier_before = _capture(tiny_model, "blocks.0.hook_resid_mid", run)[0]
    with steer(tiny_model, v, SITE, 2.5):
        after = _capture(tiny_model, SITE, run)[0]
        earlier_after = _capture(tiny_model, "blocks.0.hook_resid_mid", run)[0]
    expected = 2.5 * v / v.norm()
    torch.testing.assert_close(after - before, expected.expand_as(before), atol=1e-5, rtol=0)
    assert torch.equal(earlier_after, earlier_before)  # nothing upstream moved
    with steer(tiny_model, v, SITE, 2.5, normalize=False):
        raw = _capture(tiny_model, SITE, run)[0]
    torch.testing.assert_close(raw - before, (2.5 * v).expand_as(before), atol=1e-5, rtol=0)


def test_alpha_zero_identical_and_model_clean_after(tiny_model):
    ids, mask = _batch(tiny_model)
    v = torch.randn(tiny_model.d_model)
    hooks = _n_hooks(tiny_model)
    with torch.no_grad():
        base = forward(tiny_model, ids, mask)
        with steer(tiny_model, v, SITE, 0.0):
            zero = forward(tiny_model, ids, mask)
        assert torch.equal(zero, base)
        with steer(tiny_model, v, SITE, 3.0):
            moved = forward(tiny_model, ids, mask)
        assert not torch.allclose(moved, base)
        with pytest.raises(RuntimeError, match="boom"):
            with steer(tiny_model, v, SITE, 3.0):
                raise RuntimeError("boom")
        assert _n_hooks(tiny_model) == hooks
        assert torch.equal(forward(tiny_model, ids, mask), base)


def test_project_clamp_ablate(tiny_model):
    ids, mask = _batch(tiny_model)
    v = torch.randn(tiny_model.d_model)
    u = v / v.norm()
    run = lambda: forward(tiny_model, ids, mask)  # noqa: E731
    x = _capture(tiny_model, SITE, run)[0]
    with steer(tiny_model, v, SITE, mode="project"):
        p = _capture(tiny_model, SITE, run)[0]
    torch.testing.assert_close(p, x - (x @ u)[..., None] * u, atol=1e-5, rtol=0)
    assert (p @ u).abs().max() < 1e-4
    with steer(tiny_model, v, SITE, 1.5, mode="clamp"):
        c = _capture(tiny_model, SITE, run)[0]
    torch.testing.assert_close(c @ u, torch.full_like(c @ u, 1.5), atol=1e-4, rtol=0)

    from interp.decomposers.sae import TopKConfig, TopKSAE

    sae = TopKSAE(TopKConfig(d_in=tiny_model.d_model, d_sae=32, k=4, site=SITE, model="tiny-llama"))
    with torch.no_grad():
        sae.b_enc.fill_(0.5)  # make features fire
        sae.norm_scale.fill_(2.0)
    f = int(sae.encode(x.reshape(-1, x.shape[-1])).abs().sum(0).argmax())
    with steer(tiny_model, None, SITE, mode="ablate", decomposer=sae, feature=f):
        a = _capture(tiny_model, SITE, run)[0]
    flat = x.reshape(-1, x.shape[-1])
    codes = sae.encode(flat)
    direct = flat - codes[:, f : f + 1] * sae.W_dec[f] / 2.0  # the feature's term of decode()
    torch.testing.assert_close(a.reshape(-1, a.shape[-1]), direct.detach(), atol=1e-5, rtol=0)


def test_generated_positions_only(tiny_model):
    v = torch.randn(tiny_model.d_model)
    u = v / v.norm()
    ids, mask = _batch(tiny_model)
    run = lambda: forward(tiny_model, ids, mask)  # noqa: E731
    x = _capture(tiny_model, SITE, run)[0]
    with steer(tiny_model, v, SITE, 2.0, positions="generated"):
        y = _capture(tiny_model, SITE, run)[0]  # outside generate: the whole input is the prompt
        with prompt_length(ids.shape[1] - 2):  # the last 2 columns are continuation
            z = _capture(tiny_model, SITE, run)[0]
    diff = (y - x) @ u
    assert diff[:, :-1].abs().max() < 1e-5 and torch.allclose(diff[:, -1], torch.full_like(diff[:, -1], 2.0), atol=1e-4)
    dz = (z - x) @ u
    assert dz[:, :-3].abs().max() < 1e-5 and torch.allclose(dz[:, -3:], torch.full_like(dz[:, -3:], 2.0), atol=1e-4)

    # during generation: the prefill edits only the last prompt column, every cached step is edited
    with steer(tiny_model, v, SITE, 2.0, positions="generated"):
        gen_calls = _capture(tiny_model, SITE, lambda: generate(tiny_model, PROMPTS, max_new_tokens=3, temperature=0))
    plain_calls = _capture(tiny_model, SITE, lambda: generate(tiny_model, PROMPTS, max_new_tokens=3, temperature=0))
    assert [g.shape[1] for g in gen_calls] == [ids.shape[1], 1, 1]  # KV cache: one prefill, then 1 token
    d0 = (gen_calls[0] - plain_calls[0]) @ u
    assert d0[:, :-1].abs().max() < 1e-5 and torch.allclose(d0[:, -1], torch.full_like(d0[:, -1], 2.0), atol=1e-4)


def test_batched_generation_matches_single_and_is_seeded(tiny_model):
    batched = generate(tiny_model, PROMPTS, max_new_tokens=6, temperature=0)
    single = [generate(tiny_model, [p], max_new_tokens=6, temperature=0)[0] for p in PROMPTS]
    assert batched == single
    a = generate(tiny_model, PROMPTS, max_new_tokens=6, seed=3)
    assert a == generate(tiny_model, PROMPTS, max_new_tokens=6, seed=3)
    v = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(1))
    with steer(tiny_model, v, SITE, 50.0):
        steered = generate(tiny_model, PROMPTS, max_new_tokens=6, temperature=0)
    assert steered != batched
    assert generate(tiny_model, PROMPTS, max_new_tokens=6, temperature=0) == batched  # clean after


def test_bad_input(tiny_model):
    with pytest.raises(ValueError, match="width"):
        with steer(tiny_model, torch.randn(tiny_model.d_model + 1), SITE, 1.0):
            pass
    with pytest.raises(ValueError, match="unknown hook site"):
        with steer(tiny_model, torch.randn(tiny_model.d_model), "blocks.0.hook_resid_pots", 1.0):
            pass
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        with steer(tiny_model, torch.randn(tiny_model.d_model), "blocks.7.hook_resid_post", 1.0):
            pass
    with pytest.raises(ValueError, match="mode"):
        with steer(tiny_model, torch.randn(tiny_model.d_model), SITE, 1.0, mode="multiply"):
            pass
    with pytest.raises(ValueError, match="zero vector"):
        with steer(tiny_model, torch.zeros(tiny_model.d_model), SITE, 1.0):
            pass
    with pytest.raises(ValueError, match="non-empty"):
        generate(tiny_model, [])
    with pytest.raises(ValueError, match="non-empty"):
        diff_in_means(tiny_model, SITE, [], ["x"])


def test_diff_in_means_matches_per_prompt_loop(tiny_model):
    pos, neg = ["a cat on a mat", "the cat sat"], ["numbers 1 2 3", "x", "stock prices fell"]
    got = diff_in_means(tiny_model, "blocks.1.hook_mlp_out", pos, neg)

    def mean_acts(prompts):
        rows = []
        for p in prompts:
            ids = torch.tensor([encode_prompts(tiny_model, [p])[0]])
            _, cache = tiny_model.bridge.run_with_cache(ids, names_filter=["blocks.1.hook_mlp_out"])
            rows.append(cache["blocks.1.hook_mlp_out"][0, 1:])  # BOS left out
        return torch.cat(rows).mean(0)

    torch.testing.assert_close(got, mean_acts(pos) - mean_acts(neg), atol=1e-5, rtol=1e-4)


def test_neuron_space_mapping_is_exact(tiny_model):
    layer = 1
    v = torch.randn(tiny_model.d_mlp, generator=torch.Generator().manual_seed(2))
    r = residual_directions(tiny_model, v[None], layer)[0]
    w = tiny_model.hf_model.model.layers[layer].mlp.down_proj.weight
    torch.testing.assert_close(r, (v @ w.T).detach(), atol=1e-5, rtol=1e-5)
    ids, mask = _batch(tiny_model)
    with torch.no_grad():
        with steer(tiny_model, v, f"blocks.{layer}.mlp.hook_post", 3.0, normalize=False):
            a = forward(tiny_model, ids, mask)
        with steer(tiny_model, r, f"blocks.{layer}.hook_mlp_out", 3.0, normalize=False):
            b = forward(tiny_model, ids, mask)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    from interp.decomposers.sae import TopKConfig, TopKSAE

    dec = TopKSAE(TopKConfig(d_in=tiny_model.d_mlp, d_sae=8, k=2, site=f"blocks.{layer}.mlp.hook_post"))
    d, site = decomposer_direction(dec, 3, tiny_model, f"blocks.{layer}.hook_mlp_out")
    assert site == f"blocks.{layer}.hook_mlp_out" and d.shape == (tiny_model.d_model,)
    torch.testing.assert_close(d, (dec.W_dec[3] @ w.T).detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot map"):
        decomposer_direction(dec, 3, tiny_model, "blocks.0.hook_resid_post")
