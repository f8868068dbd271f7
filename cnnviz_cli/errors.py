"""Errors that end a run (or one input) with one clear sentence and an exit code."""


class CnnvizError(Exception):
    """A usage or configuration problem: bad option, unknown model, layer or class (exit 2)."""

    exit_code = 2


class InputError(CnnvizError):
    """One input could not be processed; the rest of the batch goes on (exit 1 at the end)."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived mid-run: stop, keep what finished, exit 128 + the signal."""

    def __init__(self, signal_number: int):
        super().__init__(f"Interrupted by signal {signal_number}.")
        self.exit_code = 128 + signal_number


class WriteError(CnnvizError):
    """The output folder cannot be written (no space, read-only, gone): exit 4, the manifest
    on disk still lists what is complete."""

    exit_code = 4


def reason(error: Exception) -> str:
    """Why a file could not be read, without repeating its path: `No such file or directory`,
    `not UTF-8 text`, else the error's own text."""
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
