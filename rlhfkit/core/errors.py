"""Failures a user can cause that every layer raises; the command line prints them as one line (no traceback)."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""
