"""Validation rules → (good rows, rejected rows with a reason), and the quarantine table.

A :class:`Rule` is a reason and a boolean Column that is true when a row breaks the rule (a null
result counts as broken, so a rule can never let a row through by accident). :func:`split_valid`
evaluates all rules in one pass; a rejected row carries every reason it failed, joined by ``;``.

Every rejected row from any job lands in ``quarantine.rejected_rows``:
source, reason, source_file, record, record_id, job, run_id, quarantined_at. A raw export row
(:func:`raw_quarantine_rows`) keeps its raw text as ``record`` and is identified by its source, its
file's content checksum and its row number, so identical lines stay distinct and a file delivered
again under another name maps to the same rows; a table row (:func:`to_quarantine_rows`) is the row
as JSON, identified by a hash of source, file and record. Writes are an insert-only MERGE on
``record_id``, so re-running a job quarantines nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.tables import Lakehouse, TableRef

QUARANTINE = TableRef("quarantine", "rejected_rows")
QUARANTINE_DDL = (
    "source STRING NOT NULL, reason STRING NOT NULL, source_file STRING, record STRING NOT NULL, "
    "record_id STRING NOT NULL, job STRING NOT NULL, run_id STRING NOT NULL, quarantined_at TIMESTAMP NOT NULL"
)
REASONS = "_reasons"


@dataclass(frozen=True)
class Rule:
    """``reason`` is recorded for rows where ``violated`` is true or null."""

    reason: str
    violated: Column


def missing_reason(column: str) -> str:
    """The one reason name for a row without a usable ``column`` value: ``missing_<column>``."""
    return f"missing_{column}"


def is_missing(column: str, null_allowed: bool = False) -> Column:
    """True where ``column`` is empty or blank text, or null unless ``null_allowed``."""
    value = F.col(column)
    blank = F.coalesce(F.trim(value.cast("string")) == "", F.lit(False))
    return blank if null_allowed else value.isNull() | blank


def missing_value(column: str, null_allowed: bool = False) -> Rule:
    """Rule ``missing_<column>``: :func:`is_missing` (a null ``user_id`` on an order is a guest
    checkout, not a defect, where ``null_allowed``)."""
    return Rule(missing_reason(column), is_missing(column, null_allowed))


def with_reasons(df: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    """Add ``_reasons``: array<string> of the reasons each row fails (empty when valid)."""
    checks = [F.when(F.coalesce(rule.violated, F.lit(True)), F.lit(rule.reason)) for rule in rules]
    return df.withColumn(REASONS, F.filter(F.array(*checks), lambda r: r.isNotNull()))


def split_valid(df: DataFrame, rules: Sequence[Rule]) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into (rows passing every rule, rows failing any rule).

    The good frame has ``df``'s columns; the rejected frame has them plus ``reason`` (string,
    reasons joined by ``;``). Cache ``df`` first if it is expensive: both frames read it.
    """
    checked = with_reasons(df, rules)
    good = checked.filter(F.size(REASONS) == 0).drop(REASONS)
    rejected = checked.filter(F.size(REASONS) > 0).withColumn("reason", F.array_join(REASONS, ";")).drop(REASONS)
    return good, rejected


def to_quarantine_rows(rejected: DataFrame, source: str, job: str, run_id: str,
                       record_columns: Sequence[str] | None = None) -> DataFrame:
    """Shape rejected rows (with ``reason`` and optionally ``source_file``) as quarantine rows.

    ``record`` is the JSON of ``record_columns`` (default: every column except reason/source_file).
    """
    has_file = "source_file" in rejected.columns
    columns = list(record_columns or [c for c in rejected.columns if c not in ("reason", "source_file")])
    record = F.to_json(F.struct(*[F.col(c) for c in columns]), {"ignoreNullFields": "false"})
    source_file = F.col("source_file") if has_file else F.lit(None).cast("string")
    record_id = F.sha2(F.concat_ws("\u0001", F.lit(source), F.coalesce(source_file, F.lit("")), record), 256)
    return _quarantine_rows(rejected, source, job, run_id, source_file, record, record_id)


def raw_quarantine_rows(rejected: DataFrame, source: str, job: str, run_id: str) -> DataFrame:
    """Shape rejected raw export rows (``source_file``, ``file_checksum``, ``row_number``,
    ``record`` = the raw text, ``reason``) as quarantine rows; ``record_id`` = SHA-256 of source,
    file checksum and row number."""
    record_id = F.sha2(F.concat_ws("\u0001", F.lit(source), F.col("file_checksum"),
                                   F.col("row_number").cast("string")), 256)
    return _quarantine_rows(rejected, source, job, run_id, F.col("source_file"),
                            F.coalesce(F.col("record"), F.lit("")), record_id)


def _quarantine_rows(rejected: DataFrame, source: str, job: str, run_id: str, source_file: Column,
                     record: Column, record_id: Column) -> DataFrame:
    return rejected.select(
        F.lit(source).alias("source"),
        F.col("reason"),
        source_file.alias("source_file"),
        record.alias("record"),
        record_id.alias("record_id"),
        F.lit(job).alias("job"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("quarantined_at"),
    )


def write_quarantine(lakehouse: Lakehouse, parts: Sequence[DataFrame]) -> dict[str, int]:
    """The one quarantine writer: insert the quarantine rows of every frame in ``parts`` (see
    :func:`to_quarantine_rows`, :func:`raw_quarantine_rows`) whose record_id is not present yet, in
    one MERGE. Returns its row counts (:meth:`Lakehouse.merge`; nothing is written for no parts)."""
    if not parts:
        return {}
    rows = reduce(DataFrame.unionByName, parts)
    lakehouse.ensure(QUARANTINE, QUARANTINE_DDL)
    return lakehouse.merge(rows.dropDuplicates(["record_id"]), QUARANTINE, keys=["record_id"], update=False)


def quarantine_rejected(lakehouse: Lakehouse, rejected: dict[str, DataFrame], job: str, run_id: str,
                        source_prefix: str = "") -> dict[str, int]:
    """Merge every ``rejected`` frame (keyed by source name, with ``reason``) into the quarantine
    table as source ``source_prefix + name``. Returns ``{"<name>.<reason>": rows}``."""
    counts: dict[str, int] = {}
    parts = []
    for name, frame in rejected.items():
        found = count_by_reason(frame)
        counts.update({f"{name}.{reason}": n for reason, n in found.items()})
        if found:
            parts.append(to_quarantine_rows(frame, source_prefix + name, job, run_id))
    write_quarantine(lakehouse, parts)
    return counts


def count_by_reason(rejected: DataFrame) -> dict[str, int]:
    """``{reason: rows}`` over single reasons (a row failing two rules counts under both)."""
    return split_reasons(count_by_reasons(rejected))


def count_by_reasons(rejected: DataFrame) -> dict[str, int]:
    """``{reasons as written (joined by ';'): rows}``: each rejected row counts once, so the values
    add up to the rejected rows (one small aggregate)."""
    return {row["reason"]: int(row["count"]) for row in rejected.groupBy("reason").count().collect()}


def split_reasons(counts: dict[str, int]) -> dict[str, int]:
    """:func:`count_by_reasons` → counts per single reason."""
    single: dict[str, int] = {}
    for reasons, rows in counts.items():
        for reason in reasons.split(";"):
            single[reason] = single.get(reason, 0) + rows
    return single
