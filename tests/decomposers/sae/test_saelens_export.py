"""The SAELens files written beside every TopK artifact reproduce our SAE under SAELens' forward."""

import json

import torch
from safetensors.torch import load_file

from interp.decomposers.sae import train


def test_saelens_files_reproduce_reconstruction(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2048, 16) * 7.0 + 2.0  # far from unit scale: the folding must matter
    sae = train(
        dict(
            method="topk",
            d_sae=32,
            k=4,
            batch_size=256,
            n_tokens=4096,
            wandb="disabled",
            device="cpu",
            model="tiny-llama",
            site="blocks.0.hook_resid_post",
        ),
        x,
        out=tmp_path,
        progress=False,
    )
    assert abs(sae.norm_scale.item() - 1.0) > 0.1
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and (cfg["d_in"], cfg["d_sae"]) == (16, 32)
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (16, 32) and w["W_dec"].shape == (32, 16)
    assert torch.allclose(w["W_dec"].norm(dim=1), torch.ones(32), atol=1e-5)
    # SAELens TopK forward on raw activations
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    vals, idx = pre.topk(4, dim=1)
    feats = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
    x_hat = feats @ w["W_dec"] + w["b_dec"]
    with torch.no_grad():
        ours = sae.reconstruct(x)
    assert torch.allclose(x_hat, ours, atol=1e-4)
