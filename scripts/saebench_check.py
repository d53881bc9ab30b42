"""Load core result files with SAEBench's own code (run it with the Python of an environment that
has ``sae-bench`` installed; it needs TransformerLens < 4, so not this project's ``.venv``):

    python -m venv runs/saebench-venv && runs/saebench-venv/bin/pip install sae-bench
    runs/saebench-venv/bin/python scripts/saebench_check.py runs/quality/core/*_eval_results.json

Each file is validated by SAEBench's pydantic ``CoreEvalOutput`` and read by its
``graphing_utils.get_eval_results`` and ``get_core_results``; prints one JSON line per file with
the L0 and CE score SAEBench read. ``--write-sample PATH`` writes a core file with SAEBench's own
classes (for testing our reader on a file we did not write). Imports nothing from interp.
"""

import json
import sys

from sae_bench.evals.core.eval_config import CoreEvalConfig
from sae_bench.evals.core.eval_output import (
    CoreEvalOutput,
    CoreFeatureMetric,
    CoreMetricCategories,
    MiscMetrics,
    ModelBehaviorPreservationMetrics,
    ModelPerformancePreservationMetrics,
    ReconstructionQualityMetrics,
    ShrinkageMetrics,
    SparsityMetrics,
    TokenStatsMetrics,
)
from sae_bench.sae_bench_utils import graphing_utils


def check(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    out = CoreEvalOutput(**data)  # pydantic validation of every field and category
    results = graphing_utils.get_eval_results([path])
    core = graphing_utils.get_core_results([path])
    ((key, flat),) = results.items()
    return {
        "file": path,
        "valid": type(out).__name__,
        "sae_class": flat["sae_class"],
        "d_sae": flat["d_sae"],
        "l0": core[key]["l0"],
        "ce_loss_score": core[key]["ce_loss_score"],
        "explained_variance": flat["explained_variance"],
        "n_feature_details": len(out.eval_result_details),
    }


def write_sample(path: str) -> None:
    cats = CoreMetricCategories(
        model_behavior_preservation=ModelBehaviorPreservationMetrics(0.9, 0.5, 0.05),
        model_performance_preservation=ModelPerformancePreservationMetrics(0.8, 6.0, 3.5, 3.0),
        reconstruction_quality=ReconstructionQualityMetrics(0.7, 0.6, 0.01, 0.85),
        shrinkage=ShrinkageMetrics(10.0, 9.0, 0.9, 1.05),
        sparsity=SparsityMetrics(32.0, 40.0),
        token_stats=TokenStatsMetrics(4096, 4096),
        misc_metrics=MiscMetrics(0.2, 0.01, 0.5, 0.05, 0.3, 0.4, 0.97),
    )
    feats = [
        CoreFeatureMetric(
            index=i,
            feature_density=0.01 * i,
            consistent_activation_heuristic=1.5,
            encoder_bias=-0.1,
            encoder_norm=1.0,
            encoder_decoder_cosine_sim=0.9,
            max_decoder_cosine_sim=0.3,
            max_encoder_cosine_sim=0.4,
        )
        for i in range(3)
    ]
    CoreEvalOutput(
        eval_config=CoreEvalConfig(model_name="gpt2"),
        eval_id="sample",
        datetime_epoch_millis=1,
        eval_result_metrics=cats,
        eval_result_details=feats,
        sae_bench_commit_hash="sample",
        sae_lens_id="blocks.8.hook_resid_post",
        sae_lens_release_id="sample-release",
        sae_lens_version="6",
        sae_cfg_dict={"architecture": "topk", "d_sae": 3},
        eval_result_unstructured={},
    ).to_json_file(path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write-sample":
        write_sample(sys.argv[2])
    elif len(sys.argv) > 1:
        for p in sys.argv[1:]:
            print(json.dumps(check(p)))
    else:
        sys.exit(__doc__)
