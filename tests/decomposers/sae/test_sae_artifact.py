"""The TopK SAE's public interface (encode/decode/reconstruct/directions, normalisation) and its
artifact (config.json + weights.safetensors + meta.json) through save/load and the registry."""

from interp.decomposers.sae.train_config import TrainConfig
import dataclasses
import json
import struct

import pytest
import torch
from interp.errors import ConfigError
from safetensors.torch import load_file

import interp.decomposers as dec
from interp.decomposers import REGISTRY, Decomposer, load, register
from interp.decomposers.sae import SAE, TopKConfig, TopKSAE, train

D, F, K = 16, 48, 4


def _data(n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, D, generator=g) + 1.0


def _cfg(**kw):
    base = dict(
        method="topk",
        d_sae=F,
        k=K,
        batch_size=128,
        n_tokens=128 * 30,
        lr=3e-3,
        wandb="disabled",
        seed=0,
        norm_scale_tokens=1024,
        device="cpu",
    )
    return {**base, **kw}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "artifact"
    sae = train(_cfg(), _data(), out=out, progress=False)
    return sae, out


def _random_sae(seed=0, scale=1.0):
    sae = TopKSAE(TopKConfig(d_in=D, d_sae=F, k=K), TrainConfig(seed=seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(F, generator=g))
        sae.b_dec.copy_(0.1 * torch.randn(D, generator=g))
        sae.norm_scale.fill_(scale)
    return sae


# -- interface -------------------------------------------------------------------------------------


def test_encode_is_k_sparse_relu_topk():
    sae = _random_sae(scale=0.7)
    x = _data(64)
    codes = sae.encode(x)
    assert codes.shape == (64, F)
    assert ((codes != 0).sum(1) <= K).all() and (codes >= 0).all()
    pre = (x * 0.7 - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(K, dim=1)
    want = torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
    torch.testing.assert_close(codes, want.detach())


def test_encode_then_decode_equals_reconstruct():
    sae = _random_sae(scale=0.37)
    x = _data(100)
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(sae.encode(x)), sae.reconstruct(x), atol=1e-5, rtol=1e-5)
        want = (sae.encode(x) @ sae.W_dec + sae.b_dec) / 0.37
        torch.testing.assert_close(sae.decode(sae.encode(x)), want)


def test_norm_scale_is_applied_inside():
    """An SAE with norm_scale s on x behaves like the same weights with scale 1 on s*x, rescaled."""
    s = 0.25
    scaled, plain = _random_sae(scale=s), _random_sae(scale=1.0)
    x = _data(64)
    with torch.no_grad():
        torch.testing.assert_close(scaled.encode(x), plain.encode(x * s))
        torch.testing.assert_close(scaled.reconstruct(x), plain.reconstruct(x * s) / s)
        codes = plain.encode(x * s)
        torch.testing.assert_close(scaled.decode(codes), plain.decode(codes) / s)
        assert not torch.allclose(scaled.encode(x), plain.encode(x))


def test_reconstruct_is_positively_homogeneous_without_biases():
    """With zero biases a ReLU-TopK SAE commutes with positive scaling: reconstruct(c x) = c reconstruct(x)."""
    sae = _random_sae(scale=0.5)
    with torch.no_grad():
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        x = _data(32)
        torch.testing.assert_close(sae.reconstruct(3.0 * x), 3.0 * sae.reconstruct(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.encode(3.0 * x), 3.0 * sae.encode(x), atol=1e-5, rtol=1e-5)


def test_init_unit_decoder_and_tied_encoder():
    sae = TopKSAE(TopKConfig(d_in=D, d_sae=F, k=K), TrainConfig(seed=5))
    torch.testing.assert_close(sae.directions().norm(dim=1), torch.ones(F))
    torch.testing.assert_close(sae.W_enc, TrainConfig().enc_init_norm * sae.W_dec.T)  # the scaled transpose
    one = TopKSAE(TopKConfig(d_in=D, d_sae=F, k=K), TrainConfig(seed=5, enc_init_norm=1.0))
    assert torch.equal(one.W_enc, one.W_dec.T)  # Gao et al.'s transpose, bit for bit
    with pytest.raises(ConfigError, match="enc_init_norm"):
        TrainConfig(enc_init_norm=0)
    assert sae.directions().shape == (F, D)
    other = TopKSAE(TopKConfig(d_in=D, d_sae=F, k=K), TrainConfig(seed=6))
    assert not torch.equal(sae.W_dec, other.W_dec)
    assert torch.equal(sae.W_dec, TopKSAE(TopKConfig(d_in=D, d_sae=F, k=K), TrainConfig(seed=5)).W_dec)


def test_constrain_decoder_grad_removes_parallel_component():
    sae = _random_sae()
    g = torch.randn(F, D)
    sae.W_dec.grad = g.clone()
    sae.constrain_decoder_grad()
    w = sae.W_dec.detach()
    torch.testing.assert_close((sae.W_dec.grad * w).sum(1), torch.zeros(F), atol=1e-5, rtol=0)
    # only the parallel part was removed
    parallel = (g * w).sum(1, keepdim=True) * w
    torch.testing.assert_close(sae.W_dec.grad, g - parallel, atol=1e-6, rtol=1e-6)


def test_normalize_decoder():
    sae = _random_sae()
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(F, 1) * 5 + 0.1)
    before = sae.W_dec.detach().clone()
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(F))
    torch.testing.assert_close(sae.W_dec, before / before.norm(dim=1, keepdim=True))


