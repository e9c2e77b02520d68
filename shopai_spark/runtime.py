"""What every job shares: the job context, step timing, the summary and running a job in its MLflow run.

A job is a :class:`Job`: a name, a function ``run(ctx: JobContext) -> JobSummary``, the name of
its config section, every table it may write (``outputs``, its own) and the shared tables it
adds rows to (``appends``, e.g. the quarantine). :func:`run_job` hands the function only its own section (``ctx.config``) and the
shared platform settings (``ctx.platform``), inside an MLflow run that logs both as params. Which
jobs exist, and the entry point of ``jobs/<name>.py``, is :mod:`shopai_spark.app`'s business.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

from pyspark.sql import DataFrame, SparkSession

from shopai_spark.config import PlatformConfig, flatten
from shopai_spark.console import STEPS
from shopai_spark.errors import MissingTableError, RunKilled
from shopai_spark.runs import NothingChanged, RunLedger, Versions
from shopai_spark.secrets import redact_params
from shopai_spark.session import get_spark
from shopai_spark.tables import Lakehouse, TableRef
from shopai_spark.tracking import JobRun, end_abandoned_run, tracked_run

Section = TypeVar("Section")
log = logging.getLogger(__name__)



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
    ledger: RunLedger
    inputs: Versions = field(default_factory=dict)

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
        exist. Pins every table used at the version the last committed run that wrote it left
        (:meth:`~shopai_spark.runs.RunLedger.pinned`): :meth:`read` reads it there, and that version is
        logged. Raises NothingChanged when the job's last committed run read the same versions with
        the same settings and its outputs are untouched (``lakehouse.skip_unchanged_runs``). Returns
        the tables used."""
        missing = [ref for ref in required if not self.lakehouse.exists(ref)]
        if missing:
            names = ", ".join(str(ref) for ref in missing)
            raise MissingTableError(f"{self.job} needs {names}, not found in the lakehouse: run jobs/ingest.py "
                                    f"with the source that fills it first (or change the {self.job} settings)")
        used = [*required, *[ref for ref in optional if self.lakehouse.exists(ref)]]
        self.inputs.update(self.ledger.pinned(used))
        self.run.log_input_versions({ref: self.inputs[ref] for ref in used})
        if self.platform.lakehouse.skip_unchanged_runs:
            previous = self.ledger.unchanged(self.inputs)
            if previous is not None:
                raise NothingChanged(previous)
        return used

    def read(self, ref: TableRef) -> DataFrame:
        """An input table at its pinned version (:meth:`require_inputs`); other tables as they are now."""
        return self.lakehouse.read(ref, self.inputs.get(ref))


JobFunction = Callable[[JobContext[Any]], JobSummary]


@dataclass(frozen=True)
class Job:
    """A job: its ``name`` (MLflow tag, log prefix, ``jobs/<name>.py``), its ``run`` function and the
    ``section`` of the application config it reads (``als``, ``demand``, ...)."""

    name: str
    run: JobFunction
    section: str
    outputs: tuple[TableRef, ...] = ()
    appends: tuple[TableRef, ...] = ()


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
    closing ``<job> | finished in …`` step line (the pipeline prints its own progress line instead).

    The outputs change as one unit (:mod:`shopai_spark.runs`): abandoned runs of the job are undone
    first; when the job raises, or the driver gets SIGTERM (:class:`RunKilled`, the MLflow run ends
    ``KILLED``), its outputs are put back to their versions before the run; a run that finds nothing
    changed (:class:`NothingChanged`) writes nothing."""
    spark = spark or get_spark(platform.spark)
    lakehouse = Lakehouse(spark, platform.lakehouse)
    started = time.perf_counter()
    settings = flatten(config, f"{job.section}.")
    ledger = RunLedger(lakehouse, job.name, job.outputs, job.appends, platform.lakehouse.abandoned_run_hours,
                       settings_digest(settings))
    with killed_on_sigterm(), tracked_run(platform.tracking, job.name,
                                          redact_params({**flatten(platform), **settings})) as run:
        before = ledger.begin(run.run_id, on_abandoned=lambda run_id: end_abandoned_run(platform.tracking, run_id))
        ctx = JobContext(config=config, platform=platform, spark=spark, lakehouse=lakehouse, run=run, job=job.name,
                         ledger=ledger)
        try:
            summary = job.run(ctx)
        except NothingChanged as unchanged:
            ledger.skip(run.run_id, ctx.inputs)
            run.set_tags({"skipped_unchanged_since": unchanged.previous})
            summary = JobSummary(job=job.name, run_id=run.run_id, lines=[f"  {unchanged}"])
        except RunKilled:
            undo_after_sigterm(job.name, ledger, run.run_id, before)
            raise
        except Exception:
            ledger.roll_back(run.run_id, before)
            raise
        else:
            ledger.commit(run.run_id, ctx.inputs)
        seconds = time.perf_counter() - started
        run.log_metrics({"job_seconds": seconds})
    if finish_line:
        STEPS.info("%s | finished in %.1f s", job.name, seconds)
    return summary


def undo_after_sigterm(job: str, ledger: RunLedger, run_id: str, before: Versions) -> None:
    """Put the outputs back at once, without an end record: Spark work in flight may still commit, so
    the next start checks them again (as it does when the JVM went down with the signal)."""
    try:
        ledger.undo(run_id, before)
    except Exception:
        log.warning("%s: outputs not restored after SIGTERM; the next run restores them", job, exc_info=True)


def settings_digest(settings: dict[str, str]) -> str:
    """SHA-256 of a job's flattened settings and of the shopai_spark code: a run with the same digest
    computes the same outputs from the same inputs."""
    text = json.dumps(settings, sort_keys=True) + code_digest()
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def code_digest() -> str:
    """SHA-256 of every ``.py`` file of the installed shopai_spark package (also from a zip on
    ``--py-files``), so that changed code never counts as an unchanged run."""
    digest = hashlib.sha256()
    pending = [resources.files("shopai_spark")]
    while pending:
        folder = pending.pop()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                pending.append(entry)
            elif entry.name.endswith(".py"):
                digest.update(entry.name.encode() + entry.read_bytes())
    return digest.hexdigest()


@contextmanager
def killed_on_sigterm() -> Iterator[None]:
    """While the block runs in the main thread, SIGTERM raises :class:`RunKilled` there (elsewhere, and
    after the block, the previous handler applies)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_killed(signum: int, _frame: object) -> None:
        raise RunKilled(f"received signal {signum}")
    previous = signal.signal(signal.SIGTERM, raise_killed)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
