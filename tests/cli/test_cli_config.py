"""Config parsing in process: includes, dotted overrides, type coercion against the dataclass, and
that every command module follows the contract (a frozen ``Config`` whose fields all have docs)."""

import dataclasses
import importlib
from pathlib import Path
from dataclasses import dataclass, field

import pytest

from interp.cli.config import build, load_config
from interp.cli.help import field_docs
from interp.cli.main import COMMANDS
from interp.errors import ConfigError


@dataclass(frozen=True)
class Example:
    n: int
    """A count."""
    lr: float = 1e-3  # a rate
    sites: tuple[str, ...] = ()
    limit: int | None = None
    flag: bool = False
    opts: dict = field(default_factory=dict)


def test_numbers_lists_and_none_are_coerced_to_the_field_types():
    cfg = build(Example, {"n": "1e6", "lr": "3e-4", "sites": "blocks.0.hook_resid_post", "limit": None}, "t")
    assert cfg == Example(n=1_000_000, lr=3e-4, sites=("blocks.0.hook_resid_post",), limit=None)
    assert type(cfg.n) is int and build(Example, {"n": 7.0, "limit": "2_000"}, "t").limit == 2000


@pytest.mark.parametrize(
    "raw,phrase",
    [
        ({"n": 1.5}, "n: expected a whole number"),
        ({"n": True}, "n: expected a whole number"),
        ({"n": 1, "flag": "yes please"}, "flag: expected true or false"),
        ({"n": 1, "opts": [1]}, "opts: expected a mapping"),
        ({"n": 1, "sities": []}, "did you mean 'sites'"),
        ({}, "needs n=..."),
    ],
)
def test_bad_values_are_config_errors(raw, phrase):
    with pytest.raises(ConfigError, match=phrase):
        build(Example, raw, "t")


def test_include_then_overrides_with_dotted_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("n: 1\nopts: {a: 1, b: 2}\n")
    (tmp_path / "top.yaml").write_text("include: base.yaml\nlr: 0.5\n")
    raw = load_config(tmp_path / "top.yaml", ["opts.b=3", "n=1e3"])
    assert raw == {"n": "1e3", "opts": {"a": 1, "b": 3}, "lr": 0.5}
    assert build(Example, raw, "t").n == 1000


def test_field_docs_read_docstrings_and_trailing_comments():
    assert field_docs(Example) == {"n": "A count.", "lr": "a rate"}


@pytest.mark.parametrize("module", [m for m in COMMANDS.values()])
def test_every_command_has_a_frozen_config_with_a_doc_per_field(module):
    mod = importlib.import_module(module)
    members = [importlib.import_module(m) for m in getattr(mod, "COMMANDS", {}).values()] or [mod]
    for m in members:
        assert m.__doc__ and callable(m.run), m.__name__
        cfg = m.Config
        assert cfg.__dataclass_params__.frozen, m.__name__
        undocumented = {f.name for f in dataclasses.fields(cfg)} - set(field_docs(cfg))
        assert not undocumented, (m.__name__, undocumented)


def test_every_method_and_run_config_documents_every_field():
    """``interp train method=X --help`` and ``interp browse --help`` show a doc for every key."""
    from interp.browser.build import StoreConfig
    from interp.decomposers import REGISTRY
    from interp.decomposers.sae import TrainConfig

    methods = [cls for cls in REGISTRY.values() if cls.__module__.startswith("interp.")]  # not test doubles
    for cfg in {cls.config_cls for cls in methods} | {TrainConfig, StoreConfig}:
        docs = field_docs(cfg)
        undocumented = {f.name for f in dataclasses.fields(cfg) if not docs.get(f.name)}
        assert not undocumented, (cfg.__name__, undocumented)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = {
    "demo": ["demo"],
    "browser": ["browse"],
    "compare": ["compare"],
    "steer": ["steer"],
    "heads": ["reproduce", "heads"],
    "lib_lm": ["reproduce", "lib_lm"],
    "lib_modadd": ["reproduce", "lib_modadd"],
    "sweep_sae": ["reproduce", "sweep_sae"],
    "bench_synthetic": ["bench", "synthetic"],
    "bench_synthetic_lr": ["bench", "synthetic"],
    "bench_synthetic_lr_sparse": ["bench", "synthetic"],
    "bench_synthetic_grid": ["bench", "synthetic"],
    "quality": ["reproduce", "quality"],
    "quality_artifacts": ["reproduce", "quality_artifacts"],
}


def _command(path: Path) -> tuple[list[str], list[str]]:
    """The command a shipped config is for, and the keys it needs from the command line."""
    if path.parent.name == "models":
        return ["cache"], []
    if path.parent.name == "methods":
        return ["train"], ["out=x", "data=y"]
    return EXPERIMENTS[path.stem], []


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_builds_its_commands_config(path):
    from interp.cli.main import make_config, read_args

    words, extra = _command(path)
    module = importlib.import_module(COMMANDS[words[0]])
    if len(words) > 1:
        module = importlib.import_module(module.COMMANDS[words[1]])
    raw = read_args([str(path), *extra], "test")
    extras = list(module.extra_configs(raw)) if hasattr(module, "extra_configs") else []
    cfg = make_config(module.Config, extras, raw, " ".join(words))
    assert dataclasses.is_dataclass(cfg)


def test_ctrl_c_says_how_to_resume_and_exits_130(monkeypatch, capsys):
    import interp.cli.cache
    from interp.cli.main import main

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(interp.cli.cache, "run", interrupted)
    assert main(["cache", "model=m", "sites=[s]", "n_tokens=1", "out=o"]) == 130
    assert "interrupted; rerun the same command to resume" in capsys.readouterr().err
    monkeypatch.setenv("INTERP_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        main(["cache", "model=m", "sites=[s]", "n_tokens=1", "out=o"])
