"""ITDA: Inference-Time Decomposition of Activations (Leask, Nanda, Al Moubayed, ICML 2025).

An ITDA dictionary is a set of *atoms*: unit-normalised activations taken from a token stream,
each labelled with where it came from. Construction is one greedy pass: encode each token with
``k`` steps of matching pursuit (``interp.decomposers.itda.pursuit``) against the current atoms and
add the token as a new atom when it is poorly reconstructed, i.e. when
``cos(x, x_hat) < cos_threshold``. The authors' threshold ``tau`` on the per-dimension error of
the normalised vectors, ``mean_d (x/|x| - x_hat/|x_hat|)^2 = (2 - 2 cos) / d``, is accepted as
``loss_threshold`` and converted with ``cos_threshold = 1 - tau * d / 2``. Its scale depends on
d: ``tau >= 2/d`` gives a threshold <= 0 and a dictionary that never grows (the release examples
fall into this), so that is refused with an error.

Deliberate choices (options in ``ITDAConfig``):
- **Within-batch de-duplication** (``dedup``): of the poorly reconstructed tokens of a batch,
  only "leaders" are added: walking them in priority order, a token is skipped when an earlier
  one has |cos| >= ``cos_threshold`` with it (signed codes make x and -x interchangeable). The
  rest are re-encoded against the grown dictionary and the step repeats until every token of the
  batch is an atom or has ``cos(x, x_hat) >= cos_threshold`` (one similar atom guarantees this
  for MP and OMP). The release code adds all of them at once (``dedup=False``).
- **Initialisation without batch-order artefacts** (``priority``): the dictionary starts empty
  and the first batch is handled like every other; with ``"coverage"`` (default) leaders are
  taken in decreasing number of batch tokens they cover (|cos| >= threshold), ties by label, a
  near-duplicate generalisation of the release code's "most repeated rows first" that does not
  depend on the order of rows within a batch. ``"stream"`` takes them in stream order.
- **Maximum size** (``max_atoms``): construction stops once full; the last batch contributes its
  highest-priority leaders.
- **BOS/pad exclusion** (``exclude_special``): separator and pad tokens never become atoms.
- **Centring** (``center``, off as in the paper): subtract the mean of the first batch before
  normalising (and in ``encode``; ``decode`` adds it back). Needed where one direction dominates
  every activation: in Gemma 3 270M's residual stream tokens have cosine 0.95-0.98 with the mean
  direction, so without it a single atom reconstructs every token above any usual threshold.

Atom labels. Each atom keeps ``(doc_id, token_position, char_start, char_end)``: the document,
the token's index among that document's tokens, and its character span in the document text
(``-1`` where unknown). Jaccard similarity of two dictionaries (``interp.evals.similarity``)
compares label sets, by ``(doc_id, token_position)`` (same tokenizer) or, across tokenizers, by
``(doc_id, char_end)`` (our extension): two tokens match when they are in the same document and
end at the same character (start characters differ between tokenizers, e.g. " the" vs "the").
This is a proxy, not the paper's same-token-stream setting: tokenizers share only some end
offsets (``similarity.boundary_overlap``; a ceiling below 1 on the Jaccard, reported by
``similarity.span_jaccard``), and packing starts rows at different characters for different
tokenizers, so two matched tokens may have been read with different preceding context.

Encoding returns ``SparseCodes(indices [B, K], values [B, K])``; ``decode`` accepts it (or a
dense ``[B, F]`` code). ``directions()`` are the atoms.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from interp.activations import ActivationCache
from interp.decomposers.base import Decomposer, register
from interp.decomposers.itda.pursuit import gram_matrix, grow_gram, pursue, sparse_decode


@dataclass(frozen=True)
class ITDAConfig:
    method: str = "itda"  # the registry name
    d_in: int | None = None  # None: taken from the data
    k: int = 40  # pursuit steps (L0 <= k)
    cos_threshold: float = 0.85  # add a token when cos(x, x_hat) < this
    loss_threshold: float | None = None  # the authors' tau; overrides cos_threshold when set
    max_atoms: int | None = None  # stop adding atoms at this size (None: no cap)
    encoder: str = "mp"  # "mp" (the paper) or "omp"
    dedup: bool = True  # add only "leaders" of a batch's poorly reconstructed tokens (False: all, as the release code)
    priority: str = "coverage"  # "coverage" or "stream"
    batch_size: int = 4096  # tokens per construction batch
    max_rounds: int = 64  # de-duplication rounds per batch before the rest is added at once
    exclude_special: bool = True  # leave BOS/separator/pad tokens out
    center: bool = False  # subtract the first batch's mean before building and encoding (off, as in the paper)
    dtype: str = "float32"  # storage and compute dtype of the atoms
    n_atoms: int = 0  # set by fit; sizes the buffers when loading
    model: str | None = None  # provenance: the model spec the activations came from
    site: str | None = None  # hook site the atoms live at
    device: str | None = None  # cpu | cuda (None: cuda when available)

    def __post_init__(self):
        if self.encoder not in ("mp", "omp") or self.priority not in ("coverage", "stream") or self.k < 1:
            raise ValueError(
                f"ITDA needs encoder 'mp'|'omp' (got {self.encoder!r}), priority "
                f"'coverage'|'stream' (got {self.priority!r}) and k >= 1 (got {self.k})"
            )

    def threshold(self, d_in: int) -> float:
        """The effective cosine threshold (from ``loss_threshold`` when that is set)."""
        c = self.cos_threshold if self.loss_threshold is None else 1 - self.loss_threshold * d_in / 2
        if not 0 < c <= 1:
            raise ValueError(
                f"the add-atom threshold is cos < {c:.4g}, outside (0, 1]: the dictionary would "
                + ("never grow" if c <= 0 else "hold every token")
                + (
                    f". loss_threshold={self.loss_threshold} is a per-dimension error; with d={d_in} "
                    f"it must be below 2/d = {2 / d_in:.3g} (GPT-2 used 4e-4 at d=768, i.e. cos < 0.846)"
                    if self.loss_threshold is not None
                    else "; choose cos_threshold in (0, 1]"
                )
            )
        return c


class SparseCodes(NamedTuple):
    indices: Int[torch.Tensor, "B K"]
    values: Float[torch.Tensor, "B K"]


def cache_labels(cache: ActivationCache) -> Int[np.ndarray, "T 4"]:
    """``(doc_id, token_position, char_start, char_end)`` for every token of a cache, flattened
    in stream order; the position counts a document's non-special tokens (-1 for special ones)."""
    doc = np.asarray(cache.token_array("doc_ids")).reshape(-1)
    special = cache.special_mask().reshape(-1)
    pos = np.full(len(doc), -1, dtype=np.int64)
    d = doc[~special]
    i = np.arange(len(d))
    run_start = np.maximum.accumulate(np.where(np.r_[True, d[1:] != d[:-1]], i, 0))
    pos[~special] = i - run_start
    cs = np.asarray(cache.token_array("char_start")).reshape(-1)
    ce = np.asarray(cache.token_array("char_end")).reshape(-1)
    return np.stack([doc, pos, cs, ce], axis=1).astype(np.int64)


