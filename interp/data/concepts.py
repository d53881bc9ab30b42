"""A small concept prompt set for feature-finding and steering experiments.

22 concepts (topics, emotions, a language) with 15 hand-written English sentences each (French for
the ``french`` concept), and 40 neutral sentences that carry none of them. Written for this
project, so it is offline and licence-free. Used to pick concept features (which feature fires on
a concept's sentences and not on neutral ones), to compute difference-in-means directions, and as
neutral prompts for steering calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Concept:
    name: str
    description: str  # a short label, usable as the concept description for embedding judges
    sentences: tuple[str, ...]


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(resources.files("interp.data").joinpath("concepts.json").read_text("utf-8"))


def load_concepts(names: list[str] | None = None) -> list[Concept]:
    """All concepts, or the named ones in the order given (unknown names are an error)."""
    concepts = [Concept(c["name"], c["description"], tuple(c["sentences"])) for c in _data()["concepts"]]
    if names is None:
        return concepts
    by_name = {c.name: c for c in concepts}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown concept(s) {unknown}; known: {sorted(by_name)}")
    return [by_name[n] for n in names]


def neutral_sentences() -> list[str]:
    """Sentences about nothing in particular (steering calibration prompts, negative sets)."""
    return list(_data()["neutral"])
