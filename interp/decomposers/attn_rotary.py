"""Old import path, kept for users' code: this module *is* ``interp.decomposers.heads.rotary``."""

import sys

import interp.decomposers.heads.rotary as _module

sys.modules[__name__] = _module
