"""Delta tables of the lakehouse: addressing, reads, safe writes, versions for lineage.

Tables are named ``(layer, name)`` with layer one of bronze, silver, gold, quarantine, ops. Depending on
:class:`~shopai_spark.config.LakehouseConfig` a table is a path ``<root>/<layer>/<name>`` or a catalog
table ``<catalog>.<schema_prefix><layer>.<name>``; code never builds paths itself.

Writes are Delta transactions, so each table moves from one version to the next or not at all.
:meth:`Lakehouse.overwrite` also refuses an empty DataFrame (a failed or empty run never replaces
the last good output) and :meth:`Lakehouse.merge` makes re-runs on the same input idempotent. A set
of tables written by one job is made atomic one level up, by the run ledger (:mod:`shopai_spark.runs`),
which puts them back with :meth:`Lakehouse.roll_back`. A commit that loses a race with another writer
is retried (:func:`retried`).
Every Delta operation is Spark SQL (``DESCRIBE HISTORY``, ``MERGE INTO``, ``RESTORE``) or the
DataFrame writer, so it runs the same on a classic session and on Spark Connect.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopai_spark.config import LakehouseConfig
from shopai_spark.errors import ConcurrentWriteError, EmptyOutputError, MissingTableError

__all__ = ["EmptyOutputError", "Lakehouse", "RowsFrom", "TableRef", "TableWrite", "retried", "with_run_metadata"]

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")
# what Delta answers for DESCRIBE HISTORY of a path that is not (yet) a Delta table
NOT_A_DELTA_TABLE = {"DELTA_TABLE_ONLY_OPERATION", "DELTA_MISSING_DELTA_TABLE", "DELTA_PATH_DOES_NOT_EXIST",
                     "PATH_NOT_FOUND"}


@dataclass(frozen=True)
class TableRef:
    """A table's layer and name, e.g. ``TableRef("gold", "user_recommendations")``."""

    layer: str
    name: str

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"unknown layer {self.layer!r}; expected one of {LAYERS}")

    def __str__(self) -> str:
        return f"{self.layer}.{self.name}"


