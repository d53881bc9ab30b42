"""Component interventions on the tiny Llama: scale 1 is the identity, scale 0 equals the weight
edit that removes the component, set/replace put the intended coefficient on the write vector."""

import pytest
import torch

from interp.decomposers.heads.interventions import ComponentEdit, component_hooks, edit_weights
from interp.decomposers.heads.svd import HeadSVD

TOKS = torch.randint(3, 250, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def svd(tiny_model):
    return HeadSVD.fit(tiny_model)


@torch.no_grad()
def run(model, hooks=(), names=()):
    with model.bridge.hooks(fwd_hooks=list(hooks)):
        return model.bridge.run_with_cache(TOKS, names_filter=list(names))


def head_out(model, svd, cache, l, h):
    return cache[f"blocks.{l}.attn.hook_z"][:, :, h] @ svd.W_O[l, h]


def test_scale_one_is_identity_and_scale_zero_equals_weight_edit(tiny_model, svd):
    base, _ = run(tiny_model)
    edits = [ComponentEdit(0, 1, 0, 1.0), ComponentEdit(0, 3, 2, 1.0), ComponentEdit(1, 2, 5, 1.0)]
    same, _ = run(tiny_model, component_hooks(svd, edits))
    assert torch.allclose(same, base, atol=1e-5)
    zero = [ComponentEdit(e.layer, e.head, e.index, 0.0) for e in edits]
    act, _ = run(tiny_model, component_hooks(svd, zero))
    assert (act - base).abs().max() > 1e-4  # the edit does something
    w0 = tiny_model.hf_model.get_decoder().layers[0].self_attn.o_proj.weight.clone()
    with edit_weights(tiny_model, svd, zero):
        wt, _ = run(tiny_model)
        assert not torch.equal(tiny_model.hf_model.get_decoder().layers[0].self_attn.o_proj.weight, w0)
    assert torch.allclose(act, wt, atol=1e-4)
    assert torch.equal(tiny_model.hf_model.get_decoder().layers[0].self_attn.o_proj.weight, w0)  # restored
    half = [ComponentEdit(1, 2, 5, 0.5)]
    a, _ = run(tiny_model, component_hooks(svd, half))
    with edit_weights(tiny_model, svd, half):
        w, _ = run(tiny_model)
    assert torch.allclose(a, w, atol=1e-4)


def test_set_and_replace_put_the_coefficient_on_the_write_vector(tiny_model, svd):
    names = ["blocks.0.attn.hook_z"]
    _, base = run(tiny_model, names=names)
    v = svd.components(0, 2)[2]
    o = head_out(tiny_model, svd, base, 0, 2)
    _, c = run(tiny_model, component_hooks(svd, [ComponentEdit(0, 2, 3, 2.5)], mode="set"), names)
    o2 = head_out(tiny_model, svd, c, 0, 2)
    assert torch.allclose(o2 @ v[3], torch.full((2, 10), 2.5), atol=1e-4)
    others = [i for i in range(16) if i != 3]
    assert torch.allclose(o2 @ v[others].T, o @ v[others].T, atol=1e-5)
    _, c = run(
        tiny_model, component_hooks(svd, [ComponentEdit(0, 2, 3, -4.0)], mode="replace", positions="last"), names
    )
    o3 = head_out(tiny_model, svd, c, 0, 2)
    assert torch.allclose(o3[:, -1], -4.0 * v[3].expand(2, -1), atol=1e-4)
    assert torch.allclose(o3[:, :-1], o[:, :-1], atol=1e-6)  # other positions untouched
    assert torch.allclose(head_out(tiny_model, svd, c, 0, 1), head_out(tiny_model, svd, base, 0, 1))


def test_bad_edits_are_rejected(svd):
    with pytest.raises(ValueError, match="mode"):
        component_hooks(svd, [ComponentEdit(0, 0, 0)], mode="boost")
    with pytest.raises(ValueError, match="out of range"):
        component_hooks(svd, [ComponentEdit(0, 0, 99)])
    with pytest.raises(ValueError, match="duplicate"):
        component_hooks(svd, [ComponentEdit(0, 0, 1), ComponentEdit(0, 0, 1)])
