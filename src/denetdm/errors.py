"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""


class DenetdmError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(DenetdmError):
    """A bad preset, key or value."""


class DataError(DenetdmError):
    """Data missing, corrupt or inconsistent."""


class RunFolderError(DenetdmError):
    """A run folder that would be overwritten, or one that cannot be read."""


def one_line(x: object) -> str:
    """Whatever a library said, collapsed to one line: the CLI prints errors as single lines."""
    return " ".join(str(x).split())
