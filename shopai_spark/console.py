"""The console a user reads at a glance: one line per step and the summaries; the rest goes to a log file.

:func:`quiet_console` (what ``jobs/*.py`` and ``jobs/pipeline.py`` use unless ``--verbose``) points
the process's standard error at ``logs/<name>-<time>.log`` for the duration of a run. Spark's JVM,
started inside it, inherits that stream: Ivy's dependency report and every log4j line land in the
file, as do Python warnings (MLflow's among them) and every log record. The console keeps the step
lines (logger :data:`STEPS`: ``als | index ids users=943 items=1,682 (2.1 s)``), warnings and errors
of this project, and whatever the entry point prints (the summaries). :func:`verbose_console` is
the old behaviour: every log record on standard error.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shopai_spark.secrets import RedactingFilter

STEPS = logging.getLogger("shopai_spark.steps")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY_LOGGERS = ("py4j", "urllib3", "alembic", "mlflow", "matplotlib")


def verbose_console() -> None:
    """Every log record (INFO and up) on standard error, as set up once per process."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=FILE_FORMAT, stream=sys.stderr)
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _for_the_console(record: logging.LogRecord) -> bool:
    """Step lines, and this project's warnings and errors."""
    return record.name == STEPS.name or (record.levelno >= logging.WARNING and record.name.startswith("shopai_spark"))


@contextmanager
def quiet_console(name: str, log_dir: str | Path = "logs") -> Iterator[Path]:
    """Send standard error (file descriptor 2 and ``sys.stderr``) and every log record to
    ``<log_dir>/<name>-<YYYYmmdd-HHMMSS>.log`` inside the block; the console (standard output)
    shows the step lines and this project's warnings. Yields the log file's path; everything is
    put back on the way out, also when the block raises."""
    path = Path(log_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log_file = open(path, "a", buffering=1)   # noqa: SIM115 - closed in the finally below
    saved_fd, saved_stderr = os.dup(2), sys.stderr
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    to_file = logging.StreamHandler(log_file)
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    to_console = logging.StreamHandler(sys.stdout)
    to_console.setFormatter(logging.Formatter("%(message)s"))
    to_console.addFilter(_for_the_console)
    for handler in (to_file, to_console):
        handler.addFilter(RedactingFilter())      # secrets of the config never reach a log line
    os.dup2(log_file.fileno(), 2)
    sys.stderr = log_file
    root.handlers, root.level = [to_file, to_console], logging.INFO
    logging.captureWarnings(True)   # warnings become records of "py.warnings": to the file
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.handlers, root.level = saved_handlers, saved_level
        log_file.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        sys.stderr = saved_stderr
        log_file.close()
