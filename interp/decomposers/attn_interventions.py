"""Old import path, kept for users' code: this module *is* ``interp.decomposers.heads.interventions``."""

import sys

import interp.decomposers.heads.interventions as _module

sys.modules[__name__] = _module
