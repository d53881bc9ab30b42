"""interp.models on the seeded tiny Llama: facts, hook-site validation, site widths, spec errors."""

import pytest
import torch

from interp.models import BUILTIN_ALIASES, load, site_layer, site_width, stop_layer, valid_sites


def test_tiny_llama_facts(tiny_model):
    m = tiny_model
    assert (m.n_layers, m.d_model, m.d_mlp) == (2, 64, 128)
    assert (m.n_heads, m.n_kv_heads, m.d_head) == (4, 2, 16)
    assert m.name == "tiny-llama" and m.spec == "tiny-llama"
    assert m.device == torch.device("cpu")
    assert m.hf_model is m.bridge.original_model
    assert m.tokenizer.bos_token_id == 0


def test_tiny_llama_is_deterministic(tiny_model):
    """The spec denotes fixed weights: a second load gives identical parameters and outputs."""
    other = load("tiny-llama", device="cpu")
    a = dict(tiny_model.hf_model.named_parameters())
    b = dict(other.hf_model.named_parameters())
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    toks = torch.tensor([[0, 40, 41, 42, 43, 44]])
    with torch.no_grad():
        assert torch.equal(tiny_model.bridge(toks), other.bridge(toks))


def test_valid_site_returned_unchanged(tiny_model):
    for site in [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_post",
        "blocks.1.mlp.hook_post",
        "blocks.0.attn.hook_z",
        "blocks.0.hook_mlp_out",
    ]:
        assert tiny_model.validate_site(site) == site
        assert site in valid_sites(tiny_model)


@pytest.mark.parametrize(
    "typo, expected",
    [
        ("blocks.0.hook_resid_psot", "blocks.0.hook_resid_post"),
        ("blocks.1.mlp.hook_pots", "blocks.1.mlp.hook_post"),
        ("blocks.0.attn.hook_zz", "blocks.0.attn.hook_z"),
    ],
)
def test_unknown_site_names_closest_valid(tiny_model, typo, expected):
    with pytest.raises(ValueError) as err:
        tiny_model.validate_site(typo)
    msg = str(err.value)
    assert typo in msg
    assert expected in msg


def test_unknown_site_without_close_match(tiny_model):
    with pytest.raises(ValueError, match="unknown hook site"):
        tiny_model.validate_site("zzzzzzzz")


@pytest.mark.parametrize("site", ["blocks.2.hook_resid_post", "blocks.17.mlp.hook_post"])
def test_out_of_range_layer(tiny_model, site):
    with pytest.raises(ValueError) as err:
        tiny_model.validate_site(site)
    msg = str(err.value)
    assert "layer" in msg and "0..1" in msg


@pytest.mark.parametrize(
    "site, width",
    [
        ("blocks.0.hook_resid_pre", 64),
        ("blocks.1.hook_resid_post", 64),
        ("blocks.0.hook_mlp_out", 64),
        ("blocks.1.mlp.hook_post", 128),
        ("blocks.0.mlp.hook_pre", 128),
        ("blocks.0.attn.hook_z", 4 * 16),
        # not in the table: width found by a probe forward pass
        ("blocks.0.attn.hook_q", 4 * 16),
        ("blocks.1.attn.hook_k", 2 * 16),  # grouped-query attention: n_kv_heads * d_head
    ],
)
def test_site_width(tiny_model, site, width):
    assert site_width(tiny_model, site) == width
    assert tiny_model.site_width(site) == width


def test_site_width_matches_actual_activation(tiny_model):
    toks = torch.tensor([[0, 50, 60, 70, 80]])
    sites = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post", "blocks.0.attn.hook_z"]
    _, cache = tiny_model.bridge.run_with_cache(toks, names_filter=sites)
    for s in sites:
        assert cache[s].shape[:2] == toks.shape
        assert cache[s].shape[2:].numel() == site_width(tiny_model, s)


def test_site_width_rejects_unknown_site(tiny_model):
    with pytest.raises(ValueError):
        site_width(tiny_model, "blocks.0.hook_nothing")


