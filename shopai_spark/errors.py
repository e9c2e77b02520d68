"""The errors a job expects and reports in one line (no traceback on the console).

Every expected failure is a :class:`JobError`; :func:`shopai_spark.runtime.main` prints its message
on one line and exits with its ``exit_code`` (config errors exit 2 before Spark starts).
"""

from __future__ import annotations


class JobError(RuntimeError):
    """An expected failure of a job; the message says what is wrong and what to do."""

    exit_code = 1


class InputError(JobError):
    """An input is missing or empty (a raw source, a silver table): nothing was written."""

    exit_code = 3


class MissingTableError(InputError):
    """A table a job needs does not exist yet."""


class EmptyInputError(InputError):
    """A source or table has no usable rows: nothing was written."""


class SourceSchemaError(InputError):
    """A raw export lacks a required column (the message names the canonical and the export column)."""


class EmptyOutputError(JobError):
    """Raised instead of overwriting a table with nothing; the previous version is kept."""

    exit_code = 4


class ConflictError(JobError):
    """Another writer is in the way: nothing of this run was kept."""

    exit_code = 6


class RunInProgressError(ConflictError):
    """Another run of the same job has started and not ended, and its driver is alive."""


class ConcurrentWriteError(ConflictError):
    """A Delta commit kept losing the race with another writer after its retries."""


class RunKilled(BaseException):  # noqa: N818 - a signal, not an error a job raises
    """The driver received SIGTERM: the run is ended as KILLED after its outputs are restored.
    A BaseException, so that no ``except Exception`` in job code swallows it."""

    exit_code = 143
