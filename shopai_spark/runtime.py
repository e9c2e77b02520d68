"""What every job shares: argument parsing, the job context, step timing and the summary.

A job is a function ``run(ctx: JobContext) -> JobSummary`` in the library; its ``jobs/<name>.py``
entry point is one call to :func:`main`. ``main`` parses ``--conf``/``--set``, loads the typed config
(exit code 2 with the key named on a config error), gets the SparkSession, opens the MLflow run,
calls the job and prints its summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from shopai_spark.config import AppConfig, ConfigError, load_config
from shopai_spark.errors import JobError, MissingTableError
from shopai_spark.session import get_spark, session_for
from shopai_spark.tables import Lakehouse, TableRef
from shopai_spark.tracking import JobRun, tracked_run

log = logging.getLogger("shopai_spark")


@dataclass
class JobSummary:
    """What a job reports when it ends: its name, table row counts, metrics and free-form lines."""

    job: str
    run_id: str
    tables: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"== {self.job} (MLflow run {self.run_id}) =="]
        out += [f"  {name:<40} {rows:>12,} rows" for name, rows in self.tables.items()]
        out += [f"  {name:<40} {value:>12.4f}" for name, value in self.metrics.items()]
        out += self.lines
        return "\n".join(out)


@dataclass
class JobContext:
    """Everything a job needs: config, session, lakehouse and the MLflow run."""

    config: AppConfig
    spark: SparkSession
    lakehouse: Lakehouse
    run: JobRun
    job: str

    @contextmanager
    def step(self, description: str) -> Iterator[dict[str, Any]]:
        """Time one job step and log one line ``step: … rows=… (1.2 s)``.

        The body may put counts into the yielded dict; they are logged with the time.
        """
        counts: dict[str, Any] = {}
        started = time.perf_counter()
        yield counts
        seconds = time.perf_counter() - started
        detail = " ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in counts.items())
        log.info("%s | %s %s(%.1f s)", self.job, description, detail + " " if detail else "", seconds)


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


JobFunction = Callable[[JobContext], JobSummary]


def parse_args(job: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"jobs/{job}.py", description=f"shopai_spark {job} job")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set als.rank=32 (repeatable)")
    return parser.parse_args(argv)


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
    for noisy in ("py4j", "urllib3", "alembic", "mlflow", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(job: str, fn: JobFunction, config: AppConfig, spark: SparkSession | None = None) -> JobSummary:
    """Run ``fn`` as job ``job`` with ``config`` inside an MLflow run; return its summary."""
    spark = spark or get_spark(config.spark)
    lakehouse = Lakehouse(spark, config.lakehouse)
    started = time.perf_counter()
    with tracked_run(config, job) as run:
        ctx = JobContext(config=config, spark=spark, lakehouse=lakehouse, run=run, job=job)
        summary = fn(ctx)
        seconds = time.perf_counter() - started
        run.log_metrics({"job_seconds": seconds})
    log.info("%s finished in %.1f s", job, seconds)
    return summary


def main(job: str, fn: JobFunction, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs/<job>.py``: returns the process exit code (0 ok, 2 bad config, an
    expected failure's :attr:`~shopai_spark.errors.JobError.exit_code`: one line, traceback in the log)."""
    configure_logging()
    args = parse_args(job, argv)
    try:
        config = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        with session_for(config.spark) as spark:
            summary = run_job(job, fn, config, spark)
    except JobError as exc:
        log.debug("%s failed", job, exc_info=True)
        print(f"{job} failed: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary.render())
    return 0