def test_site_layer_and_stop_layer():
    assert site_layer("blocks.3.mlp.hook_post") == 3
    assert site_layer("blocks.12.hook_resid_pre") == 12
    assert site_layer("hook_embed") is None
    assert site_layer("ln_final.hook_normalized") is None
    assert stop_layer(["blocks.0.hook_resid_post"]) == 1
    assert stop_layer(["blocks.1.mlp.hook_post", "blocks.0.hook_resid_pre"]) == 2
    assert stop_layer(["blocks.10.hook_resid_pre", "blocks.2.hook_resid_post"]) == 11
    assert stop_layer(["blocks.0.hook_resid_post", "ln_final.hook_normalized"]) is None


def test_stop_layer_keeps_site_values(tiny_model):
    """Stopping after the deepest site's block leaves that site's activations unchanged."""
    toks = torch.tensor([[0, 84, 104, 101, 32, 99, 97, 116]])
    site = "blocks.0.hook_resid_post"
    _, full = tiny_model.bridge.run_with_cache(toks, names_filter=[site])
    _, part = tiny_model.bridge.run_with_cache(toks, names_filter=[site], stop_at_layer=stop_layer([site]))
    torch.testing.assert_close(part[site], full[site], atol=1e-6, rtol=0)


def test_mlp_hook_post_times_w_down_is_mlp_out(tiny_model):
    """mlp.hook_post is the hidden activation act(gate)*up: projecting it by W_down gives mlp_out."""
    torch.manual_seed(0)
    toks = torch.randint(3, 259, (2, 12))
    sites = [f"blocks.{L}.{s}" for L in range(2) for s in ("mlp.hook_post", "hook_mlp_out")]
    with torch.no_grad():
        _, cache = tiny_model.bridge.run_with_cache(toks, names_filter=sites)
    for layer in range(2):
        W_down = tiny_model.hf_model.model.layers[layer].mlp.down_proj.weight  # [D, d_mlp]
        post = cache[f"blocks.{layer}.mlp.hook_post"]
        assert post.shape == (2, 12, 128)
        torch.testing.assert_close(post @ W_down.T, cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-5, rtol=1e-5)


def test_resid_post_is_resid_mid_plus_mlp_out(tiny_model):
    toks = torch.tensor([[0, 72, 101, 108, 108, 111]])
    names = [
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_pre",
    ]
    with torch.no_grad():
        _, c = tiny_model.bridge.run_with_cache(toks, names_filter=names)
    torch.testing.assert_close(
        c["blocks.1.hook_resid_mid"] + c["blocks.1.hook_mlp_out"], c["blocks.1.hook_resid_post"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(c["blocks.0.hook_resid_post"], c["blocks.1.hook_resid_pre"])


def test_unknown_model_spec_mentions_aliases():
    with pytest.raises(ValueError) as err:
        load("definitely-not-a-model-xyz", device="cpu")
    msg = str(err.value)
    assert "definitely-not-a-model-xyz" in msg
    for alias in ("smollm2-135m", "gemma3-270m"):
        assert alias in msg
    assert "smollm2-135m" in BUILTIN_ALIASES and "gemma3-270m" in BUILTIN_ALIASES


@pytest.mark.parametrize("spec", ["", None, 3])
def test_empty_or_non_string_spec(spec):
    with pytest.raises(ValueError):
        load(spec, device="cpu")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "nope.gguf"), device="cpu")


def test_directory_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(str(tmp_path), device="cpu")


def test_device_map_load_matches_plain_load(tiny_model):
    """``device_map`` (accelerate placement, for models larger than one device) gives the same model."""
    import torch

    import interp.models

    mapped = interp.models.load("tiny-llama", device_map="cpu")
    tokens = torch.tensor([[1, 5, 9, 200, 31]])
    torch.testing.assert_close(mapped.bridge(tokens), tiny_model.bridge(tokens))
