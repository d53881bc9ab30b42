"""``interp steer`` end to end on the tiny random Llama with every method whose features steer
(SAE, SNMF, ITDA, head OV write vectors, LIB, difference-in-means); a bad method name fails before
any compute."""

import json
from pathlib import Path

import pytest

from interp.cli import steer as command
from interp.cli.main import make_config, read_args
from interp.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "experiments" / "steer.yaml"
METHODS = ("diffmeans", "sae", "snmf", "itda", "heads", "lib")


def main(args: list[str]) -> None:
    """What ``interp steer ARGS...`` runs, in-process (so the judge and the loader can be replaced)."""
    command.run(make_config(command.Config, [], read_args(args, "interp steer"), "interp steer"))


@pytest.mark.slow
def test_steer_command_compares_every_method(tmp_path, keyword_judge, monkeypatch):
    monkeypatch.setattr(command, "embedding_judge", lambda: keyword_judge(tuple("aeiou"), 1.0))
    out = tmp_path / "out"
    main(
        [
            str(CONFIG),
            "model=tiny-llama",
            "layer=1",
            "n_concepts=1",
            f"methods=[{','.join(METHODS)}]",
            "kl_targets=[0.002]",
            "steer_prompts=[I think that]",
            "max_new_tokens=4",
            "n_boot=20",
            "sae={n_tokens: 2048, train_tokens: 4096, seq_len: 64, batch_size: 256}",
            "snmf={rank: 6, max_iter: 20}",
            "lib={n_seqs: 2, seq_len: 8}",
            f"out={out}",
            "threads=1",
        ]
    )
    result = json.loads((out / "results.json").read_text())
    recs = result["records"]
    assert [r["method"] for r in recs] == list(METHODS)
    sites = {r["method"]: r["site"] for r in recs}
    assert sites == {
        "diffmeans": "blocks.1.hook_mlp_out",
        "sae": "blocks.1.hook_mlp_out",
        "snmf": "blocks.1.mlp.hook_post",
        "itda": "blocks.1.hook_mlp_out",
        "heads": "blocks.1.hook_resid_post",
        "lib": "blocks.1.hook_resid_mid",
    }
    assert all(r["feature"] is not None for r in recs if r["method"] != "diffmeans")
    assert any(r["hit"] for r in recs)
    table = (out / "table.md").read_text()
    assert all(f"| {m} | + | 0.002 |" in table for m in METHODS) and "success" in table
    assert (out / "itda").is_dir() and (out / "lib").is_dir()


def test_unknown_method_fails_before_any_compute(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "load", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(ConfigError, match="nosuch"):
        main([str(CONFIG), "methods=[sae,nosuch]", f"out={tmp_path}"])
