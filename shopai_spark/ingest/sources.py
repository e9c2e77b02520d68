"""Reading raw shop exports: every record of every file, with its identity, as canonical strings.

Files are listed with Spark's ``binaryFile`` source and parsed on the executors, one file per task
(:mod:`shopai_spark.ingest.records`): CSV with Python's RFC-4180 reader (quotes, doubled quotes or an
escape character, fields spanning lines, any encoding, a byte-order mark), JSON lines with Spark's
own parser, Excel with openpyxl. Parquet is read by Spark directly. Every field is kept as a string
(typed parsing happens in :mod:`shopai_spark.ingest.validate`, where a value that does not parse
becomes a quarantined row with a reason instead of a silent null).

A raw row's identity is ``(file_checksum, row_number)``: the SHA-256 of the file's bytes and the
line (CSV, JSON) or sheet row (Excel) where the record starts, or the row index (Parquet). The same
file delivered twice under two names is read once. Output of :func:`read_source`: the canonical
columns (strings), ``_corrupt_record`` (why the record could not be split into the header's fields,
else null), ``record`` (the raw text of the record), ``source_file``, ``file_checksum`` and
``row_number``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from shopai_spark.errors import EmptyInputError, InputError, SourceSchemaError
from shopai_spark.ingest import records
from shopai_spark.ingest.config import SourceConfig

log = logging.getLogger(__name__)

CORRUPT = records.CORRUPT
ROW_ID_COLUMNS = ("source_file", "file_checksum", "row_number")

EVENT_COLUMNS = ("user_id", "session_id", "sku", "event_type", "event_ts", "price")
ORDER_LINE_COLUMNS = ("order_id", "sku", "description", "quantity", "order_ts", "unit_price", "user_id", "country")
PRODUCT_COLUMNS = ("sku", "title", "category", "brand", "list_price")
# columns that are nullable in silver, so an export may lack them (user_id: guest checkouts)
OPTIONAL_COLUMNS = {
    "events": frozenset({"price"}),
    "orders": frozenset({"description", "country", "user_id"}),
    "products": frozenset({"title", "category", "brand", "list_price"}),
}
CANONICAL_COLUMNS = {"events": EVENT_COLUMNS, "orders": ORDER_LINE_COLUMNS, "products": PRODUCT_COLUMNS}


@dataclass(frozen=True)
class RawSource:
    """One source's raw records (see the module docstring for columns) and what was read."""

    name: str
    records: DataFrame  # persisted: unpersist when done
    rows: int
    files: int
    notes: tuple[str, ...] = ()


def read_source(spark: SparkSession, name: str, source: SourceConfig) -> RawSource:
    """Read source ``name`` (events, orders or products) as configured by ``source``.

    Raises InputError (missing path, no files), SourceSchemaError (a required column missing, or the
    mapping names an unknown canonical column) and EmptyInputError (files without any record).
    The records are persisted: unpersist them when done.
    """
    canonical = CANONICAL_COLUMNS[name]
    unknown = sorted(set(source.columns) - set(canonical))
    if unknown:
        raise SourceSchemaError(f"ingest.{name}.columns names unknown canonical column(s) {unknown}; "
                                f"known: {list(canonical)}")
    export = {c: source.columns.get(c, c) for c in canonical}
    paths = distinct_files(spark, name, source)
    if source.format == "parquet":
        parsed = _parquet_records(spark, paths, export)
    else:
        parsed = _file_records(spark, paths, source, export)
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    headers = parsed.where(F.col("row_number") == 0).select("source_file", "record").collect()
    data = parsed.where(F.col("row_number") > 0)
    notes = _check_headers(name, source, headers, export)
    if source.format == "json":
        data = _parse_json(data, export)
    data = _normalise_ids(_canonical(data, name, export), source.normalize_ids).persist(StorageLevel.MEMORY_AND_DISK)
    rows = data.count()   # the records are cached parsed; the raw split is dropped
    parsed.unpersist()
    if rows == 0:
        data.unpersist()
        raise EmptyInputError(f"ingest: the {name} source {source.path} has no rows "
                              f"({len(paths)} file(s), all empty or header only); nothing was written")
    return RawSource(name, data, rows, len(paths), tuple(notes))


def distinct_files(spark: SparkSession, name: str, source: SourceConfig) -> list[str]:
    """The files of ``source.path`` (file, folder or glob), one per distinct content: a file whose
    bytes equal an earlier one's (by path order) is left out. Only the file listing and the
    checksums of files of equal length reach the driver."""
    try:
        listing = spark.read.format("binaryFile").load(source.path)
        files = listing.select("path", "length").orderBy("path").collect()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            raise InputError(f"ingest: the {name} source path {source.path} does not exist "
                             f"(ingest.{name}.path); set it, or set ingest.{name}: null to skip it") from None
        raise
    if not files:
        raise EmptyInputError(f"ingest: the {name} source {source.path} holds no non-empty file; "
                              "nothing was written")
    by_length: dict[int, list[str]] = {}
    for row in files:
        by_length.setdefault(row["length"], []).append(row["path"])
    suspects = [p for group in by_length.values() if len(group) > 1 for p in group]
    duplicates: set[str] = set()
    if suspects:
        sums = (listing.where(F.col("path").isin(suspects)).select("path", F.sha2("content", 256).alias("sha"))
                .orderBy("path").collect())
        seen: set[str] = set()
        for row in sums:
            if row["sha"] in seen:
                duplicates.add(row["path"])
                log.warning("ingest %s: %s has the same content as an earlier file; read once", name, row["path"])
            seen.add(row["sha"])
    return [row["path"] for row in files if row["path"] not in duplicates]