class Lakehouse:
    """Reads and writes the project's Delta tables for one SparkSession and config."""

    def __init__(self, spark: SparkSession, config: LakehouseConfig):
        if (config.root is None) == (config.catalog is None):
            raise ValueError("lakehouse: set exactly one of 'root' (paths) or 'catalog' (catalog tables)")
        self.spark = spark
        self.config = config
        self.written: dict[TableRef, int] = {}   # the version of each table's last write through this object

    # --- addressing ------------------------------------------------------------------------
    def location(self, ref: TableRef) -> str:
        """Path or fully qualified catalog name of ``ref``."""
        if self.config.root is not None:
            root = self.config.root.rstrip("/")
            if not re.match(r"^[A-Za-z][\w+.-]*:", root):   # a local path: SQL's delta.`path` needs it absolute
                root = os.path.abspath(root)
            return f"{root}/{ref.layer}/{ref.name}"
        return f"{self.config.catalog}.{self.config.schema_prefix}{ref.layer}.{ref.name}"

    @property
    def uses_paths(self) -> bool:
        return self.config.root is not None

    # --- reads -----------------------------------------------------------------------------
    def exists(self, ref: TableRef) -> bool:
        return self.version(ref) is not None

    def read(self, ref: TableRef, version: int | None = None) -> DataFrame:
        """The table as a DataFrame (optionally as of ``version``); clear error if missing."""
        if not self.exists(ref):
            raise MissingTableError(
                f"table {ref} not found at {self.location(ref)}: run the job that writes it first"
            )
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if self.uses_paths:
            return reader.load(self.location(ref))
        return reader.table(self.location(ref))

    def version(self, ref: TableRef) -> int | None:
        """Current Delta version of ``ref``, or None when the table does not exist."""
        if not self.uses_paths and not self.spark.catalog.tableExists(self.location(ref)):
            return None
        try:
            latest = self.history(ref, 1)
        except AnalysisException as error:
            if error.getCondition() in NOT_A_DELTA_TABLE:
                return None
            raise
        return int(latest[0]["version"]) if latest else None

    def is_empty(self, ref: TableRef) -> bool:
        """True when the existing table ``ref`` holds no data file (Delta metadata, no scan)."""
        return int(self.spark.sql(f"DESCRIBE DETAIL {self._sql_name(ref)}").first()["numFiles"]) == 0

    def history(self, ref: TableRef, limit: int) -> list:
        """The newest ``limit`` rows of ``DESCRIBE HISTORY`` (version, operation, operationMetrics, ...)."""
        return self.spark.sql(f"DESCRIBE HISTORY {self._sql_name(ref)} LIMIT {int(limit)}").collect()

    # --- writes ----------------------------------------------------------------------------
    def ensure(self, ref: TableRef, schema_ddl: str, constraints: dict[str, str] | None = None,
               properties: dict[str, str] | None = None) -> None:
        """Create ``ref`` with ``schema_ddl`` (``"a STRING NOT NULL, b INT"``), CHECK constraints (name →
        SQL condition) and table ``properties`` if it does not exist yet, in one Delta commit: the
        constraints are the ``delta.constraints.<name>`` table properties that ``ALTER TABLE ADD
        CONSTRAINT`` would set one commit each. Existing tables are left alone.

        When another writer creates the same table at the same instant, Delta skips this create (the
        other's log folder is there, its first commit not yet), refuses it
        (``DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION``) or loses the commit race
        (``ProtocolChangedException``); each way this waits until the table has its first commit, up
        to the sum of :data:`RETRY_SECONDS`, so that it exists on return."""
        if self.exists(ref):
            return
        settings = {**{f"delta.constraints.{name}": expr for name, expr in (constraints or {}).items()},
                    **(properties or {})}
        listed = ", ".join(f"{_sql_string(key)} = {_sql_string(value)}" for key, value in settings.items())
        try:
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self._sql_name(ref)} ({schema_ddl}) USING DELTA"
                           + (f" TBLPROPERTIES ({listed})" if listed else ""))
            created = True
        except Exception as error:
            if not created_elsewhere(error):
                raise
            log.info("%s is being created by another writer; waiting for its first commit", ref)
            created = False
        for wait in (*RETRY_SECONDS, None):
            if self.exists(ref):
                break
            if wait is None:
                raise ConcurrentWriteError(f"create {ref}: another writer began creating {self.location(ref)} and "
                                           f"has not committed it within {sum(RETRY_SECONDS):.0f} s; run the job again")
            time.sleep(wait)
        if created:
            self.written[ref] = self.version(ref)

    def append(self, df: DataFrame, ref: TableRef) -> None:
        """Append ``df``'s rows to the existing table ``ref`` (a blind append: it never conflicts with
        another append)."""
        writer = df.write.format("delta").mode("append")
        if self.uses_paths:
            writer.save(self.location(ref))
        else:
            writer.saveAsTable(self.location(ref))

    def overwrite(self, df: DataFrame, ref: TableRef, partition_by: Sequence[str] = (),
                  replace: RowsFrom | None = None, allow_empty: bool = False) -> int:
        """Atomically replace the table (or only its rows in ``replace``, Delta's replaceWhere) with ``df``.

        Raises EmptyOutputError when ``df`` has no rows unless ``allow_empty``; the table then stays
        at its previous version. Returns the new table version.
        """
        if not allow_empty and df.isEmpty():
            raise EmptyOutputError(f"refusing to overwrite {ref} with an empty result; previous version kept")
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", replace is None)
        if replace is not None:
            writer = writer.option("replaceWhere", replace.predicate())
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if self.uses_paths:
            writer.save(self.location(ref))
        else:
            writer.saveAsTable(self.location(ref))
        version = self.written[ref] = self.version(ref)
        log.info("wrote %s (version %s)", ref, version)
        return version

    def merge(self, df: DataFrame, ref: TableRef, keys: Sequence[str], update: bool = True) -> dict[str, int]:
        """Upsert ``df`` into ``ref`` on ``keys`` (insert-only when ``update`` is False).

        The table must exist (see :meth:`ensure`). Only the rows of ``df`` that change the table take
        part (a new key; with ``update``, also a key whose other values differ), and when there are
        none nothing is committed: re-merging the same rows adds no table version (a MERGE that
        matches rows commits a version even when it changes none). Returns the MERGE's own row counts
        as numTargetRowsInserted, numTargetRowsUpdated, numTargetRowsDeleted (empty when nothing was
        committed). A commit that loses a race with another writer is :func:`retried`.
        """
        if self.is_empty(ref):               # a new table: every row is new, no comparison needed
            return self._merge_changes(df, ref, keys, update)
        compared = list(df.columns) if update else list(keys)
        present = self.read(ref).select(*compared)
        same = [F.col(f"s.`{c}`").eqNullSafe(F.col(f"t.`{c}`")) for c in compared]
        changes = df.alias("s").join(present.alias("t"), same, "left_anti").persist(StorageLevel.MEMORY_AND_DISK)
        try:
            return self._merge_changes(changes, ref, keys, update)
        finally:
            changes.unpersist()

    def _merge_changes(self, changes: DataFrame, ref: TableRef, keys: Sequence[str], update: bool) -> dict[str, int]:
        """:meth:`merge` of rows known to change the table (none: nothing committed, ``{}``)."""
        if changes.isEmpty():
            log.info("merged into %s: no new or changed rows, nothing committed", ref)
            return {}
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        matched = "WHEN MATCHED THEN UPDATE SET * " if update else ""
        source = f"_merge_source_{uuid.uuid4().hex}"
        changes.createOrReplaceTempView(source)
        try:
            counts = retried(lambda: self.spark.sql(f"MERGE INTO {self._sql_name(ref)} AS t USING {source} AS s ON "
                                                    f"{condition} {matched}WHEN NOT MATCHED THEN INSERT *").first(),
                             f"merge into {ref}")
        finally:
            self.spark.catalog.dropTempView(source)
        # the counts come from this MERGE's own result: the newest history entry may be another
        # writer's commit by now (the quarantine has several writers); the version is the one after
        self.written[ref] = self.version(ref)
        result = {name: int(counts[column]) for name, column in MERGE_COUNTS.items()}
        log.info("merged into %s: %s", ref, result)
        return result

    def overwrite_all(self, writes: Sequence[TableWrite]) -> None:
        """Overwrite several tables in order (each as :meth:`overwrite`). Each write is atomic; the
        set is made atomic by the job's run ledger (:mod:`shopai_spark.runs`)."""
        for w in writes:
            self.overwrite(w.frame, w.ref, partition_by=w.partition_by, replace=w.replace)

    def roll_back(self, ref: TableRef, version: int | None) -> None:
        """Put ``ref`` back to its content at ``version``; ``None`` (the table did not exist) empties it.
        Nothing is committed when the table already holds that content (it is at ``version``, or its
        last commit restored it to ``version``, or it is empty and ``version`` is None)."""
        if version is None:
            if self.exists(ref) and not self.is_empty(ref):
                log.warning("emptying %s: it did not exist before the run that wrote it", ref)
                self.spark.sql(f"DELETE FROM {self._sql_name(ref)}")
            return
        latest = self.history(ref, 1)[0]
        restored_to = (latest["operationParameters"] or {}).get("version") if latest["operation"] == "RESTORE" else None
        if int(latest["version"]) != version and restored_to != str(version):
            log.warning("restoring %s to version %s", ref, version)
            self.spark.sql(f"RESTORE TABLE {self._sql_name(ref)} TO VERSION AS OF {int(version)}")

    def delete_rows_of_run(self, ref: TableRef, run_id: str) -> None:
        """Delete the rows of ``ref`` whose ``run_id`` column is ``run_id`` (nothing committed when
        there are none, or no table)."""
        if self.exists(ref) and not self.read(ref).filter(F.col("run_id") == run_id).isEmpty():
            log.warning("deleting the rows run %s added to %s", run_id, ref)
            self.spark.sql(f"DELETE FROM {self._sql_name(ref)} WHERE run_id = {_sql_string(run_id)}")

    def _sql_name(self, ref: TableRef) -> str:
        return f"delta.`{self.location(ref)}`" if self.uses_paths else self.location(ref)


