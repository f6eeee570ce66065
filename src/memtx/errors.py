"""User-facing errors: each carries one line naming the problem and the fix.

The CLI prints ``memtx: error: <message>`` and exits with ``exit_code``; nothing else is shown.
"""


class MemtxError(Exception):
    """An error the user can cause and fix (bad path, bad config, corrupt file)."""

    exit_code = 2


class ConfigError(MemtxError):
    """A configuration value is invalid."""


class DataError(MemtxError):
    """A corpus is missing, empty, unreadable or corrupt."""


class CheckpointError(MemtxError):
    """A checkpoint or run folder is missing, corrupt or from another architecture."""
