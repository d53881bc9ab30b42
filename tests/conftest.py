"""Shared fixtures: the seeded tiny Llama, a small local text corpus, and the gpu/slow markers.

``gpu`` tests are skipped without CUDA; ``slow`` tests (a built-in real model, or minutes of training) run
normally (deselect them with ``-m "not slow"``).

Torch runs single-threaded in tests (override with ``INTERP_TEST_THREADS``): the shapes here are
tiny, and on the shared 2-core CI box a 2-thread pool under load made SAE steps ~10x slower.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

_SUBJECTS = [
    "The old lighthouse keeper",
    "A young astronomer",
    "The village baker",
    "Our neighbour's cat",
    "The river",
    "A travelling musician",
    "The library committee",
    "An engineer from the north",
    "The museum guide",
    "A flock of starlings",
    "The night train",
    "My grandmother",
]
_VERBS = [
    "watched",
    "repaired",
    "sang about",
    "counted",
    "painted",
    "argued over",
    "followed",
    "carried",
    "forgot",
    "discovered",
    "measured",
    "described",
]
_OBJECTS = [
    "the winter storm above the harbour",
    "seventeen copper kettles",
    "a map of forgotten roads",
    "the quiet orchard behind the school",
    "an unfinished letter",
    "the price of fresh bread",
    "a comet over the valley",
    "three crooked chimneys",
    "the rules of an ancient game",
    "the smell of rain on warm stones",
    "a broken violin",
    "the last bus of the evening",
]
_TAILS = [
    "Nobody could explain why.",
    "It was, everyone agreed, a strange week.",
    "By Thursday the matter was settled, more or less.",
    "Questions remained; answers did not.",
    "The newspaper printed a short note about it (on page 12).",
    "Children laughed, dogs barked, and the clock struck nine!",
    '"Remarkable," said the mayor, "truly remarkable."',
    "Prices rose by 4% that spring.",
]


def corpus_paragraphs(n: int = 40) -> list[str]:
    """``n`` deterministic, varied English paragraphs of 2-5 sentences."""
    paras = []
    for i in range(n):
        sentences = []
        for j in range(2 + i % 4):
            a, b, c = (i * 7 + j * 3) % 12, (i * 5 + j * 11) % 12, (i * 3 + j * 5 + 1) % 12
            sentences.append(f"{_SUBJECTS[a]} {_VERBS[b]} {_OBJECTS[c]}.")
        sentences.append(_TAILS[i % len(_TAILS)])
        paras.append(" ".join(sentences))
    return paras


class KeywordJudge:
    """A steering judge whose embeddings are keyword counts plus a constant, normalised, so
    concept scores can be checked by hand."""

    def __init__(self, words: tuple[str, ...], constant: float = 0.5):
        self.words, self.constant = words, constant

    def embed(self, texts):
        import numpy as np

        e = np.array([[t.lower().count(w) for w in self.words] + [self.constant] for t in texts], dtype=float)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def reference(self, texts):
        import numpy as np

        r = self.embed(texts).mean(0)
        return r / np.linalg.norm(r)

    def similarity(self, texts, concept):
        return self.embed(texts) @ self.reference(concept)


@pytest.fixture
def keyword_judge():
    """``keyword_judge(words, constant=0.5)`` builds a ``KeywordJudge``."""
    return KeywordJudge


@pytest.fixture(scope="session")
def tiny_model():
    import interp.models

    return interp.models.load("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def _tiny_corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny_corpus.txt"
    path.write_text("\n\n".join(corpus_paragraphs()) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_corpus(_tiny_corpus_file):
    """Path (str) of a small blank-line separated .txt corpus: a valid text spec."""
    return str(_tiny_corpus_file)


def pytest_configure(config):
    import torch

    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it)")
    config.addinivalue_line("markers", "slow: loads a built-in real model or trains for minutes")

    torch.set_num_threads(int(os.environ.get("INTERP_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
