"""Run one benchmark (``interp bench NAME [CONFIG.yaml] [key=value ...]``): each figure a ratio.

Every benchmark measures interp against a reference (a plain loop, a dense computation, another
library) in the same run, so the ratio holds under load. ``interp bench NAME --help`` lists its keys.
"""

COMMANDS = {
    "suite": "interp.cli.bench.suite",
    "cache": "interp.cli.bench.cache",
    "sae": "interp.cli.bench.sae",
    "browser": "interp.cli.bench.browser",
    "steer": "interp.cli.bench.steer",
    "synthetic": "interp.cli.bench.synthetic",
    "snmf": "interp.cli.bench.snmf",
    "itda": "interp.cli.bench.itda",
    "lib": "interp.cli.bench.lib",
    "heads": "interp.cli.bench.heads",
    "integrity": "interp.cli.bench.integrity",
}
