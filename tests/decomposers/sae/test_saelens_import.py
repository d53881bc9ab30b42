"""Reading SAELens directories written by SAELens itself (hand-made here from its format): every
supported architecture and config variant must reproduce SAELens' forward exactly, and
unsupported ones must fail with a message that says what to do."""

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.decomposers.sae import JumpReLUSAE, ReLUSAE, TopKSAE, load_saelens

D, F = 12, 40


def _weights(seed=0, unit=False):
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(F, D, generator=g) * (torch.rand(F, 1, generator=g) * 2 + 0.2)
    if unit:
        W_dec = torch.nn.functional.normalize(W_dec, dim=1)
    return {
        "W_enc": torch.randn(D, F, generator=g) * 0.5,
        "b_enc": torch.randn(F, generator=g) * 0.3,
        "W_dec": W_dec,
        "b_dec": torch.randn(D, generator=g) * 0.5,
        "threshold": torch.rand(F, generator=g) * 0.8,
    }


def _write(path, cfg, weights):
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path / "sae_weights.safetensors"))
    return path


def _v6(arch, **kw):
    return {
        "architecture": arch,
        "d_in": D,
        "d_sae": F,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.12.1",
            "model_name": "gpt2-small",
            "hook_name": "blocks.8.hook_resid_pre",
            "hook_layer": 8,
        },
        **kw,
    }


def saelens_reference(cfg, w, x, scale=1.0):
    """SAELens' inference forward (normalisation 'expected_average_only_in' applied as a factor)."""
    sae_in = x * scale - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    n = w["W_dec"].norm(dim=1)
    if cfg.get("rescale_acts_by_decoder_norm"):
        pre = pre * n
    if cfg["architecture"] == "topk":
        top = pre.topk(cfg["k"], dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    elif cfg["architecture"] == "jumprelu":
        codes = torch.relu(pre) * (pre > w["threshold"])
    else:
        codes = torch.relu(pre)
    dec = w["W_dec"] / n[:, None] if cfg.get("rescale_acts_by_decoder_norm") else w["W_dec"]
    return (codes @ dec + w["b_dec"]) / scale


def _x():
    return torch.randn(200, D, generator=torch.Generator().manual_seed(9)) * 2


@pytest.mark.parametrize(
    "arch,extra,cls",
    [
        ("standard", {}, ReLUSAE),
        ("topk", {"k": 5}, TopKSAE),
        ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}, TopKSAE),
        ("jumprelu", {}, JumpReLUSAE),
        ("jumprelu", {"apply_b_dec_to_input": False}, JumpReLUSAE),  # Gemma Scope's layout
        ("standard", {"apply_b_dec_to_input": False}, ReLUSAE),
    ],
)
def test_v6_directories_reproduce_saelens(tmp_path, arch, extra, cls):
    cfg = _v6(arch, **extra)
    w = _weights()
    if arch != "jumprelu":
        w.pop("threshold")
    sae = load_saelens(_write(tmp_path, cfg, w))
    assert type(sae) is cls and sae.cfg.d_in == D and sae.cfg.d_sae == F
    assert (sae.cfg.model, sae.cfg.site) == ("gpt2-small", "blocks.8.hook_resid_pre")
    assert sae.cfg.extra["saelens"]["architecture"] == arch
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(sae.reconstruct(x), saelens_reference(cfg, w, x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae.directions(), torch.nn.functional.normalize(w["W_dec"], dim=1))


def test_legacy_config_keys(tmp_path):
    """Pre-v6 configs: hook_point, activation_fn_str 'topk' with its k in activation_fn_kwargs."""
    cfg = {
        "d_in": D,
        "d_sae": F,
        "dtype": "float32",
        "device": "cpu",
        "hook_point": "blocks.3.hook_resid_post",
        "model_name": "pythia-70m",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4},
        "apply_b_dec_to_input": True,
        "normalize_activations": False,
        "sae_lens_training_version": "3.2.0",
    }
    w = _weights(1)
    w.pop("threshold")
    sae = load_saelens(_write(tmp_path, cfg, w))
    assert type(sae) is TopKSAE and sae.cfg.k == 4 and sae.cfg.site == "blocks.3.hook_resid_post"
    x = _x()
    ref = saelens_reference({"architecture": "topk", "k": 4}, w, x)
    with torch.no_grad():
        torch.testing.assert_close(sae.reconstruct(x), ref, atol=1e-4, rtol=1e-4)


def test_expected_average_normalisation_needs_and_folds_its_factor(tmp_path):
    cfg = _v6("jumprelu", normalize_activations="expected_average_only_in")
    w = _weights(2)
    path = _write(tmp_path, cfg, w)
    with pytest.raises(ValueError, match="norm_scaling_factor"):
        load_saelens(path)
    sae = load_saelens(path, norm_scaling_factor=0.3)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(sae.reconstruct(x), saelens_reference(cfg, w, x, scale=0.3), atol=1e-4, rtol=1e-4)


def test_finetuning_scaling_factor_is_folded(tmp_path):
    w = _weights(3)
    w.pop("threshold")
    scale = torch.rand(F) + 0.5
    _write(tmp_path, _v6("standard", finetuning_scaling_factor=True), {**w, "finetuning_scaling_factor": scale})
    sae = load_saelens(tmp_path)
    x = _x()
    ref = saelens_reference({"architecture": "standard"}, {**w, "W_dec": w["W_dec"] * scale[:, None]}, x)
    with torch.no_grad():
        torch.testing.assert_close(sae.reconstruct(x), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"architecture": "gated"}, "not supported"),
        ({"normalize_activations": "layer_norm"}, "per-token"),
        ({"d_sae": F + 1}, "shape"),
    ],
)
def test_unsupported_or_inconsistent_directories_fail_clearly(tmp_path, change, message):
    w = _weights()
    w.pop("threshold")
    with pytest.raises(ValueError, match=message):
        load_saelens(_write(tmp_path, {**_v6("standard"), **change}, w))


def test_missing_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_saelens(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps(_v6("standard")))
    with pytest.raises(FileNotFoundError, match="sae_weights.safetensors"):
        load_saelens(tmp_path)
