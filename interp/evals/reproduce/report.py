"""The markdown report every reproduction writes (published number, ours, settings, seeds, time)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from interp._io import write_atomic


@dataclass
class Report:
    paper: str  # the citation
    quick: bool
    settings: dict  # what we ran (model/data, sizes, hyperparameters)
    seeds: list[int]
    rows: list[dict] = field(default_factory=list)  # {quantity, published, ours, note}
    tables: list[str] = field(default_factory=list)  # extra markdown tables (e.g. per-method results)
    reading: str = ""  # one line: what the comparison says
    started: float = field(default_factory=time.perf_counter)

    def add(self, quantity: str, published: str, ours: str, note: str = "") -> None:
        self.rows.append({"quantity": quantity, "published": published, "ours": ours, "note": note})

    def markdown(self) -> str:
        seconds = time.perf_counter() - self.started
        lines = [
            f"# Reproduction: {self.paper}",
            "",
            f"Variant: {'quick (a smoke test: small sizes, numbers not comparable)' if self.quick else 'full'}; "
            f"seeds {self.seeds}; {seconds:.0f} s wall.",
            "",
            f"**Reading:** {self.reading}",
            "",
            "| quantity | published | ours | note |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r['quantity']} | {r['published']} | {r['ours']} | {r['note']} |" for r in self.rows]
        for t in self.tables:
            lines += ["", t]
        lines += ["", "Settings:", "", "```json", json.dumps(self.settings, indent=1, default=str), "```", ""]
        return "\n".join(lines)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.markdown()
        write_atomic(path, lambda f: f.write(text))
        return path
