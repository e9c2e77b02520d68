"""The run ledger: a job's outputs become visible as one unit, and a killed run is undone.

Each table is atomic (a Delta commit), but a job writes several. The ledger, the Delta table
``ops.job_runs``, makes the set atomic. One row per event of a run:

* ``started``: written before the job runs, with the Delta version of every output table the job
  may write (null: the table does not exist yet);
* ``committed``: written last, after every output, with the versions the run read and wrote: the
  commit record;
* ``skipped``: the run found its inputs, settings and outputs as the job's last committed run left
  them, and wrote nothing (:class:`NothingChanged`);
* ``rolled_back``: the run failed and restored its outputs itself;
* ``recovered``: a later run of the job found this run started and never ended (killed, or its
  machine lost), restored its outputs and marked its MLflow run ``KILLED``.

At start (:meth:`RunLedger.begin`) a job recovers its own abandoned runs, and refuses to run next to
a run of the same job that is still alive (:class:`~shopai_spark.errors.RunInProgressError`). The
next job reads its inputs at the versions the last committed runs wrote (:meth:`RunLedger.pinned`),
so it never sees a half-written set even while the producer is running. Writing the ledger only
appends rows, so concurrent runs never conflict on it (creating it is retried like any other commit,
:func:`~shopai_spark.tables.retried`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.errors import RunInProgressError
from shopai_spark.tables import Lakehouse, TableRef, retried

log = logging.getLogger(__name__)

JOB_RUNS = TableRef("ops", "job_runs")
JOB_RUNS_DDL = ("job STRING NOT NULL, run_id STRING NOT NULL, event STRING NOT NULL, at TIMESTAMP NOT NULL, "
                "host STRING NOT NULL, pid INT NOT NULL, settings STRING, inputs MAP<STRING, BIGINT>, "
                "outputs MAP<STRING, BIGINT>")
# one small file per event: compacted by Delta as they accumulate
JOB_RUNS_PROPERTIES = {"delta.autoOptimize.autoCompact": "true"}
ENDED = ("committed", "skipped", "rolled_back", "recovered")

Versions = dict[TableRef, "int | None"]


@dataclass(frozen=True)
class OpenRun:
    """A run of the job that started and has not ended: its MLflow run id, start, driver and the
    versions its outputs had before it."""

    run_id: str
    started: dt.datetime
    host: str
    pid: int
    before: Versions

    def is_alive(self, stale_after: dt.timedelta) -> bool:
        """Alive: its driver process still runs on this machine (another process than this one, whose
        runs are never concurrent), or, on another machine, it started less than ``stale_after`` ago."""
        if self.host != socket.gethostname():
            return dt.datetime.now() - self.started < stale_after
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class NothingChanged(Exception):  # noqa: N818 - an outcome, not a failure
    """Raised by a job that finds nothing to do: its inputs, settings and outputs are as its last
    committed run (``previous``) left them, or ``reason`` says why else nothing is to be written."""

    def __init__(self, previous: str, reason: str | None = None):
        super().__init__(reason or f"inputs, settings and outputs unchanged since run {previous}: nothing written "
                                   f"(lakehouse.skip_unchanged_runs: false recomputes)")
        self.previous = previous


class UndeclaredOutputError(RuntimeError):
    """A job wrote a table that is neither among its outputs nor its appends (a bug in the job:
    the ledger could not undo that write)."""


class RunLedger:
    """The ledger of one job. ``outputs``: every table the job may write and no other job writes
    (undone by restoring their version); ``appends``: tables other jobs write too, to which the job
    only adds rows carrying its ``run_id`` (undone by deleting those rows); ``settings``: a digest
    of the job's config and code version, compared by :meth:`unchanged`."""

    def __init__(self, lakehouse: Lakehouse, job: str, outputs: Sequence[TableRef], appends: Sequence[TableRef],
                 stale_after_hours: float, settings: str = ""):
        self.lakehouse = lakehouse
        self.job = job
        self.outputs = tuple(outputs)
        self.appends = tuple(appends)
        self.stale_after = dt.timedelta(hours=stale_after_hours)
        self.settings = settings
        self.before: Versions = {}

    def begin(self, run_id: str, on_abandoned: Callable[[str], None]) -> Versions:
        """Recover this job's abandoned runs (their outputs restored, ``on_abandoned(run_id)`` called
        to end their MLflow run), refuse when another run of the job is alive, record ``started``.
        Returns the outputs' versions before this run."""
        seen = self._ledger_version()
        runs = self.open_runs()
        alive = self._alive(runs)
        if alive:
            raise RunInProgressError(self._in_progress(alive[0]))
        for run in sorted(runs, key=lambda r: r.started, reverse=True):   # the earliest run's versions last
            log.warning("%s: run %s started %s and never ended; restoring its outputs", self.job, run.run_id, run.started)
            self.undo(run.run_id, run.before)
            on_abandoned(run.run_id)
            self._append(run.run_id, "recovered", outputs=self.versions())
        before = self.before = self.versions()
        started = self._append(run_id, "started", outputs=before)
        if self.lakehouse.version(JOB_RUNS) != seen + len(runs) + 1:   # another run appended meanwhile
            earlier = [run for run in self._alive(self.open_runs())
                       if run.run_id != run_id and (run.started, run.run_id) < (started, run_id)]
            if earlier:   # two runs started at once: the later one leaves
                self._append(run_id, "rolled_back", outputs=before)
                raise RunInProgressError(self._in_progress(earlier[0]))
        return before

    def _ledger_version(self) -> int:
        """The ledger's current version, the ledger created first when there is none."""
        version = self.lakehouse.version(JOB_RUNS)
        if version is None:
            retried(lambda: self.lakehouse.ensure(JOB_RUNS, JOB_RUNS_DDL, properties=JOB_RUNS_PROPERTIES),
                    f"create {JOB_RUNS}")
            version = self.lakehouse.version(JOB_RUNS)
        return version

    def commit(self, run_id: str, inputs: Versions) -> None:
        """Record that ``run_id`` wrote all its outputs (their versions: the last this run wrote, else
        their version before it) and read ``inputs``: the commit record, written last."""
        declared = {*self.outputs, *self.appends, JOB_RUNS}
        undeclared = sorted(str(ref) for ref in self.lakehouse.written if ref not in declared)
        if undeclared:
            raise UndeclaredOutputError(
                f"{self.job} wrote {', '.join(undeclared)} without declaring it in its outputs or appends: "
                "a killed run would leave it from that run; declare it in the job's OUTPUTS or APPENDS")
        written = {ref: self.lakehouse.written.get(ref, version) for ref, version in self.before.items()}
        self._append(run_id, "committed", inputs=inputs, outputs=written)

    def skip(self, run_id: str, inputs: Versions) -> None:
        """Record that ``run_id`` ended without writing (:class:`NothingChanged`)."""
        self._append(run_id, "skipped", inputs=inputs, outputs=self.before)

    def unchanged(self, inputs: Versions) -> str | None:
        """The id of the job's last committed run when it ran with the same settings, read ``inputs``
        at the same versions and left the outputs at their versions now; else None."""
        last = (self.lakehouse.read(JOB_RUNS).filter((F.col("job") == self.job) & (F.col("event") == "committed"))
                .orderBy(F.col("at").desc()).limit(1).collect())
        if not last or last[0]["settings"] != self.settings:
            return None
        same_inputs = (last[0]["inputs"] or {}) == _names(inputs)
        same_outputs = (last[0]["outputs"] or {}) == _names(self.before)
        return last[0]["run_id"] if same_inputs and same_outputs and inputs else None

    def roll_back(self, run_id: str, before: Versions) -> None:
        """Undo what ``run_id`` wrote and record that it ended without committing."""
        self.undo(run_id, before)
        self._append(run_id, "rolled_back", outputs=self.versions())

    def undo(self, run_id: str, before: Versions) -> None:
        """Put every output back to its version in ``before`` (a table that did not exist is emptied)
        and delete the rows ``run_id`` added to the ``appends`` tables."""
        for ref, version in before.items():
            self.lakehouse.roll_back(ref, version)
        for ref in self.appends:
            self.lakehouse.delete_rows_of_run(ref, run_id)

    def versions(self) -> Versions:
        return {ref: self.lakehouse.version(ref) for ref in self.outputs}

    def pinned(self, refs: Sequence[TableRef]) -> Versions:
        """The version to read of each of ``refs``: the one the last committed run that wrote it
        left, or its latest version when no committed run of any job wrote it (a table from outside)."""
        committed = committed_versions(self.lakehouse, refs)
        return {ref: committed[ref] if ref in committed else self.lakehouse.version(ref) for ref in refs}

    def open_runs(self) -> list[OpenRun]:
        """Runs of this job with a ``started`` row and no end row."""
        if not self.lakehouse.exists(JOB_RUNS):
            return []
        events = self.lakehouse.read(JOB_RUNS).filter(F.col("job") == self.job)
        ended = F.max(F.col("event").isin(*ENDED).cast("int")).over(Window.partitionBy("run_id"))
        rows = events.withColumn("ended", ended).filter((F.col("ended") == 0) & (F.col("event") == "started")).collect()
        return [OpenRun(row["run_id"], row["at"], row["host"], row["pid"],
                        {_ref(name): version for name, version in (row["outputs"] or {}).items()})
                for row in rows]

    def _alive(self, runs: list[OpenRun]) -> list[OpenRun]:
        return [run for run in runs if run.is_alive(self.stale_after)]

    def _in_progress(self, run: OpenRun) -> str:
        return (f"another {self.job} run ({run.run_id}, started {run.started:%Y-%m-%d %H:%M:%S} by pid "
                f"{run.pid} on {run.host}) has not ended: wait for it to finish. If it is dead, the next run "
                f"restores its outputs once its process is gone (or {self.stale_after} after it started, "
                f"when it ran on another machine)")

    def _append(self, run_id: str, event: str, inputs: Versions | None = None,
                outputs: Versions | None = None) -> dt.datetime:
        """Append one event row (retried on a concurrent commit); returns its time (local, naive)."""
        at = dt.datetime.now().replace(microsecond=0)
        row = (self.job, run_id, event, at, socket.gethostname(), os.getpid(), self.settings, _names(inputs),
               _names(outputs))
        frame = self.lakehouse.spark.createDataFrame([row], JOB_RUNS_DDL)
        retried(lambda: self.lakehouse.append(frame, JOB_RUNS), f"record {event} in {JOB_RUNS}")
        return at