@dataclass(frozen=True)
class RowsFrom:
    """The rows of a table whose ``column`` is at least ``start`` (a date or an integer): the slice an
    incremental overwrite replaces. The predicate is built here from typed values, never from text."""

    column: str
    start: dt.date | int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.column):
            raise ValueError(f"RowsFrom: not a plain column name: {self.column!r}")
        if isinstance(self.start, bool) or not isinstance(self.start, dt.date | int):
            raise TypeError(f"RowsFrom: start must be a date or an int, got {type(self.start).__name__}")

    def predicate(self) -> str:
        """Spark SQL ``column >= literal`` (a ``DATE'…'`` literal for dates)."""
        literal = f"DATE'{self.start.isoformat()}'" if isinstance(self.start, dt.date) else str(int(self.start))
        return f"`{self.column}` >= {literal}"


@dataclass(frozen=True)
class TableWrite:
    """One output of :meth:`Lakehouse.overwrite_all`: ``frame`` replaces ``ref`` (or only its rows in
    ``replace``), partitioned by ``partition_by``."""

    frame: DataFrame
    ref: TableRef
    partition_by: Sequence[str] = ()
    replace: RowsFrom | None = None


def with_run_metadata(df: DataFrame, run_id: str, generated_at: Column | None = None) -> DataFrame:
    """Append ``run_id`` (MLflow run) and ``generated_at`` (timestamp) columns, as every gold table has."""
    return df.withColumn("run_id", F.lit(run_id)).withColumn(
        "generated_at", generated_at if generated_at is not None else F.current_timestamp()
    )


