"""User-facing errors: each carries one line naming the problem and the fix.

The CLI prints ``memtx: error: <message>`` and exits with the error's ``exit_code``; nothing else is shown.
Exit codes: 1 other, 2 usage / configuration, 3 data, 4 checkpoint / run folder, 5 training stopped.
"""


class MemtxError(Exception):
    """An error the user can cause and fix (bad path, bad config, corrupt file)."""

    exit_code = 1


class ConfigError(MemtxError):
    """A configuration value or command-line argument is invalid."""

    exit_code = 2


class DataError(MemtxError):
    """A corpus is missing, empty, unreadable or corrupt."""

    exit_code = 3


class CheckpointError(MemtxError):
    """A checkpoint or run folder is missing, corrupt, unwritable or from another architecture."""

    exit_code = 4


class TrainingError(MemtxError):
    """Training cannot go on (e.g. it diverged); the last good checkpoint is kept."""

    exit_code = 5
