"""The project's own exceptions: one base class, a few named kinds.

Every message says what went wrong, with which file or id, and what to do next.
CLI exit codes (documented in the README) are attached to each class.
"""

from __future__ import annotations

from pathlib import Path


class WorkbenchError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code: int = 1


class ConfigError(WorkbenchError):
    """A command-line option, config file or request is invalid."""

    exit_code = 2


class InputFileError(WorkbenchError):
    """One RD-Agent input file is unreadable, malformed or unsafe.

    Raised by the readers; the archive pipeline turns it into an error record and goes on.
    """

    exit_code = 3

    def __init__(self, path: Path | str, reason: str, *, hint: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        message = f"{self.path}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UnsafePickleError(InputFileError):
    """A pickle asked for something other than the pandas/numpy reconstruction of a DataFrame."""


class RegistryError(WorkbenchError):
    """The RD-Agent registry cannot be read (missing, not SQLite, locked past the retry budget)."""

    exit_code = 4


class ArchiveError(WorkbenchError):
    """The archive is missing, damaged or of an unknown newer version."""

    exit_code = 5


class ArchiveBusyError(ArchiveError):
    """Another job holds the archive lock, or another process holds the catalog file."""

    exit_code = 6


class CatalogCorruptError(ArchiveError):
    """The catalog file cannot be read: damaged header or blocks, truncated, not a DuckDB file.

    The message names the file, what is wrong, and `workbench repair --archive DIR`.
    """

    exit_code = 5


class VerificationError(ArchiveError):
    """A stored or source file does not have the hash the catalog promised."""

    exit_code = 7


class UnsafePathError(WorkbenchError):
    """A path escapes its root, contains '..' or goes through a link; it is never touched."""

    exit_code = 8


class PlanChangedError(WorkbenchError):
    """A cleanup plan no longer matches the approval it is confirmed with."""

    exit_code = 9


class StorageFullError(WorkbenchError):
    """The archive's file system is full or over quota (ENOSPC, EDQUOT): nothing half-written is kept.

    The message says what was being written, where, and how much space is needed.
    """

    exit_code = 10


class StorageIOError(WorkbenchError):
    """The operating system reported an I/O error (EIO) reading or writing the archive."""

    exit_code = 11


class RemoteArchiveError(ArchiveError):
    """The bucket of an ``s3://`` archive cannot be used: no credentials, no such bucket, endpoint
    unreachable, access refused, or an upload that failed after its retries.

    The message names the bucket (and key) and what to do.
    """

    exit_code = 12


class LakeError(WorkbenchError):
    """A Delta Lake table could not be written or read: missing table, or another writer kept winning."""

    exit_code = 13
