"""The one error type users see, and optional imports.

Anything a user can cause (a bad path, a checkpoint of another model, an unsupported input size) is raised as
:class:`RtsegError` with a message that says what to do. The CLI prints it on one line and exits non-zero. An
optional dependency is imported with :func:`require`, which names the extra that installs it when it is missing.
"""

import importlib


class RtsegError(Exception):
    """A user-facing error: one line, says what went wrong and what to do about it."""


def missing_dependency(module: str, extra: str) -> RtsegError:
    """The error for an optional dependency that is not installed."""
    return RtsegError(f"{module} is not installed; install it with: pip install 'rtseg[{extra}]'")


def require(module: str, extra: str, package: str | None = None):
    """Import ``module`` (an optional dependency) or raise the one line naming ``package`` (default: the module's
    top-level name) and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_dependency(package or module.split(".")[0], extra) from None


def pyplot(extra: str):
    """matplotlib.pyplot on the file-only Agg backend (plots are written, never shown)."""
    require("matplotlib", extra).use("Agg")
    return require("matplotlib.pyplot", extra, "matplotlib")
