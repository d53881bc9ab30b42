"""The project's own exception types: one base class for every error caused by bad input.

Raised before any compute wherever the input can be checked up front. The command line turns an
``InterpError`` into a one- or two-line message (what is wrong, what to do) and shows the
traceback only when asked (``--debug`` or ``INTERP_DEBUG=1``). Each subclass also derives from the
built-in type that callers caught before it existed, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class InterpError(Exception):
    """Base class: bad input or a refused operation, with a message that says what to do."""


class ConfigError(InterpError, ValueError):
    """A config is malformed: unknown key, wrong type, value out of range, inconsistent fields."""


class DataError(InterpError, ValueError):
    """Data on disk is missing, corrupt, or not what the request expects (cache, artifact, store)."""


class MissingFileError(InterpError, FileNotFoundError):
    """A file or folder the request names does not exist."""


class LockedError(InterpError, RuntimeError):
    """An output folder is held by another live process."""


class TrainingError(InterpError, FloatingPointError):
    """Training stopped because the loss became NaN/inf or diverged (usually: lr too high)."""
