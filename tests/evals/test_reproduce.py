"""The six paper reproductions, quick variants: each writes a report with the published numbers."""

import time

import pytest

from interp.errors import ConfigError
from interp.evals.reproduce import PAPERS, run


# Runs in CI. Measured on the shared 2-core dev machine: 40 s for all six at load ~20 before ITDA's
# cross-tokenizer part (topafa 16 s, lib 11 s, heads 8 s, snmf 2 s, gba 2 s, itda 1 s; itda is
# now 17 s), 167 s at load ~33.
def test_every_quick_reproduction_writes_its_report(tmp_path):
    start = time.perf_counter()
    for paper in PAPERS:
        path = run(paper, True, tmp_path)
        text = path.read_text()
        assert path.name == f"{paper}.md" and "| quantity | published | ours | note |" in text
        assert "**Reading:**" in text and "Variant: quick" in text
    print(f"six quick reproductions in {time.perf_counter() - start:.0f} s")


def test_unknown_paper_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown paper"):
        run("nope", True, tmp_path)
    assert not list(tmp_path.iterdir())


def test_gba_sensitivity_compares_each_variant_with_topk_at_its_own_l0():
    """The table's "TopK at GBA's L0" row is TopK trained at k = GBA's L0 (rounded) at that rate."""
    import re

    from interp.evals.reproduce.sae import _sensitivity

    table, gaps = _sensitivity(True)
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in table.splitlines() if "%" in line}
    for name in ("BA", "GBA"):
        l0 = re.search(r"L0 (\d+)", cells[name]).group(1)
        assert re.search(r"k (\d+)", cells[f"TopK at {name}'s L0"]).group(1) == l0
    assert set(gaps) == {"k = the data's mean L0", "k = the smallest s", "k = their own L0"}
    assert "TopK k=2 (the data's s)" in table  # one s: the two data readings are one row


def test_gba_sensitivity_on_a_mixture_compares_with_topk_at_its_mean_and_smallest_s():
    """On a mixture of sparsities the mean L0 (0.75 * 1 + 0.25 * 5 = 2) and the smallest s (1) are
    two different TopK rows, and each is a reading with its own list of gaps."""
    from interp.evals.reproduce.sae import _sensitivity_on

    data = {"n_features": 16, "d": 8, "sparsity": ((0.75, 1), (0.25, 5)), "n_samples": 500}
    train = {
        "d_sae": 32,
        "batch_size": 100,
        "n_tokens": 1000,
        "optimizer": "adam",
        "wandb": "disabled",
        "device": "cpu",
    }
    table, gaps = _sensitivity_on("M", data, train, (1e-2,))
    assert "TopK k=2 (the data's mean L0)" in table and "TopK k=1 (the smallest s)" in table
    assert set(gaps) == {"k = the data's mean L0", "k = the smallest s", "k = their own L0"}
