"""Old import path, kept for users' code: this module *is* ``interp.decomposers.heads.svd``."""

import sys

import interp.decomposers.heads.svd as _module

sys.modules[__name__] = _module
