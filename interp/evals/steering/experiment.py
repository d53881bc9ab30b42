"""Steering methods compared at matched KL budgets on the same concepts (the SNMF paper's headline
comparison, Shafran et al. 2025: SNMF features vs SAE features vs difference-in-means).

For every concept of ``interp.data.concepts`` and every method, one direction is chosen:
- ``diffmeans``: mean ``hook_mlp_out`` activation over the concept's training sentences minus the
  same over the neutral selection sentences (the paper's supervised DiffMeans baseline, same site);
- ``sae`` / ``snmf`` / ``itda`` / ``heads`` / ``lib`` (any decomposer): the feature whose
  per-sentence maximum activation best separates the concept's training sentences from the neutral
  selection sentences: highest AUROC, ties (common for sparse codes) broken by the standardised mean
  difference. It is steered at its own site (SAE and ITDA at ``hook_mlp_out``, as the paper's
  SAE-out; SNMF at ``mlp.hook_post``; head OV write vectors at ``hook_resid_post``; LIB at
  ``hook_resid_mid``).
Each direction is calibrated to every KL target (``calibrate_alpha`` on the calibration half of the
neutral sentences), then continuations of the steering prompts are sampled and scored
(``score_generations``; concept reference = the concept's description and its held-out sentences,
never used for selection) together with the output-centric score. Misses are kept in the records
and counted in the table. ``summarise`` gives means with two-level bootstrap intervals (concepts,
then samples).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.evals.steering.calibration import DEFAULT_KL_TARGETS, NextTokenKL, calibrate_alpha
from interp.evals.steering.directions import decomposer_direction, diff_in_means, residual_directions, site_activations
from interp.evals.steering.interventions import generate, steer
from interp.evals.steering.scores import bootstrap_ci, output_score, score_generations
from interp.models import LoadedModel, vocab_projection


@dataclass(frozen=True)
class SteerExperimentConfig:
    model: str = "smollm2-135m"  # model spec
    layer: int = 20  # block whose hook_mlp_out / mlp.hook_post is steered
    concepts: tuple[str, ...] | None = None  # None: all
    n_concepts: int | None = None  # keep the first n (reduced scale)
    methods: tuple[str, ...] = ("diffmeans", "sae", "snmf")  # steering methods compared (also itda, heads, lib)
    kl_targets: tuple[float, ...] = DEFAULT_KL_TARGETS  # next-token KL budgets each direction is calibrated to
    signs: tuple[int, ...] = (1,)  # steer along (+1) and/or against (-1) each direction
    positions: str = "all"  # all | generated: the positions the direction is added at
    steer_prompts: tuple[str, ...] = ("I think that", "Let me tell you about", "The best thing is")  # prompts continued
    samples_per_prompt: int = 2  # sampled continuations per prompt
    max_new_tokens: int = 32  # tokens per continuation
    temperature: float = 1.0  # sampling temperature
    top_k: int | None = 30  # sample from the k most likely tokens (None: all)
    top_p: float | None = 0.3  # nucleus sampling mass (None: off)
    train_frac: float = 0.67  # of each concept's sentences: selection / diff-means; the rest: reference
    n_select_neutral: int = 20  # neutral sentences for selection / diff-means; the rest calibrate KL
    tol: float = 0.1  # relative KL tolerance of the calibration
    max_iter: int = 12  # calibration search steps per KL target
    n_vocab_tokens: int = 20  # top vocabulary-projection tokens of the output-centric score
    n_boot: int = 1000  # bootstrap resamples of the confidence intervals
    seed: int = 0  # seeds every stage
    llm_judge: dict | None = None  # {base_url, model, api_key_env}: also rate with an LLM (optional)
    sae_artifact: str | None = None  # SAE at blocks.{layer}.hook_mlp_out (None: train one here)
    sae: dict = field(default_factory=dict)  # training settings when no artifact is given
    snmf_artifact: str | None = None  # SNMF at blocks.{layer}.mlp.hook_post (None: fit one here)
    snmf: dict = field(default_factory=dict)  # fit settings when no artifact is given
    itda_artifact: str | None = None  # ITDA at blocks.{layer}.hook_mlp_out (None: build one on the SAE's cache)
    itda: dict = field(default_factory=dict)  # ITDA.fit settings (on the SAE's activation cache)
    heads: dict = field(default_factory=dict)  # HeadSVD view (circuit, side; layer defaults to ``layer``)
    lib_artifact: str | None = None  # LIB with directions at blocks.{layer}.hook_resid_mid (None: fit one)
    lib: dict = field(default_factory=dict)  # LIB fit settings (n_seqs, seq_len, LIBConfig fields)
    out: str = "runs/steer"  # output folder
    threads: int | None = None  # torch CPU threads (None: torch's default)


@dataclass
class ConceptSplit:
    name: str
    description: str
    train: list[str]
    reference: list[str]  # description + held-out sentences


def split_concepts(cfg: SteerExperimentConfig) -> tuple[list[ConceptSplit], list[str], list[str]]:
    """Concepts (train/reference split), neutral selection sentences, neutral calibration prompts."""
    from interp.data.concepts import load_concepts, neutral_sentences

    concepts = load_concepts(list(cfg.concepts) if cfg.concepts else None)[: cfg.n_concepts or None]
    out = []
    for c in concepts:
        n = max(1, int(round(len(c.sentences) * cfg.train_frac)))
        out.append(ConceptSplit(c.name, c.description, list(c.sentences[:n]), [c.description, *c.sentences[n:]]))
    neutral = neutral_sentences()
    return out, neutral[: cfg.n_select_neutral], neutral[cfg.n_select_neutral :]


def auroc(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """AUROC per column of scores [P, F] (positives) vs [N, F] (negatives) (Mann-Whitney U / PN)."""
    gt = (pos[:, None, :] > neg[None, :, :]).float().mean((0, 1))
    eq = (pos[:, None, :] == neg[None, :, :]).float().mean((0, 1))
    return gt + 0.5 * eq


@torch.no_grad()
def sentence_codes(model: LoadedModel, decomposer: Any, site: str, sentences: Sequence[str]) -> torch.Tensor:
    """Each sentence's maximum activation of every feature over its tokens [N, F]."""
    p = next(iter(decomposer.parameters()), None)
    rows = []
    for acts in site_activations(model, site, sentences):
        codes = decomposer.encode_dense(
            acts.to(device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else torch.float32)
        )
        rows.append(codes.max(0).values.float().cpu())
    return torch.stack(rows)


