"""rlhfkit's error tree. The command line prints an `RlhfkitError` as one line (what went wrong, where, what to do)
and any other exception with its traceback: that is a bug.

- `InputError`: bad input a user can fix: a file (with its line and field), an option or a setting.
  `ConfigError` is a setting of a config; `preference.errors.DataError` carries every problem of a data file.
- `SetupError`: something the environment lacks or cannot reach: an engine, a server, a package's data.
- `TrainingDiverged`: training produced a non-finite loss.
- `TrainingFailed`: training launched on several processes ended with an error in one of them.

Each keeps the built-in class it replaces (`ValueError`, `RuntimeError`) as a second base, so code written against
those keeps working.
"""


class RlhfkitError(Exception):
    """A failure a user can fix; its message says what, where and how."""


class InputError(RlhfkitError, ValueError):
    """Bad input: a file, line or field, an option, a setting."""


class ConfigError(InputError):
    """A config (file or dataclass) that cannot be used; the message names the field (and file and line)."""


class SetupError(RlhfkitError, RuntimeError):
    """The environment lacks or cannot reach something: an engine, a server, a package's data."""


class TrainingDiverged(RlhfkitError, RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingFailed(RlhfkitError, RuntimeError):
    """A training launched on several processes failed; the message has what they printed last and how to resume."""
