"""The shared SAE trainer: recovery of a planted dictionary, configs, NaN handling, exact resume,
and training from an activation cache and from a live store of the tiny model."""

import dataclasses
import json

import pytest
import torch

import interp.decomposers as dec
import interp.decomposers.sae.trainer as trainer_mod
from interp.activations import ActivationCache, ActivationStore
from interp.decomposers.sae import TopKConfig, TopKSAE, train
from interp.decomposers.sae.train_config import TrainConfig, split_config
from interp.errors import ConfigError


def _planted(seed, n=20_000, d=32, n_atoms=64, k=3, max_coherence=0.4):
    """X = codes @ dictionary: unit atoms with pairwise |cos| <= max_coherence, k active, U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    atoms: list[torch.Tensor] = []
    while len(atoms) < n_atoms:
        a = torch.randn(d, generator=g)
        a /= a.norm()
        if all(abs(float(a @ b)) <= max_coherence for b in atoms):
            atoms.append(a)
    dictionary = torch.stack(atoms)
    idx = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :k]
    codes = torch.zeros(n, n_atoms).scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)
    return codes @ dictionary, dictionary


def test_topk_recovers_planted_dictionary():
    """300k tokens (585 steps): 8/8 data seeds gave 100% of atoms at cos > 0.99 (min 0.995) in
    ~5 s; at 200k one seed in 8 lost an atom. Random atoms in 32-D reach |cos| ~0.6, and pairs
    that coherent get merged into one latent even at 1M tokens, hence the coherence cap."""
    X, dictionary = _planted(seed=12345)
    cfg = dict(
        method="topk",
        d_sae=128,
        k=3,
        batch_size=512,
        n_tokens=300_000,
        lr=3e-3,
        wandb="disabled",
        seed=0,
        device="cpu",
        optimizer="adam",
    )  # lr: Adam's
    # the data seed differs from the SAE seed: the random init must not already hold the atoms
    init = TopKSAE(TopKConfig(d_in=32, d_sae=128, k=3), TrainConfig(seed=0))
    assert ((dictionary @ init.directions().T).max(1).values > 0.95).float().mean() < 0.1
    sae = train(cfg, X, progress=False)
    best = (dictionary @ sae.directions().T).max(1).values
    assert (best > 0.95).float().mean().item() >= 0.95, best.sort().values[:8]
    assert best.median() > 0.99
    with torch.no_grad():
        x = X[:2000]
        fvu = ((sae.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert fvu < 0.05


# -- configs -----------------------------------------------------------------------------------------


def _small_cfg(**kw):
    # pinned to CPU: bitwise-exact comparisons (CUDA index_add/scatter are not deterministic);
    # the CUDA path has its own gpu-marked tests below
    base = dict(
        method="topk",
        d_sae=32,
        k=4,
        batch_size=64,
        n_tokens=64 * 20,
        lr=3e-3,
        wandb="disabled",
        seed=0,
        norm_scale_tokens=256,
        warmup_steps=5,
        device="cpu",
    )
    return {**base, **kw}


def _data(n=1024, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) @ torch.randn(4, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)


def _state(sae):
    return {k: v.detach().clone() for k, v in sae.state_dict().items()}


def _assert_same_weights(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("how", ["mean", "median", "zero"])
def test_b_dec_starts_where_b_dec_init_says(how):
    """One batch holding all the data, one step at lr 1e-12: the trained b_dec is its start, which
    is the data's mean, geometric median (against scipy minimising the summed distance) or zero;
    four massive rows move the mean far more than the median."""
    from scipy.optimize import minimize

    x = _data(n=512).double()
    x[:4] *= 200
    sae = train(_small_cfg(b_dec_init=how, batch_size=512, n_tokens=512, lr=1e-12), x.float(), progress=False)
    got = (sae.b_dec / sae.norm_scale).double()
    if how == "median":
        pts = x.numpy()
        want = torch.from_numpy(minimize(lambda y: (((pts - y) ** 2).sum(1) ** 0.5).sum(), pts.mean(0), tol=1e-12).x)
        assert (want - x.mean(0)).norm() > 10 * (want - x[4:].mean(0)).norm()
    else:
        want = x.mean(0) if how == "mean" else torch.zeros(x.shape[1], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.norm()) + 1e-6)


def test_a_bad_b_dec_init_is_refused_before_training():
    with pytest.raises(ConfigError, match="b_dec_init must be one of mean, median, zero; got 'medain'"):
        train(_small_cfg(b_dec_init="medain"), _data(), progress=False)


def test_config_as_dict_or_dataclass():
    x = _data()
    a = train(_small_cfg(), x, progress=False)
    model, run = split_config(_small_cfg())
    b = train(TopKConfig(**model), x, progress=False, train_config=TrainConfig(**run))
    _assert_same_weights(a, b)
    assert a.cfg == b.cfg and a.cfg.d_in == 16 and a.cfg.d_sae == 32 and a.run == b.run
    c = train(_small_cfg(seed=1), x, progress=False)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        train(_small_cfg(learning_rate=1e-3), _data(), progress=False)


def test_unknown_method():
    with pytest.raises(ValueError, match="no-such-sae"):
        train(_small_cfg(method="no-such-sae"), _data(), progress=False)


def test_d_in_mismatch():
    with pytest.raises(ValueError, match="d_in"):
        train(_small_cfg(d_in=8), _data(), progress=False)


def test_budget_and_meta():
    sae = train(_small_cfg(n_tokens=64 * 7 + 10), _data(), progress=False)
    assert sae.meta["steps"] == 7 and sae.meta["tokens_seen"] == 7 * 64
    assert set(sae.meta["final"]) >= {"fvu", "loss"}
    assert 0.0 <= sae.meta["dead_frac"] <= 1.0


# -- NaN ---------------------------------------------------------------------------------------------


def test_nan_batch_raises_and_leaves_no_artifact(tmp_path):
    clean = _data(64 * 12)
    batches = list(clean.split(64))
    batches[5] = batches[5].clone()
    batches[5][3, 2] = float("nan")
    out = tmp_path / "sae"
    with pytest.raises(FloatingPointError, match="(?i)nan|inf"):
        train(_small_cfg(n_tokens=64 * 10, checkpoint_every=2), batches, out=out, progress=False)
    assert not (out / "weights.safetensors").exists() and not (out / "config.json").exists()
    # the last periodic checkpoint (before the bad step) is intact and resumes on clean data
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4
    sae = train(_small_cfg(n_tokens=64 * 10, checkpoint_every=2), list(clean.split(64)), out=out, progress=False)
    assert sae.meta["steps"] == 10 and torch.isfinite(sae.W_dec).all()
    assert (out / "weights.safetensors").exists() and not (out / "checkpoint").exists()


def test_nan_in_tensor_data_is_a_clear_error(tmp_path):
    x = _data()
    x[7, 0] = float("nan")
    out = tmp_path / "sae"
    with pytest.raises((FloatingPointError, ValueError), match="(?i)nan|inf|finite"):
        train(_small_cfg(), x, out=out, progress=False)
    assert not (out / "weights.safetensors").exists()
    with pytest.raises(FloatingPointError, match="(?i)nan|inf"):
        train(_small_cfg(normalize=False), x, progress=False)


# -- exact resume --------------------------------------------------------------------------------------


def _fail_on_step(monkeypatch, n, exc):
    real, calls = trainer_mod._train_step, []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "_train_step", wrapped)


@pytest.mark.parametrize("optimizer", ["adam", "signum", "muon"])
@pytest.mark.parametrize("exc, resumed_from", [(KeyboardInterrupt, 11), (RuntimeError("crash"), 10)])
def test_exact_resume(tmp_path, monkeypatch, exc, resumed_from, optimizer):
    """Ctrl-C saves a checkpoint at once (step 11); a crash loses steps after the last periodic
    checkpoint (step 10). Either way the resumed run equals an uninterrupted one exactly, with
    every optimiser (schedule-free Signum also keeps its average and step count)."""
    x = _data()
    cfg = _small_cfg(checkpoint_every=5, optimizer=optimizer)  # 20 steps
    ref = train(cfg, x, out=tmp_path / "ref", progress=False)

    out = tmp_path / "resumed"
    _fail_on_step(monkeypatch, 12, exc)
    with pytest.raises(exc if isinstance(exc, type) else type(exc)):
        train(cfg, x, out=out, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == resumed_from
    assert not (out / "weights.safetensors").exists()
    monkeypatch.undo()

    steps = []
    real = trainer_mod._train_step
    monkeypatch.setattr(trainer_mod, "_train_step", lambda *a, **k: steps.append(a[5]) or real(*a, **k))
    sae = train(cfg, x, out=out, progress=False)
    assert steps == list(range(resumed_from, 20))
    _assert_same_weights(sae, ref)
    _assert_same_weights(dec.load(out), dec.load(tmp_path / "ref"))
    assert not (out / "checkpoint").exists()
    assert sae.meta["steps"] == 20


def test_finished_output_is_loaded_not_retrained(tmp_path, monkeypatch):
    x = _data()
    out = tmp_path / "sae"
    first = train(_small_cfg(), x, out=out, progress=False)
    monkeypatch.setattr(trainer_mod, "_train_step", lambda *a, **k: pytest.fail("retrained"))
    again = train(_small_cfg(), x, out=out, progress=False)
    _assert_same_weights(first, again)


# -- real activations ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_cache(tiny_model, _tiny_corpus_file, tmp_path_factory):
    from interp.activations import cache_activations

    out = tmp_path_factory.mktemp("act") / "cache"
    return cache_activations(
        tiny_model,
        str(_tiny_corpus_file),
        ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"],
        n_tokens=2000,
        out_dir=out,
        seq_len=32,
        batch_size=16,
        progress=False,
    )


def _fvu(sae, x):
    with torch.no_grad():
        return ((sae.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def test_train_from_activation_cache(mlp_cache, tmp_path):
    cache = ActivationCache(mlp_cache)
    site = "blocks.1.mlp.hook_post"
    cfg = _small_cfg(d_sae=256, k=8, batch_size=128, n_tokens=128 * 40, site=site, norm_scale_tokens=1024)
    sae = train(cfg, cache, out=tmp_path / "sae", progress=False)
    assert sae.cfg.d_in == 128
    torch.testing.assert_close(sae.directions().norm(dim=1), torch.ones(256), atol=1e-5, rtol=0)
    assert sae.cfg.model == "tiny-llama" and sae.cfg.site == site
    x = cache.activations(site).reshape(-1, 128)[:1000].float()
    one_step = train({**cfg, "n_tokens": 128}, cache, progress=False)
    assert _fvu(sae, x) < 0.8 * _fvu(one_step, x)
    # the same cache given as a path trains the same SAE
    again = train(cfg, str(mlp_cache), progress=False)
    _assert_same_weights(sae, again)


@pytest.mark.parametrize("as_path", [False, True])
def test_artifact_records_model_from_cache(mlp_cache, tmp_path, as_path):
    site = "blocks.0.hook_resid_post"
    data = str(mlp_cache) if as_path else ActivationCache(mlp_cache)
    train(_small_cfg(n_tokens=64 * 2, site=site), data, out=tmp_path / "sae", progress=False)
    cfg = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert (cfg["model"], cfg["site"]) == ("tiny-llama", site)


def test_multi_site_cache_needs_site(mlp_cache):
    with pytest.raises(ValueError, match="site"):
        train(_small_cfg(), ActivationCache(mlp_cache), progress=False)


def test_train_from_activation_store(tiny_model, tiny_corpus):
    site = "blocks.0.hook_resid_post"
    store = ActivationStore(tiny_model, tiny_corpus, site, n_tokens=1024, seq_len=32, buffer_tokens=512)
    cfg = _small_cfg(d_sae=128, k=8, batch_size=128, n_tokens=128 * 12)  # model, site from the store
    sae = train(cfg, store, progress=False)
    assert sae.cfg.d_in == 64 and sae.meta["steps"] == 12  # the store is cycled (1024 tokens/epoch)
    torch.testing.assert_close(sae.directions().norm(dim=1), torch.ones(128), atol=1e-5, rtol=0)
    assert sae.cfg.site == site and sae.cfg.model == "tiny-llama"
    assert torch.isfinite(sae.W_enc).all() and sae.norm_scale.item() != 1.0


def test_decoder_grad_is_orthogonal_during_training(monkeypatch):
    """Inside the real step, after constrain_decoder_grad the gradient is orthogonal to each row."""
    seen = []
    real = TopKSAE.constrain_decoder_grad

    def spy(self):
        real(self)
        seen.append((self.W_dec.grad * self.W_dec).sum(1).abs().max().item())

    monkeypatch.setattr(TopKSAE, "constrain_decoder_grad", spy)
    train(_small_cfg(n_tokens=64 * 5), _data(), progress=False)
    assert len(seen) == 5 and max(seen) < 1e-6


def test_config_dataclass_roundtrip_in_artifact(tmp_path):
    sae = train(_small_cfg(), _data(), out=tmp_path / "a", progress=False)
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(TopKConfig)}
    assert fields <= set(cfg)
    assert dec.load(tmp_path / "a").cfg == sae.cfg


# -- CUDA --------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_train_on_cuda_matches_cpu_closely(tmp_path):
    x = _data()
    cpu = train(_small_cfg(), x, progress=False)
    gpu = train(_small_cfg(device="cuda"), x, out=tmp_path / "g", progress=False)
    assert gpu.W_dec.is_cuda
    torch.testing.assert_close(gpu.directions().norm(dim=1), torch.ones(32, device="cuda"), atol=1e-5, rtol=0)
    xc = x[:256].cuda()
    with torch.no_grad():
        torch.testing.assert_close(gpu.decode(gpu.encode(xc)), gpu.reconstruct(xc), atol=1e-5, rtol=1e-5)
    assert abs(_fvu(gpu, xc) - _fvu(cpu, x[:256])) < 0.05
    loaded = dec.load(tmp_path / "g", device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(xc), gpu.reconstruct(xc))


@pytest.mark.gpu
def test_resume_on_cuda(tmp_path, monkeypatch):
    """On CUDA atomics make runs differ in the last bits: the resumed run is close, not bitwise."""
    x = _data()
    cfg = _small_cfg(device="cuda", checkpoint_every=5)
    ref = train(cfg, x, out=tmp_path / "ref", progress=False)
    _fail_on_step(monkeypatch, 12, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, x, out=tmp_path / "r", progress=False)
    monkeypatch.undo()
    sae = train(cfg, x, out=tmp_path / "r", progress=False)
    for k, v in _state(ref).items():
        torch.testing.assert_close(_state(sae)[k], v, atol=1e-4, rtol=1e-4, msg=k)


def test_out_with_different_settings_is_refused(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1024, 16)
    cfg = dict(method="topk", d_sae=32, k=4, batch_size=128, n_tokens=512, wandb="disabled", device="cpu")
    train(cfg, x, out=tmp_path / "sae", progress=False)
    assert train(cfg, x, out=tmp_path / "sae", progress=False).cfg.k == 4  # same settings: reused
    with pytest.raises(ValueError, match="k: saved 4 vs requested 8"):
        train({**cfg, "k": 8}, x, out=tmp_path / "sae", progress=False)
