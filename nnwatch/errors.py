"""Exception hierarchy: every failure nnwatch reports on purpose is an ``NnwatchError``."""


class NnwatchError(Exception):
    """Base class of every error nnwatch raises on purpose."""


class InputError(NnwatchError, ValueError):
    """An argument, array or data source is not what the call accepts."""


class ModelError(NnwatchError, ValueError):
    """An ONNX model cannot be loaded, read or instrumented."""


class ModelMismatchError(NnwatchError, ValueError):
    """A profile or detector file was built for a different model."""


class ProfileError(NnwatchError, ValueError):
    """A profile file is corrupt, truncated, of another format version or inconsistent."""


class NotFittedError(NnwatchError, ValueError, AttributeError):
    """A detector or profile was used before it was fitted or calibrated."""


class BudgetError(NnwatchError, RuntimeError):
    """A latency or memory budget was exceeded under the ``raise`` policy."""


class MissingDependencyError(NnwatchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
