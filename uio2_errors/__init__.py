"""The project's error types for mistakes in what a user asked for (a flag, a path, a damaged file).

They sit below every other package (`uio2_core`, `envs` -> `policies` -> `training` -> `agent` may all
import this one module, which imports nothing), so each layer can raise them where the problem is
known. The `uio2` command line prints a `UserError` as one line on stderr and exits non-zero; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names what is wrong and, when it can, how to fix it."""


class OptionError(UserError, ValueError):
    """A flag or option with a value that is wrong, out of range, or contradicts another."""


class MissingFileError(UserError, FileNotFoundError):
    """A path the user gave does not exist or lacks what it should hold."""


class DamagedFileError(UserError):
    """A file exists but cannot be read (truncated, corrupt): the message names the file."""


class MissingDependencyError(UserError, ImportError):
    """An optional package is needed; the message says how to install it."""


__all__ = ["DamagedFileError", "MissingDependencyError", "MissingFileError", "OptionError", "UserError"]
