"""Old import path, kept for users' code: this module *is* ``interp.decomposers.lib.graph``."""

import sys

import interp.decomposers.lib.graph as _module

sys.modules[__name__] = _module
