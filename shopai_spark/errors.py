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
