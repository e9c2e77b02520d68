"""What every job shares: the job context, step timing, the summary and running a job in its MLflow run.

A job is a :class:`Job`: a name, a function ``run(ctx: JobContext) -> JobSummary`` and the name of
its config section. :func:`run_job` hands the function only its own section (``ctx.config``) and the
shared platform settings (``ctx.platform``), inside an MLflow run that logs both as params. Which
jobs exist, and the entry point of ``jobs/<name>.py``, is :mod:`shopai_spark.app`'s business.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pyspark.sql import SparkSession

from shopai_spark.config import PlatformConfig, flatten
from shopai_spark.console import STEPS
from shopai_spark.errors import MissingTableError
from shopai_spark.secrets import redact_params
from shopai_spark.session import get_spark
from shopai_spark.tables import Lakehouse, TableRef
from shopai_spark.tracking import JobRun, tracked_run

Section = TypeVar("Section")



@dataclass
class JobSummary:
    """What a job reports when it ends: its name, table row counts, metrics and free-form lines."""

    job: str
    run_id: str
    tables: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        """The header, the tables' row counts and the metrics as wrapped ``name value`` lists, then
        the free-form lines."""
        out = [f"== {self.job} (MLflow run {self.run_id}) =="]
        out += wrapped("rows", [f"{name} {rows:,}" for name, rows in self.tables.items()])
        out += wrapped("metrics", [f"{name} {number(value)}" for name, value in self.metrics.items()])
        out += self.lines
        return "\n".join(out)


def number(value: float) -> str:
    """A metric as a person reads it: whole numbers with thousands separators, others to 4 significant digits."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"


def wrapped(label: str, parts: Sequence[str], width: int = 100) -> list[str]:
    """``  label: a, b, c`` wrapped at ``width`` characters (continuation lines indented); [] for no parts."""
    lines: list[str] = []
    current = f"  {label}:"
    for part in parts:
        if len(current) + len(part) + 2 > width and current.strip() != f"{label}:":
            lines.append(current.rstrip(","))
            current = " " * (len(label) + 3)
        current += f" {part},"
    return [*lines, current.rstrip(",")] if parts else []


PROGRESS_SECONDS = 60.0


@contextmanager
def still_running(label: str, started: float) -> Iterator[None]:
    """Log ``<label> … still running (N s)`` every PROGRESS_SECONDS until the block ends."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(PROGRESS_SECONDS):
            STEPS.info("%s … still running (%.0f s)", label, time.perf_counter() - started)
    thread = threading.Thread(target=beat, name="step-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@dataclass
class JobContext(Generic[Section]):
    """Everything a job needs: its own config section, the platform settings, the session, the
    lakehouse and the MLflow run."""

    config: Section
    platform: PlatformConfig
    spark: SparkSession
    lakehouse: Lakehouse
    run: JobRun
    job: str

    @contextmanager
    def step(self, description: str) -> Iterator[dict[str, Any]]:
        """Time one job step and log one line ``step: … rows=… (1.2 s)``; a step still running after
        PROGRESS_SECONDS logs ``step … still running (60 s)`` every PROGRESS_SECONDS (progress
        without Spark's stage bars).

        The body may put counts into the yielded dict; they are logged with the time.
        """
        counts: dict[str, Any] = {}
        started = time.perf_counter()
        with still_running(f"{self.job} | {description}", started):
            yield counts
        seconds = time.perf_counter() - started
        detail = " ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in counts.items())
        STEPS.info("%s | %s %s(%.1f s)", self.job, description, detail + " " if detail else "", seconds)


    def require_inputs(self, required: Sequence[TableRef], optional: Sequence[TableRef] = ()) -> list[TableRef]:
        """Check the tables this job needs before it starts: every ``required`` table must exist
        (else MissingTableError naming each missing one); ``optional`` tables are used when they
        exist. Logs the Delta version of every table used and returns those tables."""
        missing = [ref for ref in required if not self.lakehouse.exists(ref)]
        if missing:
            names = ", ".join(str(ref) for ref in missing)
            raise MissingTableError(f"{self.job} needs {names}, not found in the lakehouse: run jobs/ingest.py "
                                    f"with the source that fills it first (or change the {self.job} settings)")
        used = [*required, *[ref for ref in optional if self.lakehouse.exists(ref)]]
        self.run.log_input_versions(self.lakehouse, used)
        return used


JobFunction = Callable[[JobContext[Any]], JobSummary]


@dataclass(frozen=True)
class Job:
    """A job: its ``name`` (MLflow tag, log prefix, ``jobs/<name>.py``), its ``run`` function and the
    ``section`` of the application config it reads (``als``, ``demand``, ...)."""

    name: str
    run: JobFunction
    section: str


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every entry point takes: ``--conf``, repeatable ``--set key=value``,
    ``--verbose`` and ``--log-dir`` (where Spark, Ivy and MLflow output goes, see
    :mod:`~shopai_spark.console`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set als.rank=32 (repeatable)")
    parser.add_argument("--verbose", action="store_true",
                        help="Spark, Ivy and MLflow output on the console instead of the log file")
    parser.add_argument("--log-dir", default="logs", help="folder of the log file (default: %(default)s)")
    return parser


def run_job(job: Job, config: Any, platform: PlatformConfig, spark: SparkSession | None = None,
            finish_line: bool = True) -> JobSummary:
    """Run ``job`` with its config section ``config`` inside an MLflow run that logs ``platform`` and
    ``config`` (as ``<section>.<key>``, secrets masked) as params; return its summary. ``finish_line``: log the
    closing ``<job> | finished in …`` step line (the pipeline prints its own progress line instead)."""
    spark = spark or get_spark(platform.spark)
    lakehouse = Lakehouse(spark, platform.lakehouse)
    started = time.perf_counter()
    params = redact_params({**flatten(platform), **flatten(config, f"{job.section}.")})
    with tracked_run(platform.tracking, job.name, params) as run:
        ctx = JobContext(config=config, platform=platform, spark=spark, lakehouse=lakehouse, run=run, job=job.name)
        summary = job.run(ctx)
        seconds = time.perf_counter() - started
        run.log_metrics({"job_seconds": seconds})
    if finish_line:
        STEPS.info("%s | finished in %.1f s", job.name, seconds)
    return summary
