"""What every registered SAE method owes beyond the registry-wide contract
(tests/decomposers/test_registry_contract.py: shapes, unit directions at the site, artifact round
trip): its directions are its decoder rows, training lowers the loss, and the SAELens files (keys,
shapes, cfg fields, an independent SAELens forward, and our reader)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from interp.decomposers import REGISTRY, load
from interp.decomposers.sae import SAE, TrainConfig, load_saelens, train
from interp.errors import ConfigError

D, F = 32, 64
SAE_METHODS = sorted(m for m, cls in REGISTRY.items() if issubclass(cls, SAE))
SAELENS_ARCHS = {"standard", "topk", "jumprelu"}


def planted(n=4096, seed=0, n_atoms=64, active=2):
    """Sparse non-negative combinations of random unit atoms (a tiny problem SAEs can learn): the
    atoms are the same for every ``seed``, which draws only the combinations."""
    atoms = torch.randn(n_atoms, D, generator=torch.Generator().manual_seed(1234))
    atoms /= atoms.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :active]
    codes = torch.zeros(n, n_atoms).scatter_(1, idx, torch.rand(n, active, generator=g) + 0.5)
    return 3.0 * codes @ atoms + 0.5


def build(method: str, scale: float = 0.4, seed: int = 0) -> SAE:
    """An SAE from its config class defaults at a tiny width, with data-set biases and scaling."""
    cls = REGISTRY[method]
    sae = cls(
        cls.config_cls(d_in=D, d_sae=F, model="tiny-llama", site="blocks.0.hook_resid_post"), TrainConfig(seed=seed)
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.norm_scale.fill_(scale)
        sae.init_from_data(planted(512) * scale)
        sae.b_enc.add_(0.05 * torch.randn(F, generator=g))
    return sae.eval()


# The update's lambda = 5 is calibrated for model widths: at D = 32 an untrained dictionary's
# projections (~1) sit below lambda / 2 and every latent dies within the 2 warm-up steps.
TINY_OVERRIDES = {"relu": {"l1_coeff": 1.0}}


def train_cfg(method: str, n_steps: int) -> dict:
    return dict(
        method=method,
        d_sae=F,
        batch_size=256,
        n_tokens=256 * n_steps,
        warmup_steps=5,  # lr: the default
        wandb="disabled",
        device="cpu",
        seed=0,
        norm_scale_tokens=1024,
        **TINY_OVERRIDES.get(method, {}),
    )


@pytest.fixture(scope="module")
def x():
    return planted(300, seed=7)


@pytest.mark.parametrize("method", SAE_METHODS)
def test_directions_are_normalised_decoder_rows_and_codes_are_float32(method, x):
    sae = build(method)
    W = sae.W_dec.detach()
    torch.testing.assert_close(sae.directions(), W / W.norm(dim=1, keepdim=True))
    with torch.no_grad():
        assert sae.encode(x).dtype == torch.float32


@pytest.mark.parametrize("method", SAE_METHODS)
def test_training_reduces_loss(method):
    """Learning lowers the variant's own loss: after 40 steps it is below 0.7 x that of the same run
    with the weights all but frozen (lr 1e-9), which keeps everything else the run does. (A bias-
    adaptation variant's thresholds come down to their targets in both runs: its first loss, of a
    dense code, is no baseline, as its ``first_loss_is_a_baseline`` says.) The trained SAE also
    reconstructs held-out combinations of the same atoms."""
    data = planted(8192, seed=3)
    frozen = train(train_cfg(method, 40) | {"lr": 1e-9}, data, progress=False).meta["final"]["loss"]
    trained = train(train_cfg(method, 40), data, progress=False)
    assert trained.meta["final"]["loss"] < 0.7 * frozen, (frozen, trained.meta["final"])
    with torch.no_grad():
        held = planted(1000, seed=11)
        fvu = ((trained.reconstruct(held) - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum()).item()
    assert fvu < 0.9, fvu


# -- SAELens ------------------------------------------------------------------------------------------


def saelens_forward(cfg: dict, w: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens v6 inference, written from its source: (codes, reconstruction) on raw inputs."""
    sae_in = x - w["b_dec"] * cfg["apply_b_dec_to_input"]
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "standard":
        codes = torch.relu(pre)
    elif cfg["architecture"] == "topk":
        top = pre.topk(cfg["k"], dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    elif cfg["architecture"] == "jumprelu":
        codes = torch.relu(pre) * (pre > w["threshold"])
    else:
        raise AssertionError(cfg["architecture"])
    return codes, codes @ w["W_dec"] + w["b_dec"]


def exportable(sae: SAE) -> bool:
    return sae.saelens_architecture is not None  # on the instance: a variant may compute it


@pytest.mark.parametrize("method", SAE_METHODS)
def test_saelens_files_follow_the_spec(method, x, tmp_path):
    sae = build(method, scale=0.4)
    if not exportable(sae):
        with pytest.raises(NotImplementedError, match="SAELens"):
            sae.save_saelens(tmp_path)
        return
    sae.save_saelens(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    exact = sae.saelens_exact
    assert cfg["architecture"] in SAELENS_ARCHS
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (D, F, "float32", "cpu")
    assert cfg["apply_b_dec_to_input"] is True
    assert cfg["normalize_activations"] in (("none",) if exact else ("none", "layer_norm"))
    assert cfg["reshape_activations"] == "none"
    meta = cfg["metadata"]
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6
    assert (meta["model_name"], meta["hook_name"], meta["hook_layer"]) == ("tiny-llama", "blocks.0.hook_resid_post", 0)
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    want = {"W_enc": (D, F), "b_enc": (F,), "W_dec": (F, D), "b_dec": (D,)}
    if cfg["architecture"] == "jumprelu":
        want["threshold"] = (F,)
    assert {k: tuple(v.shape) for k, v in w.items()} == want
    assert all(v.dtype == torch.float32 for v in w.values())
    torch.testing.assert_close(w["W_dec"].norm(dim=1), torch.ones(F))  # unit rows: norms folded in
    if not exact:  # a declared approximation (SAELens cannot run this variant exactly)
        return
    codes, x_hat = saelens_forward(cfg, w, x)
    with torch.no_grad():
        torch.testing.assert_close(x_hat, sae.reconstruct(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(codes, sae.encode(x) / 0.4, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", SAE_METHODS)
def test_saelens_export_then_load_is_identical(method, x, tmp_path):
    sae = build(method, scale=0.4)
    if not exportable(sae) or not sae.saelens_exact:
        pytest.skip(f"{method} has no exact SAELens equivalent")
    back = load_saelens(sae.save_saelens(tmp_path))
    assert isinstance(back, SAE) and back.norm_scale.item() == 1.0 and not back.training
    assert (back.cfg.model, back.cfg.site) == ("tiny-llama", "blocks.0.hook_resid_post")
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), sae.encode(x) / 0.4, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back.reconstruct(x), sae.reconstruct(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(back.directions(), sae.directions(), atol=1e-5, rtol=1e-5)
    back.save(tmp_path / "ours")  # and it is a normal artifact of ours from then on
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "ours").reconstruct(x), back.reconstruct(x))


@pytest.mark.parametrize("method", ["topk", "batchtopk", "topafa"])
def test_aux_k_zero_turns_auxk_off_and_a_negative_one_is_refused(method):
    """aux_k = 0 trains without AuxK once latents die (it crashed in the sparse decode at the first
    dead latent); a negative aux_k is a ConfigError before any compute."""
    cfg = train_cfg(method, 30) | {"d_sae": 512, "dead_tokens": 512, "aux_k": 0}
    sae = train(cfg, planted(4096, seed=3), progress=False)
    assert "aux" not in sae.meta["final"] and sae.meta["final"]["loss"] < 1
    with pytest.raises(ConfigError, match="aux_k must be >= 0"):
        train(cfg | {"aux_k": -1}, planted(512), progress=False)
