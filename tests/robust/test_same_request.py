"""One "same request?" check (``interp._io.check_same_request``) behind the three folders that refuse
to be reused with other settings: the activation cache, the SAE run folder, the feature store
(tests/browser/test_browser_build.py covers the store)."""

import pytest

from interp._io import check_same_request
from interp.decomposers.sae import train
from interp.errors import ConfigError

from .conftest import low_rank, small_cfg

DO = "Use another output directory, or delete this one to start over."


def test_names_each_differing_key_and_what_to_do(tmp_path):
    saved = {"sites": ["a", "b"], "seq_len": 32, "dtype": "float32", "extra": 1}
    check_same_request(saved, {"sites": ("a", "b"), "seq_len": 32}, tmp_path, "cache")  # JSON lists = tuples
    with pytest.raises(ConfigError) as e:
        check_same_request(saved, {"sites": ["a"], "seq_len": 32, "dtype": "float16", "new": None}, tmp_path, "cache")
    msg = str(e.value)
    assert f"{tmp_path} already holds a different cache" in msg and msg.endswith(DO)
    assert (
        "sites: saved ['a', 'b'] vs requested ['a']" in msg and "dtype: saved 'float32' vs requested 'float16'" in msg
    )
    assert "seq_len" not in msg and "new: saved None" not in msg  # a key saved as missing and asked as None agrees


def test_cache_and_sae_run_refuse_in_the_same_words(make_cache, tiny_corpus, tmp_path):
    out = make_cache(tiny_corpus, tmp_path / "c")
    with pytest.raises(
        ConfigError,
        match=r"already holds a different activation cache.*seq_len: saved 32 vs "
        r"requested 16.*" + DO,
    ):
        make_cache(tiny_corpus, out, seq_len=16)
    train(small_cfg(), low_rank(), out=tmp_path / "sae", progress=False)
    with pytest.raises(ConfigError, match=r"already holds a different SAE run.*k: saved 4 vs requested 8.*" + DO):
        train(small_cfg(k=8), low_rank(), out=tmp_path / "sae", progress=False)
