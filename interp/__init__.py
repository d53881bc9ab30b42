"""interp: cache language-model activations, decompose them into features, and use the features.

Stages (each imports only the ones before it): ``data`` -> ``models`` -> ``activations`` ->
``decomposers`` -> ``evals`` / ``browser``. See DESIGN.md for the contracts between them.
"""

__version__ = "0.1.0"
