"""Old import path, kept for users' code: this module *is* ``interp.decomposers.lib.cut``."""

import sys

import interp.decomposers.lib.cut as _module

sys.modules[__name__] = _module
