"""One contract over the whole decomposer registry: every registered method, built or fitted on the
tiny model at one of its real hook sites, has ``directions()`` as unit rows whose width is that
site's, ``encode`` / ``decode`` shapes that agree with them, and a save/load round trip that gives
back the same object. A method registered without a tiny builder here fails, so a new method joins
the contract by adding one line to ``BUILDERS`` (SAE variants need none)."""

from __future__ import annotations

import pytest
import torch

from interp.activations import ActivationCache, cache_activations
from interp.data import tokenize
from interp.decomposers import REGISTRY, Decomposer, load
from interp.decomposers.lib.cut import residual_block_cut, site_acts
from interp.decomposers.sae import SAE

RESID, MLP = "blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"
METHODS = sorted(m for m, cls in REGISTRY.items() if cls.__module__.startswith("interp."))  # not test doubles


def _sae(method: str, model, cache: ActivationCache) -> Decomposer:
    cls = REGISTRY[method]
    d = model.site_width(RESID)
    sae = cls(cls.config_cls(d_in=d, d_sae=2 * d, model=model.spec, site=RESID))
    x = cache.activations(RESID).reshape(-1, d).float()
    with torch.no_grad():
        sae.norm_scale.fill_(float((d / x.pow(2).sum(1).mean()).sqrt()))
        sae.init_from_data(x * sae.norm_scale)
        sae.b_enc.add_(0.05 * torch.randn(sae.cfg.d_sae, generator=torch.Generator().manual_seed(1)))
    return sae


def _lib(model, cache: ActivationCache) -> Decomposer:
    modules, sites = residual_block_cut(model, 0)
    tokens = torch.as_tensor(tokenize(cache.manifest["text"], model.tokenizer, 8, 32).tokens)
    return REGISTRY["lib"].fit(
        modules,
        site_acts(model, tokens, sites[0]),
        node_layers=("pre", "mid", "post"),
        sites=tuple(sites),
        model=model.spec,
        direction_layer=1,
        n_sources_hidden=8,
    )


BUILDERS = {
    "snmf": lambda model, cache: REGISTRY["snmf"].fit(cache, rank=6, site=MLP, max_iter=30, progress=False),
    "itda": lambda model, cache: REGISTRY["itda"].fit(
        cache, k=4, cos_threshold=0.7, site=RESID, progress=False, device="cpu"
    ),
    "attn_svd": lambda model, cache: REGISTRY["attn_svd"].fit(model),
    "lib": _lib,
}


@pytest.fixture(scope="module")
def cache(tiny_model, _tiny_corpus_file, tmp_path_factory):
    path = cache_activations(
        tiny_model,
        str(_tiny_corpus_file),
        [RESID, MLP],
        1024,
        tmp_path_factory.mktemp("reg") / "c",
        seq_len=32,
        progress=False,
    )
    return ActivationCache(path)


@pytest.fixture(scope="module")
def built(tiny_model, cache):
    made: dict[str, Decomposer] = {}

    def get(method: str) -> Decomposer:
        if method not in made:
            if issubclass(REGISTRY[method], SAE):
                made[method] = _sae(method, tiny_model, cache)
            elif method in BUILDERS:
                made[method] = BUILDERS[method](tiny_model, cache)
            else:
                pytest.fail(f"method {method!r} is registered but has no tiny builder: add one to BUILDERS")
            made[method].eval()
        return made[method]

    return get


def _inputs(model, cache: ActivationCache, site: str) -> torch.Tensor:
    """Real activations at ``site`` (12 tokens)."""
    tokens = torch.as_tensor(tokenize(cache.manifest["text"], model.tokenizer, 6, 12).tokens)
    return site_acts(model, tokens, site).reshape(-1, model.site_width(site)).float()


