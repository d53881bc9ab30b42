"""Cases 3-8 of issue 18 (silent wrong results): each bad input is now an error or a warning."""

import json
import warnings

import numpy as np
import pytest

from interp.activations import ActivationCache
from interp.decomposers.sae import TopKConfig, TrainConfig, train
from interp.errors import ConfigError, DataError

from .conftest import SITE, low_rank, small_cfg


def _flip(path, offset, n=16):
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(n)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))


def test_3_flipped_bytes_in_a_shard_stop_training_naming_shard_and_command(make_cache, tiny_corpus, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    f = out / "acts" / f"{SITE}.npy"
    _flip(f, f.stat().st_size - 4096)  # inside the last shard
    with pytest.raises(DataError, match=r"rows \d+\.\.\d+ of blocks.0.hook_resid_post .*corrupt.*cache_activations\("):
        train(small_cfg(), out, progress=False)
    make_cache(tiny_corpus, out)  # the named command repairs it
    train(small_cfg(), out, progress=False)


def test_4_manifest_edited_to_another_width_is_refused(make_cache, tiny_corpus, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    m = json.loads((out / "manifest.json").read_text())
    m["sites_info"][SITE]["width"] //= 2
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="manifest"):
        ActivationCache(out)
    m["sites_info"][SITE]["width"] = "64"  # a wrong type, too
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="width"):
        ActivationCache(out)


def test_5_run_folder_refuses_other_data(make_cache, tiny_corpus, other_corpus, tmp_path):
    a = make_cache(tiny_corpus, tmp_path / "a")
    b = make_cache(other_corpus, tmp_path / "b")
    run = tmp_path / "run"
    train(small_cfg(), a, out=run, progress=False)
    with pytest.raises(DataError, match="other data"):  # finished run: was "already holds a trained SAE"
        train(small_cfg(), b, out=run, progress=False)
    assert ActivationCache(a).fingerprint != ActivationCache(b).fingerprint
    assert json.loads((run / "meta.json").read_text())["data"] == ActivationCache(a).fingerprint


def test_5_interrupted_run_does_not_resume_on_other_data(tmp_path):
    x, y, run = low_rank(seed=0), low_rank(seed=1), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _interrupt(run, x)
    with pytest.raises(DataError, match="other data"):
        train(small_cfg(), y, out=run, progress=False)
    train(small_cfg(), x, out=run, progress=False)  # the right data resumes


def _interrupt(run, x):
    """Train on ``x`` until a Ctrl-C at step 5 (the trainer checkpoints on the way out)."""
    import interp.decomposers.sae.trainer as trainer

    real = trainer._train_step

    def step(*args):
        terms, stop = real(*args)
        return terms, stop or args[5] == 4

    trainer._train_step = step
    try:
        train(small_cfg(), x, out=run, progress=False)
    finally:
        trainer._train_step = real


