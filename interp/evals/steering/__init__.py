"""Steering: interventions at any hook site, KL-calibrated strengths, and offline scores.

One harness for every kind of direction: a decomposer feature (``directions()`` of any artifact,
neuron-space features mapped through W_out with ``residual_directions``), a difference-in-means
vector (``diff_in_means``) or a user vector. The protocol follows the SNMF paper's causal steering
evaluation (Shafran, Geiger & Geva 2025): add α·v at a site, choose α per direction so that the
next-token KL on neutral prompts hits each budget in {0.025, ..., 0.5}, generate, and score concept
presence and fluency, combined by their harmonic mean as in AxBench (Wu et al. 2025).

- ``interventions``: ``steer`` (context manager: add / project / clamp / ablate, all or generated
  positions), ``generate`` (batched, left-padded, KV-cached);
- ``directions``: ``diff_in_means``, ``residual_directions``, ``decomposer_direction``;
- ``calibration``: ``calibrate_alpha`` (bracket + log-space bisection, misses reported);
- ``scores``: ``score_generations`` (embedding concept score, fluency, combined, success),
  ``output_score``, ``bootstrap_ci``;
- ``fluency``: likelihood against ordinary text x repetition x content (``fluency_parts``);
- ``judge``: an optional AxBench-style 0–2 judge over any OpenAI-compatible endpoint;
- ``experiment`` and ``report``: the method comparison (every method × concept × KL budget) and
  its markdown/JSON report.
"""

from interp.evals.steering.calibration import DEFAULT_KL_TARGETS, AlphaPoint, Calibration, NextTokenKL, calibrate_alpha
from interp.evals.steering.directions import decomposer_direction, diff_in_means, residual_directions, site_activations
from interp.evals.steering.interventions import MODES, POSITIONS, active_interventions, generate, prompt_length, steer
from interp.evals.steering.judge import LLMJudge, parse_rating
from interp.models.prompts import encode_prompts
from interp.evals.steering.fluency import continuation_nll, fluency_parts
from interp.evals.steering.scores import (
    EmbeddingJudge,
    GenerationScores,
    bootstrap_ci,
    embedding_judge,
    harmonic,
    output_score,
    score_generations,
)

__all__ = [
    "DEFAULT_KL_TARGETS",
    "MODES",
    "POSITIONS",
    "AlphaPoint",
    "Calibration",
    "EmbeddingJudge",
    "GenerationScores",
    "LLMJudge",
    "NextTokenKL",
    "active_interventions",
    "bootstrap_ci",
    "calibrate_alpha",
    "continuation_nll",
    "decomposer_direction",
    "diff_in_means",
    "embedding_judge",
    "encode_prompts",
    "fluency_parts",
    "generate",
    "harmonic",
    "output_score",
    "parse_rating",
    "prompt_length",
    "residual_directions",
    "score_generations",
    "site_activations",
    "steer",
]