@pytest.mark.parametrize("method", METHODS)
def test_directions_are_unit_rows_at_the_stated_site(method, built, tiny_model):
    dec = built(method)
    site = dec.cfg.site
    assert tiny_model.validate_site(site) == site
    dirs = dec.directions()
    assert dirs.ndim == 2 and dirs.shape[1] == tiny_model.site_width(site) and len(dirs) > 0
    torch.testing.assert_close(dirs.norm(dim=1), torch.ones(len(dirs), dtype=dirs.dtype), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_encode_decode_shapes_agree_with_directions(method, built, tiny_model, cache):
    dec = built(method)
    x = _inputs(tiny_model, cache, dec.cfg.site)
    n_features, width = dec.directions().shape
    with torch.no_grad():
        codes = dec.encode_dense(x)
        assert codes.shape == (len(x), n_features) and torch.isfinite(codes).all()
        try:
            x_hat = dec.decode(codes)
        except NotImplementedError:  # a method that does not reconstruct (attention SVD)
            return
        assert x_hat.shape == (len(x), width) and torch.isfinite(x_hat).all()
        torch.testing.assert_close(dec.reconstruct(x), x_hat, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(method, built, tiny_model, cache, tmp_path):
    dec = built(method)
    dec.save(tmp_path / "a", meta={"note": method})
    back = load(tmp_path / "a")
    assert type(back) is type(dec) and back.method == method and back.cfg == dec.cfg and not back.training
    assert back.meta == {"note": method}
    for key, value in dec.state_dict().items():
        assert torch.equal(back.state_dict()[key], value.cpu()), key
    x = _inputs(tiny_model, cache, dec.cfg.site)
    with torch.no_grad():
        assert torch.equal(back.encode_dense(x), dec.encode_dense(x))
    assert torch.equal(back.directions(), dec.directions())


def _fit_config_case(method: str, model, cache: ActivationCache):
    """(data, cfg) for ``fit_config`` and the same fit through the method's own ``fit``."""
    cls = REGISTRY[method]
    if method == "lib":
        modules, sites = residual_block_cut(model, 0)
        tokens = torch.as_tensor(tokenize(cache.manifest["text"], model.tokenizer, 8, 32).tokens)
        kw = dict(node_layers=("pre", "mid", "post"), sites=tuple(sites), model=model.spec, n_sources_hidden=8)
        data = (modules, site_acts(model, tokens, sites[0]))
        return data, cls.config_cls(**kw), lambda: cls.fit(*data, **kw)
    if cls.fit_data == "model":
        return model, {"circuit": "qk", "side": "read"}, lambda: cls.fit(model, circuit="qk", side="read")
    if issubclass(cls, SAE):
        from interp.decomposers.sae import train

        x = cache.activations(RESID).reshape(-1, model.site_width(RESID)).float()
        kw = dict(d_sae=32, k=4, batch_size=64, n_tokens=512, wandb="disabled", device="cpu", prefetch=0, seed=0)
        return x, dict(kw), lambda: train({**kw, "method": method}, x, progress=False)
    kw = (
        dict(rank=6, site=MLP, max_iter=30)
        if method == "snmf"
        else dict(k=4, cos_threshold=0.7, site=RESID, device="cpu")
    )
    return cache, kw, lambda: cls.fit(cache, progress=False, **kw)


@pytest.mark.parametrize("method", [m for m in METHODS if not issubclass(REGISTRY[m], SAE)] + ["topk"])
def test_one_fit_config_signature_fits_like_the_methods_own_fit(method, tiny_model, cache):
    """``cls.fit_config(data, cfg)`` (what ``interp train`` dispatches to) gives the same artifact
    as the method's own ``fit`` (or, for SAEs, ``train``) with the same settings."""
    data, cfg, own = _fit_config_case(method, tiny_model, cache)
    got, ref = REGISTRY[method].fit_config(data, cfg, progress=False), own()
    assert got.cfg == ref.cfg
    torch.testing.assert_close(got.directions(), ref.directions())


def test_fit_config_refuses_unknown_keys_and_shape_fields_set_by_the_model(tiny_model, cache):
    from interp.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown config field"):
        REGISTRY["snmf"].fit_config(cache, {"rank": 4, "rnak": 5}, progress=False)
    with pytest.raises(ConfigError, match="from the model"):
        REGISTRY["attn_svd"].fit_config(tiny_model, {"n_layers": 3})
