"""Old import path, kept for users' code: this module *is* ``interp.decomposers.heads.laundry_prompts``."""

import sys

import interp.decomposers.heads.laundry_prompts as _module

sys.modules[__name__] = _module
