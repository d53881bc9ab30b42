"""``interp reproduce sweep_sae`` end to end on the tiny random Llama: every method's sweep trained, evaluated,
tabled and plotted; a re-run reads the finished runs back; a bad config fails before any compute."""

import json
from pathlib import Path

from interp.cli.main import main


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"""
model: tiny-llama
site: blocks.1.hook_resid_post
text: builtin:stdlib-docs?split=train
cache_tokens: 2048
seq_len: 64
out: {tmp_path / "out"}
sae: {{expansion_factor: 2, n_tokens: 1024, batch_size: 256, lr: 0.001, warmup_steps: 1, wandb: disabled}}
methods:
  topk: {{k: [4, 8]}}
  gba: {{htf: [0.1], update_every: 2}}
eval: {{text_spec: "builtin:stdlib-docs?split=test", n_tokens: 256, seq_len: 64, batch_size: 4}}
elbo_tokens: 256
""")
    return cfg


def test_sweep_writes_table_plot_and_resumes(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["reproduce", "sweep_sae", str(cfg)]) == 0
    out = tmp_path / "out"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["method"], r["setting"], r["status"]) for r in rows] == [
        ("topk", "k=4", "ok"),
        ("topk", "k=8", "ok"),
        ("gba", "htf=0.1", "ok"),
    ]
    assert rows[0]["l0"] <= 4 + 1e-6 and rows[1]["l0"] <= 8 + 1e-6
    assert all(0 <= r["fvu"] < 2 and r["elbo_median"] >= 0 for r in rows)
    assert (out / "frontiers.png").stat().st_size > 0 and "| topk | k=4 |" in (out / "results.md").read_text()
    capsys.readouterr()
    assert main(["reproduce", "sweep_sae", str(cfg)]) == 0  # everything is read back
    assert "already holds a trained SAE" in capsys.readouterr().out


def test_unknown_method_fails_before_any_compute(tmp_path, capsys):
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("gba:", "nosuch:"))
    assert main(["reproduce", "sweep_sae", str(cfg)]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