def select_feature(pos: torch.Tensor, neg: torch.Tensor) -> tuple[int, float, float]:
    """(feature, AUROC, standardised mean difference) of the best-separating feature."""
    a = auroc(pos, neg)
    pooled = torch.sqrt((pos.var(0, unbiased=False) + neg.var(0, unbiased=False)) / 2 + 1e-8)
    d = (pos.mean(0) - neg.mean(0)) / pooled
    key = a * 1e3 + torch.tanh(d)  # lexicographic: AUROC first, effect size breaks ties
    f = int(key.argmax())
    return f, float(a[f]), float(d[f])


def method_directions(
    model: LoadedModel,
    method: str,
    decomposer: Any,
    concepts: list[ConceptSplit],
    neutral_select: list[str],
    layer: int,
) -> list[dict[str, Any]]:
    """One direction per concept for ``method`` (see the module docstring)."""
    if method == "diffmeans":
        site = f"blocks.{layer}.hook_mlp_out"
        return [
            {
                "direction": diff_in_means(model, site, c.train, neutral_select),
                "site": site,
                "feature": None,
                "auroc": None,
                "effect": None,
            }
            for c in concepts
        ]
    site = decomposer.cfg.site
    neg = sentence_codes(model, decomposer, site, neutral_select)
    out = []
    for c in concepts:
        f, a, d = select_feature(sentence_codes(model, decomposer, site, c.train), neg)
        direction, _ = decomposer_direction(decomposer, f, model)
        out.append({"direction": direction, "site": site, "feature": f, "auroc": a, "effect": d})
    return out


def vocab_tokens(model: LoadedModel, direction: torch.Tensor, site: str, k: int, sign: int) -> list[int]:
    """Top-k vocabulary-projection tokens of ``sign``·direction (neuron space mapped through W_out)."""
    v = direction[None].float()
    if site.endswith("mlp.hook_post"):
        v = residual_directions(model, v, int(site.split(".")[1]))
    proj = vocab_projection(model, sign * v.to(model.device), k=k)
    return proj.top_ids[0].tolist()


def run_direction(
    model: LoadedModel,
    entry: dict,
    concept: ConceptSplit,
    kl: NextTokenKL,
    prompts: list[str],
    baseline: dict,
    cfg: SteerExperimentConfig,
    judge: Any,
    llm: Any = None,
) -> list[dict]:
    """Calibrate, generate and score one direction at every (sign, KL target); one record each."""
    v, site = entry["direction"], entry["site"]
    cal = calibrate_alpha(
        model,
        v,
        site,
        cfg.kl_targets,
        signs=cfg.signs,
        tol=cfg.tol,
        max_iter=cfg.max_iter,
        kl=kl,
        positions=cfg.positions,
    )
    records = []
    for p in cal.points:
        rec = {"target": p.target, "sign": p.sign, "alpha": p.alpha, "kl": p.kl, "hit": p.hit, "note": p.note}
        if p.hit:
            with steer(model, v, site, p.alpha, positions=cfg.positions):
                gens = generate(
                    model,
                    prompts,
                    cfg.max_new_tokens,
                    seed=cfg.seed,
                    temperature=cfg.temperature,
                    top_k=cfg.top_k,
                    top_p=cfg.top_p,
                )
            s = score_generations(model, prompts, gens, concept.reference, [], judge=judge, baseline=baseline)
            toks = vocab_tokens(model, v, site, cfg.n_vocab_tokens, p.sign)
            rec |= {
                "generations": gens,
                "concept_score": s.concept.tolist(),
                "fluency": s.fluency.tolist(),
                "combined": s.combined.tolist(),
                "success": s.success.tolist(),
                "similarity": s.similarity.tolist(),
                "perplexity": s.perplexity.tolist(),
                "output_score": output_score(model, v, site, p.alpha, kl.prompts, toks, positions=cfg.positions),
            }
            if llm is not None:
                r = llm.score(gens, concept.description)
                rec["llm"] = {k: (val.tolist() if hasattr(val, "tolist") else val) for k, val in r.items()}
        records.append(rec)
    return records