def test_6_diverging_loss_stops_the_run(tmp_path):
    from interp.errors import TrainingError

    with pytest.raises(TrainingError, match="diverged|NaN"):
        train(small_cfg(lr=1e6, grad_clip=None), low_rank() * 100, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()  # no artifact from a diverged run


def test_6_lr_zero_is_refused_and_a_run_that_did_not_learn_says_so(tmp_path):
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae = train(
            small_cfg(lr=1e-12, batch_size=1024, n_tokens=1024 * 60),
            low_rank(n=8192),
            out=tmp_path / "run",
            progress=False,
        )  # large batches: little noise in the loss
    assert "did not learn" in sae.meta["warning"]
    assert "did not learn" in json.loads((tmp_path / "run" / "meta.json").read_text())["warning"]
    assert any("did not learn" in str(w.message) for w in caught)
    learned = train(small_cfg(batch_size=1024, n_tokens=1024 * 60), low_rank(n=8192), progress=False)
    assert "warning" not in learned.meta


def test_7_budgets_against_the_data(make_cache, tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="less than one batch"):
        TrainConfig(n_tokens=100, batch_size=4096)
    cache = make_cache(tiny_corpus, tmp_path / "c")
    n = ActivationCache(cache).n_tokens
    with pytest.raises(ConfigError, match="passes over"):
        train(small_cfg(n_tokens=n * 500), cache, progress=False)
    with pytest.warns(UserWarning, match="passes over"):
        train(small_cfg(n_tokens=64 * ((3 * n) // 64)), cache, progress=False)


def test_8_seq_len_past_the_model_context_is_refused_before_writing(make_cache, tiny_corpus, tiny_model, tmp_path):
    assert tiny_model.n_ctx == 1024
    with pytest.raises(ConfigError, match="context"):
        make_cache(tiny_corpus, tmp_path / "c", seq_len=2048)
    assert not (tmp_path / "c").exists()
    from interp.activations import ActivationStore

    with pytest.raises(ConfigError, match="context"):
        ActivationStore(tiny_model, tiny_corpus, SITE, 4096, seq_len=4096)


def test_fingerprint_is_stable_and_cheap(make_cache, tiny_corpus, tmp_path):
    a = make_cache(tiny_corpus, tmp_path / "a")
    b = make_cache(tiny_corpus, tmp_path / "b")
    assert ActivationCache(a).fingerprint == ActivationCache(b).fingerprint  # same data, same id
    assert np.array_equal(ActivationCache(a).activations(SITE).numpy(), ActivationCache(b).activations(SITE).numpy())


def test_5_store_build_does_not_resume_on_changed_text(tiny_model, tmp_path):
    from interp.browser import build_store
    from interp.decomposers.sae import TopKSAE

    import interp.browser.write as build

    art = TopKSAE(TopKConfig(d_in=64, d_sae=16, k=2, model="tiny-llama", site=SITE)).save(tmp_path / "a")
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"Story {i} about a red kite and {i} hills." for i in range(60)))
    opts = dict(
        seq_len=32,
        k=2,
        n_samples=4,
        n_quantiles=2,
        per_quantile=2,
        window_left=4,
        window_right=2,
        n_bins=16,
        n_similar=2,
        vocab_k=2,
        batch_size=2,
        checkpoint_tokens=64,
    )
    real = build.write_tables

    def stop(*a, **k):
        raise KeyboardInterrupt

    build.write_tables = stop  # interrupted after the pass, before the tables: a checkpoint exists
    try:
        with pytest.raises(KeyboardInterrupt):
            build_store(art, str(corpus), 512, tmp_path / "s", model=tiny_model, progress=False, **opts)
    finally:
        build.write_tables = real
    corpus.write_text("\n\n".join(f"Another text, line {i}, on blue rivers." for i in range(60)))
    with pytest.raises(DataError, match="other text"):
        build_store(art, str(corpus), 512, tmp_path / "s", model=tiny_model, progress=False, **opts)


def test_3_flipped_bytes_in_artifact_weights_name_the_file_and_the_repair(tmp_path):
    """The weights' xxh3 digest, recorded in config.json at saving, is checked on load: a flipped
    byte inside a tensor (safetensors itself still reads it) is an error naming the file and the
    repair. An artifact saved before digests were recorded loads without the check."""
    import torch

    from interp.decomposers import load
    from interp.decomposers.sae import TopKSAE, load_saelens

    torch.manual_seed(0)
    sae = TopKSAE(TopKConfig(d_in=16, d_sae=32, k=4))
    art = sae.save(tmp_path / "art")
    weights = art / "weights.safetensors"
    assert torch.equal(load(art).W_dec, sae.W_dec)
    _flip(weights, weights.stat().st_size - 40, n=2)  # inside the last tensor's values
    with pytest.raises(DataError, match=r"weights\.safetensors is damaged.*train or fit it again"):
        load(art)
    assert torch.equal(load_saelens(art).W_dec, sae.W_dec)
    _flip(art / "sae_weights.safetensors", (art / "sae_weights.safetensors").stat().st_size - 40, n=2)
    with pytest.raises(DataError, match=r"sae_weights\.safetensors is damaged.*write it again"):
        load_saelens(art)  # the SAELens copy is checked against the same record
    config = json.loads((art / "config.json").read_text())
    assert set(config["xxh3"]) == {"weights.safetensors", "sae_weights.safetensors"}
    del config["xxh3"]  # as written before digests
    (art / "config.json").write_text(json.dumps(config))
    got = load(art).state_dict()  # no digest: read as it is, flipped values included
    assert not all(torch.equal(got[k], v) for k, v in sae.state_dict().items())
