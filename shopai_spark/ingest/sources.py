"""Reading raw shop exports with an explicit schema and the configured column names.

Every field is read as a string (typed parsing happens in :mod:`shopai_spark.ingest.validate`, where
a value that does not parse becomes a quarantined row with a reason instead of a silent null).
Columns are renamed from the export's names to canonical names through ``SourceConfig.columns``.
Output columns: the canonical names (strings), ``source_file`` and, for JSON, ``_corrupt_record``
(the raw line when it was not valid JSON, else null).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from shopai_spark.config import SourceConfig

CORRUPT = "_corrupt_record"

EVENT_COLUMNS = ("user_id", "session_id", "sku", "event_type", "event_ts", "price")
ORDER_LINE_COLUMNS = ("order_id", "sku", "description", "quantity", "order_ts", "unit_price", "user_id", "country")
PRODUCT_COLUMNS = ("sku", "title", "category", "brand", "list_price")
OPTIONAL_COLUMNS = frozenset({"description", "country", "title", "category", "brand", "price"})


class SourceSchemaError(ValueError):
    """The export lacks a required column (message names the canonical and the export column)."""


def read_source(spark: SparkSession, source: SourceConfig, canonical: Sequence[str]) -> DataFrame:
    """Read ``source`` and return its rows with canonical string columns plus ``source_file``.

    Optional canonical columns missing from the export become nulls; a missing required column
    raises SourceSchemaError naming it.
    """
    export_names = {c: source.columns.get(c, c) for c in canonical}
    unknown = sorted(set(source.columns) - set(canonical))
    if unknown:
        raise SourceSchemaError(
            f"ingest column mapping names unknown canonical column(s) {unknown}; known: {list(canonical)}")
    if source.format == "csv":
        raw = (spark.read.option("header", True).option("sep", source.csv_delimiter)
               .option("encoding", source.encoding).option("mode", "PERMISSIVE").csv(source.path))
        raw = raw.withColumn(CORRUPT, F.lit(None).cast("string"))
    elif source.format == "json":
        schema = StructType([StructField(n, StringType()) for n in export_names.values()]
                            + [StructField(CORRUPT, StringType())])
        raw = (spark.read.schema(schema).option("mode", "PERMISSIVE")
               .option("columnNameOfCorruptRecord", CORRUPT).json(source.path))
    else:
        raw = spark.read.parquet(source.path).withColumn(CORRUPT, F.lit(None).cast("string"))

    present = set(raw.columns)
    columns = []
    for name, export in export_names.items():
        if export in present:
            columns.append(F.col(f"`{export}`").cast("string").alias(name))
        elif name in OPTIONAL_COLUMNS:
            columns.append(F.lit(None).cast("string").alias(name))
        else:
            raise SourceSchemaError(
                f"{source.path}: required column '{name}' (export column '{export}') not found; "
                f"columns present: {sorted(present - {CORRUPT})}. Map it with ingest.<source>.columns.{name}")
    return raw.select(*columns, F.col(CORRUPT), F.col("_metadata.file_path").alias("source_file"))