def run_experiment(
    model: LoadedModel, decomposers: dict[str, Any], cfg: SteerExperimentConfig, judge: Any, progress: bool = True
) -> dict[str, Any]:
    """Every method × concept × sign × KL target; returns the records and the unsteered baseline."""
    concepts, neutral_select, neutral_cal = split_concepts(cfg)
    prompts = [p for p in cfg.steer_prompts for _ in range(cfg.samples_per_prompt)]
    unsteered = generate(
        model, prompts, cfg.max_new_tokens, seed=cfg.seed, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p
    )
    baselines, base_scores = {}, {}
    for c in concepts:
        s = score_generations(model, prompts, unsteered, c.reference, unsteered, judge=judge)
        baselines[c.name], base_scores[c.name] = s.baseline, s
    kl = NextTokenKL(model, neutral_cal)
    llm = None
    if cfg.llm_judge:
        import os

        from interp.evals.steering.judge import LLMJudge

        j = dict(cfg.llm_judge)
        llm = LLMJudge(j["base_url"], j["model"], api_key=os.environ.get(j.get("api_key_env", ""), None))
    records = []
    for method, dec in decomposers.items():
        entries = method_directions(model, method, dec, concepts, neutral_select, cfg.layer)
        for c, e in tqdm(list(zip(concepts, entries)), desc=f"steering with {method}", disable=not progress):
            for rec in run_direction(model, e, c, kl, prompts, baselines[c.name], cfg, judge, llm):
                records.append(
                    {
                        "method": method,
                        "concept": c.name,
                        "site": e["site"],
                        "feature": e["feature"],
                        "selection_auroc": e["auroc"],
                        "selection_effect": e["effect"],
                        **rec,
                    }
                )
    unsteered_rec = [
        {
            "concept": c.name,
            "concept_score": base_scores[c.name].concept.tolist(),
            "fluency": base_scores[c.name].fluency.tolist(),
            "combined": base_scores[c.name].combined.tolist(),
            "success": base_scores[c.name].success.tolist(),
            "baseline": baselines[c.name],
        }
        for c in concepts
    ]
    ppl = base_scores[concepts[0].name].perplexity.tolist()
    return {
        "records": records,
        "unsteered": {"prompts": prompts, "generations": unsteered, "perplexity": ppl, "per_concept": unsteered_rec},
        "config": dataclasses.asdict(cfg),
    }


def summarise(result: dict[str, Any], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per method × sign × KL target: mean and 95% CI of each score, misses counted."""
    rows = []
    recs = result["records"]
    keys = sorted(
        {(r["method"], r["sign"], r["target"]) for r in recs},
        key=lambda k: (list(dict.fromkeys(r["method"] for r in recs)).index(k[0]), -k[1], k[2]),
    )
    for method, sign, target in keys:
        group = [r for r in recs if (r["method"], r["sign"], r["target"]) == (method, sign, target)]
        hits = [r for r in group if r["hit"]]
        row = {"method": method, "sign": sign, "kl_target": target, "n": len(group), "misses": len(group) - len(hits)}
        for score, key in (
            ("concept", "concept_score"),
            ("fluency", "fluency"),
            ("combined", "combined"),
            ("success", "success"),
        ):
            row[score] = bootstrap_ci([r.get(key, []) for r in hits], n_boot=n_boot, seed=seed)
        row["output_score"] = bootstrap_ci([[r["output_score"]] for r in hits], n_boot=n_boot, seed=seed)
        if hits and "llm" in hits[0]:  # AxBench scale 0-2, unparsable ratings left out
            row["llm_combined"] = bootstrap_ci(
                [[x for x in r["llm"]["combined"] if x == x] for r in hits], n_boot=n_boot, seed=seed
            )
        row["perplexity"] = float(np.median([p for r in hits for p in r["perplexity"]])) if hits else float("nan")
        row["selection_auroc"] = (
            float(np.mean([r["selection_auroc"] for r in group])) if group[0]["selection_auroc"] is not None else None
        )
        rows.append(row)
    return rows
