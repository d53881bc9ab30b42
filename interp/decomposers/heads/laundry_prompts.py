"""The Laundry List task (Merullo et al., "Talking Heads", NeurIPS 2024, §5.1 and App. F).

Each prompt has two sentences: the first lists N objects to buy; the second names N-1 of them in
a shuffled order and in another sentence form, and ends where the missing object must come next:

    " Today, I need to buy a pencil, a cup, a pear and a leash. First, I will buy the cup, then the
    leash, then the pencil, and finally the"   ->  target " pear"

The object pool (22 words) and the sentence openers are the paper's; the connective wording is
only in the paper's figure image, so the template is ours and pluggable (``LaundryTemplate``).
Every prompt records where each object sits (character spans), so evaluation code can find the
object tokens for attention measurements. Nothing here touches a model (layering).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

POOL = (
    "pencil",
    "notebook",
    "pen",
    "cup",
    "plate",
    "jug",
    "mug",
    "puzzle",
    "textbook",
    "leash",
    "necklace",
    "bracelet",
    "bottle",
    "ball",
    "envelope",
    "lighter",
    "bowl",
    "apple",
    "pear",
    "banana",
    "orange",
    "steak",
)
OPENERS_1 = (" Today,", " Tonight,", " Tomorrow,", "")
OPENERS_2 = (" First,", " When I go,", " I think")


@dataclass(frozen=True)
class LaundryTemplate:
    """Wording around the two lists. ``{opener}`` is replaced by a random opener of each list."""

    first: str = "{opener} I need to buy "
    first_item: str = "a {obj}"  # articles: "a"/"an" chosen by the first letter
    first_sep: str = ", "
    first_last_sep: str = " and "
    first_end: str = "."
    second: str = "{opener} I will buy "
    second_first_item: str = "the {obj}"
    second_item: str = ", then the {obj}"
    second_end: str = ", and finally the"
    openers_1: tuple[str, ...] = OPENERS_1
    openers_2: tuple[str, ...] = OPENERS_2


@dataclass(frozen=True)
class LaundryPrompt:
    """One prompt. ``objects`` in first-list order; ``missing_index`` indexes ``objects``.

    ``spans_first``/``spans_second``: character spans (start, end) of each object word in the text,
    for the first list (one per object) and the second list (one per re-listed object, in
    ``second_order``). ``target`` is the missing object with its leading space (" pear").
    """

    text: str
    target: str
    objects: tuple[str, ...]
    missing_index: int
    second_order: tuple[str, ...]
    spans_first: tuple[tuple[int, int], ...]
    spans_second: tuple[tuple[int, int], ...]

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every listed object with its leading space, in first-list order."""
        return tuple(" " + o for o in self.objects)


def _article(obj: str, item: str) -> str:
    text = item.format(obj=obj)
    return text.replace("a " + obj, "an " + obj, 1) if obj[0] in "aeiou" and item.startswith("a ") else text


class _Builder:
    """Appends pieces of text and records the span of each object word."""

    def __init__(self):
        self.text, self.spans = "", []

    def add(self, piece: str, obj: str | None = None) -> None:
        if obj is not None:
            start = len(self.text) + piece.rindex(obj)
            self.spans.append((start, start + len(obj)))
        self.text += piece


def _render(objects, missing, order, op1, op2, t: LaundryTemplate) -> LaundryPrompt:
    b = _Builder()
    b.add(t.first.format(opener=op1).lstrip() if not op1 else t.first.format(opener=op1))
    n = len(objects)
    for i, obj in enumerate(objects):
        sep = "" if i == 0 else (t.first_last_sep if i == n - 1 else t.first_sep)
        b.add(sep + _article(obj, t.first_item), obj)
    b.add(t.first_end)
    first_spans, b.spans = b.spans, []
    b.add(t.second.format(opener=op2))
    for i, obj in enumerate(order):
        b.add((t.second_first_item if i == 0 else t.second_item).format(obj=obj), obj)
    b.add(t.second_end)
    return LaundryPrompt(
        text=b.text,
        target=" " + objects[missing],
        objects=tuple(objects),
        missing_index=missing,
        second_order=tuple(order),
        spans_first=tuple(first_spans),
        spans_second=tuple(b.spans),
    )


def make_prompts(
    n_objects: int,
    n_prompts: int,
    seed: int = 0,
    pool: tuple[str, ...] = POOL,
    template: LaundryTemplate = LaundryTemplate(),
) -> list[LaundryPrompt]:
    """``n_prompts`` Laundry List prompts with ``n_objects`` objects each (the paper: 3..20).

    Objects are drawn without replacement from ``pool``; the missing object's position in the
    first list is uniform over the N positions (so per-position accuracy is well sampled); the
    other N-1 are re-listed in a random order; openers are random. Deterministic in ``seed``.
    """
    if not 2 <= n_objects <= len(pool):
        raise ValueError(f"n_objects must be in 2..{len(pool)} (the pool size), got {n_objects}")
    if len(set(pool)) != len(pool):
        raise ValueError("the object pool has duplicates")
    if n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1, got {n_prompts}")
    rng = random.Random(f"laundry-{n_objects}-{seed}")
    prompts = []
    for _ in range(n_prompts):
        objects = rng.sample(list(pool), n_objects)
        missing = rng.randrange(n_objects)
        order = [o for i, o in enumerate(objects) if i != missing]
        rng.shuffle(order)
        prompts.append(
            _render(objects, missing, order, rng.choice(template.openers_1), rng.choice(template.openers_2), template)
        )
    return prompts