def _file_records(spark: SparkSession, paths: list[str], source: SourceConfig, export: dict[str, str]) -> DataFrame:
    """CSV, JSON lines or Excel files → one row per record plus one header row (row_number 0) per
    file, parsed on the executors by :func:`records.split_files`."""
    columns = [] if source.format == "json" else list(export.values())
    options = records.ParseOptions(
        format=source.format, columns=tuple(columns), delimiter=source.csv_delimiter, quote=source.quote,
        escape=source.escape, multiline=source.multiline, encoding=source.encoding,
        unwrap_quoted_lines=source.unwrap_quoted_lines, sheet=source.sheet)
    files = spark.read.format("binaryFile").load(paths).select(
        F.col("path").alias("source_file"), F.sha2("content", 256).alias("file_checksum"), "content")
    return files.mapInPandas(partial(records.split_files, options=options), records.output_schema(columns))


def _parquet_records(spark: SparkSession, paths: list[str], export: dict[str, str]) -> DataFrame:
    """Parquet files → the same columns as :func:`_file_records` (row_number = row index + 1; one
    header row per file listing its columns)."""
    raw = spark.read.parquet(*paths)
    present = set(raw.columns)
    sums = spark.read.format("binaryFile").load(paths).select(
        F.col("path").alias("source_file"), F.sha2("content", 256).alias("file_checksum"))
    values = [F.col(f"`{c}`").cast("string").alias(c) if c in present else F.lit(None).cast("string").alias(c)
              for c in dict.fromkeys(export.values())]
    data = raw.select(
        *values, F.col("_metadata.file_path").alias("source_file"),
        (F.col("_metadata.row_index") + 1).cast("long").alias("row_number"))
    record = F.to_json(F.struct(*[F.col(f"`{c}`") for c in dict.fromkeys(export.values())]))
    data = data.join(F.broadcast(sums), "source_file").select(
        *[F.col(f"`{c}`") for c in dict.fromkeys(export.values())], F.lit(None).cast("string").alias(CORRUPT),
        record.alias("record"), "source_file", "file_checksum", "row_number")
    header = ",".join(raw.columns)
    headers = sums.select(
        *[F.lit(None).cast("string").alias(c) for c in dict.fromkeys(export.values())],
        F.lit(None).cast("string").alias(CORRUPT), F.lit(header).alias("record"), "source_file", "file_checksum",
        F.lit(0).cast("long").alias("row_number"))
    return data.unionByName(headers)


def _check_headers(name: str, source: SourceConfig, headers: list, export: dict[str, str]) -> list[str]:
    """Fail when a file lacks a required export column; return notes on empty files and optional
    columns that are absent (they become nulls)."""
    notes = []
    optional = OPTIONAL_COLUMNS[name]
    if source.format == "json":
        return notes
    for row in headers:
        if row["record"] is None:
            notes.append(f"{row['source_file']}: empty file (no header), skipped")
            continue
        present = set(records.split_header(row["record"], source.csv_delimiter if source.format == "csv" else ","))
        for canonical, column in export.items():
            if column in present:
                continue
            if canonical not in optional:
                raise SourceSchemaError(
                    f"ingest: {row['source_file']}: required column '{canonical}' (export column '{column}') "
                    f"not found; columns present: {sorted(present)}. Map it with ingest.{name}.columns.{canonical}")
            note = f"optional column '{canonical}' (export column '{column}') absent: left null"
            if note not in notes:
                notes.append(note)
    return notes


def _parse_json(data: DataFrame, export: dict[str, str]) -> DataFrame:
    """JSON lines (``record``) → one string column per export field; a line that is not a JSON
    object gets ``_corrupt_record``."""
    fields = list(dict.fromkeys(export.values()))
    schema = StructType([StructField(c, StringType()) for c in fields] + [StructField(CORRUPT, StringType())])
    parsed = F.from_json("record", schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    not_object = ~F.ltrim("record").startswith("{")
    return data.withColumn("_json", parsed).select(
        *[F.col("_json")[c].alias(c) for c in fields],
        F.when(not_object | F.col("_json")[CORRUPT].isNotNull(), F.lit("not a JSON object")).alias(CORRUPT),
        "record", *ROW_ID_COLUMNS)


def _canonical(data: DataFrame, name: str, export: dict[str, str]) -> DataFrame:
    """Export columns → canonical names (an optional column absent from the export is null)."""
    present = set(data.columns)
    columns = [F.col(f"`{export[c]}`").alias(c) if export[c] in present else F.lit(None).cast("string").alias(c)
               for c in CANONICAL_COLUMNS[name]]
    return data.select(*columns, CORRUPT, "record", *ROW_ID_COLUMNS)


def _normalise_ids(data: DataFrame, columns: Sequence[str]) -> DataFrame:
    """For each canonical column in ``columns``: an integral number written with a zero fraction
    (``17850.0``) loses it (``17850``), as some CSV exports write ids that Excel writes ``17850``."""
    for column in columns:
        data = data.withColumn(column, F.regexp_replace(column, r"^\s*(-?\d+)\.0*\s*$", "$1"))
    return data
