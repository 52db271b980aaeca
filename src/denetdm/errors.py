"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""


class DenetdmError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(DenetdmError):
    """A bad preset, key or value."""


class DataError(DenetdmError):
    """Data missing, corrupt or inconsistent."""


class RunFolderError(DenetdmError):
    """A run folder that would be overwritten, or one that cannot be read."""