def _sql_string(text: str) -> str:
    """``text`` as a Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# what Delta names a commit that lost a race with another writer (class names on a classic session,
# error conditions on Spark Connect)
CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
             "ConcurrentTransactionException", "ConcurrentWriteException", "ProtocolChangedException",
             "MetadataChangedException", "DELTA_CONCURRENT_", "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
# the row counts a MERGE returns, under the names of Delta's operation metrics
MERGE_COUNTS = {"numTargetRowsInserted": "num_inserted_rows", "numTargetRowsUpdated": "num_updated_rows",
                "numTargetRowsDeleted": "num_deleted_rows"}
Result = TypeVar("Result")


def conflicted(error: Exception) -> bool:
    """True when ``error`` is Delta's answer to a commit that lost a race with another writer."""
    return any(marker in f"{type(error).__name__}: {error}" for marker in CONFLICTS)


def created_elsewhere(error: Exception) -> bool:
    """True when a ``CREATE TABLE`` failed because another writer is creating the same table: Delta
    refuses the non-empty location, or the create lost the commit race."""
    return conflicted(error) or (isinstance(error, AnalysisException)
                                 and error.getCondition() == "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION")


def retried(commit: Callable[[], Result], what: str) -> Result:
    """Run ``commit`` (one Delta commit); when it loses a race with another writer, wait and run it
    again, up to len(RETRY_SECONDS) times (0.5 s doubling). Raises ConcurrentWriteError (one line,
    naming ``what``) when it still conflicts; other errors pass through."""
    attempt = 0
    while True:
        try:
            return commit()
        except Exception as error:
            if not conflicted(error):
                raise
            if attempt == len(RETRY_SECONDS):
                raise ConcurrentWriteError(f"{what}: still conflicting with another writer after {attempt} "
                                           "retries; run it again when the other job has finished") from error
            log.warning("%s conflicted with another writer (%s); retry %d in %.1f s",
                        what, type(error).__name__, attempt + 1, RETRY_SECONDS[attempt])
            time.sleep(RETRY_SECONDS[attempt])
            attempt += 1