def _cache_batches(
    cache: ActivationCache, site: str, batch_size: int, exclude_special: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    labels = torch.from_numpy(cache_labels(cache))
    flat = cache.activations(site).reshape(-1, cache.width(site))
    keep = np.flatnonzero(~cache.special_mask().reshape(-1) if exclude_special else np.ones(len(labels), dtype=bool))
    for a in range(0, len(keep), batch_size):
        idx = keep[a : a + batch_size]
        yield flat[torch.from_numpy(idx)].float(), labels[idx]


def _pairs(data: Iterable) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(
                "ITDA.fit takes an ActivationCache (plus site) or an iterable of "
                "(acts [B, D], labels [B, 2 or 4]) pairs"
            )
        acts, labels = torch.as_tensor(item[0]), torch.as_tensor(item[1]).long()
        if acts.ndim != 2 or labels.ndim != 2 or len(acts) != len(labels) or labels.shape[1] not in (2, 4):
            raise ValueError(
                f"got acts {tuple(acts.shape)} and labels {tuple(labels.shape)}; want [B, D] "
                f"and [B, 2] (doc id, token position) or [B, 4] (+ char start, char end)"
            )
        if labels.shape[1] == 2:
            labels = torch.cat([labels, labels.new_full((len(labels), 2), -1)], dim=1)
        yield acts, labels


def recon_cos(
    x: Float[torch.Tensor, "B D"],
    atoms: Float[torch.Tensor, "N D"],
    k: int,
    encoder: str,
    gram: torch.Tensor | None = None,
) -> Float[torch.Tensor, "B"]:
    """cos(x, x_hat) of the pursuit reconstruction (0 where x_hat is 0)."""
    x_hat = sparse_decode(*pursue(x, atoms, k, encoder, gram), atoms)
    return (x * x_hat).sum(1) / (x.norm(dim=1) * x_hat.norm(dim=1)).clamp_min(1e-30)


def _priority_order(v: torch.Tensor, labels: torch.Tensor, c: float, priority: str) -> torch.Tensor:
    order = torch.arange(len(v), device=v.device)
    if priority == "stream":
        return order
    count = torch.cat([((blk @ v.T).abs() >= c).sum(1) for blk in v.split(2048)])
    for key in (labels[:, 1], labels[:, 0], -count):  # lexicographic: count desc, then label
        order = order[key[order].argsort(stable=True)]
    return order


def leaders(
    v: Float[torch.Tensor, "M D"], labels: Int[torch.Tensor, "M 4"], c: float, priority: str = "coverage"
) -> Int[torch.Tensor, "L"]:
    """Rows of unit vectors ``v`` with no higher-priority row at |cos| >= c, in priority order."""
    order = _priority_order(v, labels, c, priority)
    w = v[order]
    dup = torch.cat(
        [
            ((blk @ w[: a + len(blk)].T).abs() >= c).tril(diagonal=a - 1).any(1)
            for a, blk in zip(range(0, len(w), 2048), w.split(2048))
        ]
    )
    return order[~dup]


@register("itda")
class ITDA(Decomposer):
    """A dictionary of labelled, unit-norm activations with a pursuit encoder."""

    config_cls = ITDAConfig

    def __init__(self, cfg: ITDAConfig):
        super().__init__(cfg)
        dtype = getattr(torch, cfg.dtype)
        self.register_buffer("atoms", torch.zeros(cfg.n_atoms, cfg.d_in or 0, dtype=dtype))
        self.register_buffer("labels", torch.full((cfg.n_atoms, 4), -1, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(cfg.d_in or 0, dtype=dtype))  # zero unless center
        self.meta: dict[str, Any] = {}

    @property
    def atom_labels(self) -> Int[torch.Tensor, "F 2"]:
        """(doc id, token position) of each atom."""
        return self.labels[:, :2]

    @property
    def atom_spans(self) -> Int[torch.Tensor, "F 3"]:
        """(doc id, char start, char end) of each atom (-1 where unknown)."""
        return self.labels[:, [0, 2, 3]]

    def directions(self) -> Float[torch.Tensor, "F D"]:
        return self.atoms

    def encode(self, x: Float[torch.Tensor, "B D"]) -> SparseCodes:
        gram = self._gram() if self.cfg.encoder == "mp" else None
        x = x.to(self.atoms.dtype) - self.mean
        return SparseCodes(*pursue(x, self.atoms, self.cfg.k, self.cfg.encoder, gram))

    def _gram(self) -> torch.Tensor | None:
        """atoms @ atoms.T, cached while the atoms tensor is unchanged (same storage, version)."""
        a = self.atoms
        key = (a.data_ptr(), a.device, a.dtype, tuple(a.shape), a._version)
        if getattr(self, "_gram_key", None) != key:
            self._gram_cache, self._gram_key = gram_matrix(a), key
        return self._gram_cache

    def encode_dense(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        """Dense ``[B, F]`` codes, for small batches (interfaces that want a code matrix)."""
        idx, val = self.encode(x)
        return val.new_zeros(len(x), len(self.atoms)).scatter_add_(1, idx, val)

    def decode(self, codes: SparseCodes | tuple | Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        if isinstance(codes, tuple):
            return sparse_decode(codes[0], codes[1], self.atoms) + self.mean
        return codes.to(self.atoms.dtype) @ self.atoms + self.mean

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        data: Any,
        k: int = 40,
        cos_threshold: float = 0.85,
        max_atoms: int | None = None,
        *,
        site: str | None = None,
        progress: bool = True,
        **fields: Any,
    ) -> "ITDA":
        """Build a dictionary in one pass over ``data``: an ``ActivationCache`` (or its path) plus
        ``site``, or an iterable of ``(acts [B, D], labels [B, 2|4])`` pairs in stream order.
        ``fields`` are further ``ITDAConfig`` fields (encoder, dedup, priority, loss_threshold, ...)."""
        cfg = ITDAConfig(k=k, cos_threshold=cos_threshold, max_atoms=max_atoms, site=site, **fields)
        if isinstance(data, (str, Path)):
            data = ActivationCache(data)
        if isinstance(data, ActivationCache):
            if cfg.site is None and len(data.sites) != 1:
                raise ValueError(f"the cache holds several sites {data.sites}: say which one (site=...)")
            cfg = dataclasses.replace(cfg, site=cfg.site or data.sites[0], model=cfg.model or data.manifest["model"])
            batches = _cache_batches(data, cfg.site, cfg.batch_size, cfg.exclude_special)
        else:
            batches = _pairs(data)
        return _Builder(cfg).run(batches, progress)


class _Builder:
    """The greedy construction pass (state: the growing atoms and labels)."""

    def __init__(self, cfg: ITDAConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, cfg.dtype)
        self.atoms: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.n = 0
        self.mean: torch.Tensor | None = None  # with center: the first batch's mean
        self.gram: torch.Tensor | None = None  # of the current atoms, grown with them (MP only)
        self.stats = {"tokens_seen": 0, "rounds": 0, "forced": 0}

    def run(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], progress: bool) -> ITDA:
        start, c, cfg = time.perf_counter(), None, self.cfg
        bar = tqdm(batches, disable=not progress, desc="building ITDA", unit="batch")
        for x, lab in bar:
            if c is None:
                c = cfg.threshold(cfg.d_in or x.shape[1])
                if cfg.d_in not in (None, x.shape[1]):
                    raise ValueError(f"config d_in={cfg.d_in} but the data has width {x.shape[1]}")
            x = x.to(self.device, self.dtype)
            if not torch.isfinite(x).all():
                raise ValueError(
                    "the activations contain inf or NaN (a float16 cache can overflow on "
                    "large residual norms, e.g. Gemma's): cache in float32 or bfloat16"
                )
            if cfg.center and self.mean is None:
                self.mean = x.mean(0)
            x = x - self.mean if cfg.center else x
            norm = x.norm(dim=1, keepdim=True)
            ok = norm[:, 0] > 0
            self._batch(x[ok] / norm[ok], lab[ok.cpu()].to(self.device), c)
            self.stats["tokens_seen"] += len(x)
            bar.set_postfix(atoms=self.n)
            if cfg.max_atoms is not None and self.n >= cfg.max_atoms:
                break
        if c is None:
            raise ValueError("ITDA.fit got no data")
        return self._finish(x.shape[1], time.perf_counter() - start)

    def _current(self) -> torch.Tensor:
        if len(self.atoms) > 1:
            self.atoms, self.labels = [torch.cat(self.atoms)], [torch.cat(self.labels)]
        return self.atoms[0] if self.atoms else torch.zeros(0, 0, device=self.device, dtype=self.dtype)

    def _batch(self, v: torch.Tensor, lab: torch.Tensor, c: float) -> None:
        """Add atoms until every row of ``v`` is an atom or reconstructed at cos >= c."""
        cfg, cand = self.cfg, torch.arange(len(v), device=v.device)
        for round_ in range(cfg.max_rounds + 1):
            if self.n:
                cand = cand[recon_cos(v[cand], self._current(), cfg.k, cfg.encoder, self.gram) < c]
            if not len(cand) or self._full():
                return
            self.stats["rounds"] += 1
            if not cfg.dedup or round_ == cfg.max_rounds:
                chosen = cand
                self.stats["forced"] += len(cand) if cfg.dedup else 0
            else:
                chosen = cand[leaders(v[cand], lab[cand], c, cfg.priority)]
            if cfg.max_atoms is not None:
                chosen = chosen[: cfg.max_atoms - self.n]
            if cfg.encoder == "mp":
                self.gram = grow_gram(self.gram, self._current(), v[chosen])
            self.atoms.append(v[chosen])
            self.labels.append(lab[chosen])
            self.n += len(chosen)
            if not cfg.dedup:
                return
            keep = torch.ones(len(v), dtype=torch.bool, device=v.device)
            keep[chosen] = False
            cand = cand[keep[cand]]

    def _full(self) -> bool:
        return self.cfg.max_atoms is not None and self.n >= self.cfg.max_atoms

    def _finish(self, d_in: int, seconds: float) -> ITDA:
        atoms = self._current()
        cfg = dataclasses.replace(self.cfg, d_in=d_in, n_atoms=self.n)
        itda = ITDA(cfg)
        if self.n:
            itda.atoms.copy_(atoms.cpu())
            itda.labels.copy_(self.labels[0].cpu())
        if self.mean is not None:
            itda.mean.copy_(self.mean.cpu())
        itda.meta = {**self.stats, "n_atoms": self.n, "seconds": seconds, "cos_threshold": cfg.threshold(d_in)}
        return itda.to(self.device).eval()
