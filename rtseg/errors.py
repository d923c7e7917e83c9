"""The one error type users see.

Anything a user can cause (a bad path, a checkpoint of another model, an unsupported input size) is raised as
:class:`RtsegError` with a message that says what to do. The CLI prints it on one line and exits non-zero.
"""


class RtsegError(Exception):
    """A user-facing error: one line, says what went wrong and what to do about it."""


def missing_dependency(module: str, extra: str) -> RtsegError:
    """The error for an optional dependency that is not installed."""
    return RtsegError(f"{module} is not installed; install it with: pip install 'rtseg[{extra}]'")
