"""The six paper reproductions, quick variants: each writes a report with the published numbers."""

import time

import pytest

from interp.errors import ConfigError
from interp.evals.reproduce import PAPERS, run


@pytest.mark.slow  # all six together: meant to fit in 2 minutes on an idle CI machine
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