def committed_versions(lakehouse: Lakehouse, refs: Sequence[TableRef]) -> Versions:
    """Table → the version its last committed run wrote, for those of ``refs`` a committed run wrote."""
    if not lakehouse.exists(JOB_RUNS):
        return {}
    names = [str(ref) for ref in refs]
    rows = (lakehouse.read(JOB_RUNS).filter(F.col("event") == "committed")
            .select(F.explode("outputs").alias("table", "version"))
            .filter(F.col("table").isin(names) & F.col("version").isNotNull())
            .groupBy("table").agg(F.max("version").alias("version")).collect())   # versions only grow
    by_name = {str(ref): ref for ref in refs}
    return {by_name[row["table"]]: int(row["version"]) for row in rows}


def read_committed(lakehouse: Lakehouse, ref: TableRef) -> DataFrame:
    """``ref`` as its last committed run left it (its latest version when no run wrote it): what a
    reader who wants a consistent set of tables (a notebook, a report) reads."""
    return lakehouse.read(ref, committed_versions(lakehouse, [ref]).get(ref))


def _names(versions: Versions | None) -> dict[str, int | None] | None:
    return None if versions is None else {str(ref): version for ref, version in versions.items()}


def _ref(name: str) -> TableRef:
    layer, table = name.split(".", 1)
    return TableRef(layer, table)
