"""``run_to_sites`` against the reference: a plain full forward with ``run_with_cache`` (no early stop,
one unpadded prompt at a time for the left-padded batch)."""

import pytest
import torch

from interp.models import run_to_sites
from interp.models.prompts import left_pad

SITES = ["blocks.0.attn.hook_z", "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"]


def _reference(model, tokens, sites):
    _, cache = model.bridge.run_with_cache(tokens, names_filter=list(sites))
    return {s: cache[s].reshape(*tokens.shape, -1) for s in sites}


def test_unpadded_batch_equals_full_forward(tiny_model):
    tokens = torch.randint(3, 200, (3, 11), generator=torch.Generator().manual_seed(0))
    got = run_to_sites(tiny_model, tokens, SITES)
    ref = _reference(tiny_model, tokens, SITES)
    assert list(got) == SITES
    for s in SITES:
        assert got[s].shape == (3, 11, tiny_model.site_width(s))
        torch.testing.assert_close(got[s], ref[s], rtol=1e-5, atol=1e-6)


def test_left_padded_rows_equal_each_row_alone(tiny_model):
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (9, 4, 1, 6)]
    ids, mask = left_pad(seqs, pad=0)
    got = run_to_sites(tiny_model, ids, SITES, attention_mask=mask)
    width = ids.shape[1]
    for r, seq in enumerate(seqs):
        ref = _reference(tiny_model, torch.tensor([seq]), SITES)
        for s in SITES:
            torch.testing.assert_close(got[s][r, width - len(seq) :], ref[s][0], rtol=1e-4, atol=1e-5)
    # without the mask the pads are attended to and shift the positions: rows with pads differ
    unmasked = run_to_sites(tiny_model, ids, ["blocks.0.hook_resid_post"])["blocks.0.hook_resid_post"]
    assert not torch.allclose(unmasked[1, -4:], got["blocks.0.hook_resid_post"][1, -4:], atol=1e-4)


def test_stops_after_the_deepest_site(tiny_model):
    later = f"blocks.{tiny_model.n_layers - 1}.hook_resid_post"
    fired: list[str] = []
    point = tiny_model.bridge.hook_dict[later]
    point.add_hook(lambda act, hook: fired.append(hook.name))
    try:
        run_to_sites(tiny_model, torch.ones(1, 4, dtype=torch.long), ["blocks.0.hook_resid_post"])
        assert fired == []
        run_to_sites(tiny_model, torch.ones(1, 4, dtype=torch.long), [later])
        assert len(fired) == 1
    finally:
        point.remove_hooks()


def test_bad_input_is_refused(tiny_model):
    tokens = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown hook site"):
        run_to_sites(tiny_model, tokens, ["blocks.0.hook_nonsense"])
    with pytest.raises(ValueError, match="attention_mask"):
        run_to_sites(tiny_model, tokens, ["blocks.0.hook_resid_post"], attention_mask=torch.ones(2, 5))