def test_resolved_config_defaults():
    cfg = TopKConfig().resolved(d_in=10)
    assert cfg.d_in == 10 and cfg.d_sae == 16 * 10
    run = TrainConfig(n_tokens=1000, optimizer="adam", batch_size=1000).resolved(cfg.d_sae)
    assert run.lr == pytest.approx(2e-4 / (160 / 2**14) ** 0.5 * 16)  # one step: the boost's cap
    assert run.dead_tokens == 100
    with pytest.raises(ValueError, match="d_in"):
        TopKConfig(d_in=8).resolved(d_in=10)


# -- artifact ----------------------------------------------------------------------------------------


def test_artifact_files(trained):
    sae, out = trained
    assert {p.name for p in out.iterdir()} >= {"config.json", "weights.safetensors", "meta.json", "train_config.json"}
    assert not (out / "checkpoint").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "topk"
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"]) == (D, F, K)
    run = json.loads((out / "train_config.json").read_text())  # the run's settings, beside it
    assert (run["batch_size"], run["n_tokens"], run["lr"], run["seed"]) == (128, 3840, 3e-3, 0)
    # safetensors (no pickle): 8-byte little-endian header length, then a JSON header
    raw = (out / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["W_enc"]["shape"] == [D, F] and header["W_dec"]["shape"] == [F, D]
    assert header["b_enc"]["shape"] == [F] and header["b_dec"]["shape"] == [D]
    weights = load_file(str(out / "weights.safetensors"))
    torch.testing.assert_close(weights["W_dec"], sae.W_dec.detach())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["steps"] == 30 and meta["tokens_seen"] == 30 * 128


def test_norm_scale_estimated_and_saved(trained):
    sae, out = trained
    x = _data()
    want = (D / x.pow(2).sum(1).mean()).sqrt().item()
    assert sae.norm_scale.item() == pytest.approx(want, rel=0.1)  # estimated from a sample
    assert load_file(str(out / "weights.safetensors"))["norm_scale"].item() == sae.norm_scale.item()


def test_load_round_trip(trained):
    sae, out = trained
    loaded = dec.load(out)
    assert type(loaded) is TopKSAE and isinstance(loaded, SAE) and isinstance(loaded, Decomposer)
    assert loaded.cfg == sae.cfg
    assert not loaded.training
    x = _data(200, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        codes = sae.encode(x)
        assert torch.equal(loaded.decode(codes), sae.decode(codes))
        assert torch.equal(loaded.reconstruct(x), sae.reconstruct(x))
    assert torch.equal(loaded.directions(), sae.directions())
    assert loaded.meta["steps"] == 30


def test_trained_decoder_unit_norm_and_reconstructs(trained):
    sae, _ = trained
    torch.testing.assert_close(sae.directions().norm(dim=1), torch.ones(F), atol=1e-5, rtol=0)
    x = _data(512, seed=2)
    one_step = train(_cfg(n_tokens=128), _data(), progress=False)

    def fvu(model):
        with torch.no_grad():
            return ((model.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()

    # 30 steps on held-out data: better than predicting the mean, and than after a single step
    assert fvu(sae) < 0.9 * fvu(one_step) < 0.9


def test_save_overwrites_atomically(trained, tmp_path):
    sae, _ = trained
    path = tmp_path / "copy"
    sae.save(path, meta={"a": 1})
    other = _random_sae(seed=9)
    other.save(path)
    assert torch.equal(dec.load(path).W_dec, other.W_dec)
    assert json.loads((path / "meta.json").read_text()) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporary siblings left


def test_load_errors(trained, tmp_path):
    _, out = trained
    with pytest.raises(FileNotFoundError):
        dec.load(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"method": "no-such-method"}))
    with pytest.raises(ValueError, match="no-such-method"):
        dec.load(bad)
    cfg = json.loads((out / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "bogus_field": 1}))
    with pytest.raises(ValueError, match="bogus_field"):
        dec.load(bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="weights.safetensors"):
        dec.load(bad)
    (bad / "config.json").write_text("not json {")
    with pytest.raises(ValueError, match="corrupted"):
        dec.load(bad)


def test_registry():
    assert REGISTRY["topk"] is TopKSAE and TopKSAE.method == "topk"
    with pytest.raises(ValueError, match="twice"):
        register("topk")(type("Dup", (Decomposer,), {}))
    assert REGISTRY["topk"] is TopKSAE


def test_config_is_frozen():
    cfg = TopKConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.k = 3  # type: ignore[misc]


def test_save_keeps_other_files_and_is_readable(tmp_path):
    """Saving into a run folder keeps what else is there (wandb logs) and leaves shareable files."""
    import stat

    from interp._io import LOCK_FILE

    out = tmp_path / "run"
    (out / "wandb").mkdir(parents=True)
    (out / "wandb" / "log.txt").write_text("kept")
    torch.manual_seed(0)
    sae = train(
        dict(method="topk", d_sae=32, k=4, batch_size=128, n_tokens=256, wandb="disabled", device="cpu"),
        torch.randn(512, 16),
        progress=False,
    )
    sae.save(out)
    sae.save(out)  # overwriting an artifact works too
    assert (out / "wandb" / "log.txt").read_text() == "kept"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [LOCK_FILE]  # no temporaries
    for name in ("config.json", "weights.safetensors", "meta.json", "cfg.json", "sae_weights.safetensors"):
        assert (out / name).stat().st_mode & stat.S_IROTH, name
    assert torch.equal(load(out).W_dec, sae.W_dec)
