"""Reproduce a paper's experiment (``interp reproduce NAME [CONFIG.yaml] [key=value ...]``).

Each writes its tables and figures to ``out``; ``interp reproduce NAME --help`` lists its keys and
names the paper.
"""

COMMANDS = {
    "paper": "interp.cli.reproduce.paper",
    "sweep_sae": "interp.cli.reproduce.sweep_sae",
    "snmf_concepts": "interp.cli.reproduce.snmf_concepts",
    "lib_modadd": "interp.cli.reproduce.lib_modadd",
    "lib_lm": "interp.cli.reproduce.lib_lm",
    "heads": "interp.cli.reproduce.heads",
    "quality_artifacts": "interp.cli.reproduce.quality_artifacts",
    "quality": "interp.cli.reproduce.quality",
}
