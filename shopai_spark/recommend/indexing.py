"""String ids ↔ dense integer ids for ALS (which needs INT user and item columns).

The mappings are plain DataFrames (``user_id``/``user_idx`` and ``item_id``/``item_idx``) that the
job stores as gold.als_user_index and gold.als_item_index, so any score can be mapped back. Ids are
numbered 0..n-1 in sorted order with ``zipWithIndex`` (distributed; nothing is collected). Null ids
never reach this module (the quality rules quarantine them); more than 2**31-1 distinct ids raise
:class:`IdRangeError` instead of failing deep inside MLlib.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.recommend.config import INT_RANGE


class IdRangeError(ValueError):
    """More distinct ids than ALS's INT id columns can hold."""


def build_index(frame: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Distinct non-null ``id_col`` values of ``frame`` → (``id_col`` STRING, ``idx_col`` INT), dense
    from 0 in ascending id order. Raises IdRangeError beyond the INT range."""
    distinct = frame.select(F.col(id_col).cast("string").alias(id_col)).where(F.col(id_col).isNotNull()) \
        .distinct().orderBy(id_col)
    numbered = distinct.rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1]))
    index = frame.sparkSession.createDataFrame(numbered, f"{id_col} STRING, {idx_col} LONG")
    largest = index.agg(F.max(idx_col)).first()[0]
    if largest is not None and largest >= INT_RANGE:
        raise IdRangeError(f"{largest + 1:,} distinct {id_col} values exceed ALS's integer id range ({INT_RANGE:,})")
    return index.withColumn(idx_col, F.col(idx_col).cast("int"))


def to_indices(frame: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Add ``user_idx`` and ``item_idx`` to ``frame`` (user_id, item_id, ...) by inner joins with the
    indexes (rows whose ids are not indexed are dropped)."""
    return frame.join(users, "user_id").join(items, "item_id")


def to_ids(frame: DataFrame, users: DataFrame | None = None, items: DataFrame | None = None,
           item_idx_col: str = "item_idx", item_id_col: str = "item_id") -> DataFrame:
    """Map ``user_idx`` → ``user_id`` (when ``users`` given) and ``item_idx_col`` → ``item_id_col``
    (when ``items`` given); the idx columns are dropped."""
    if users is not None:
        frame = frame.join(users, "user_idx").drop("user_idx")
    if items is not None:
        renamed = items.select(F.col("item_idx").alias(item_idx_col), F.col("item_id").alias(item_id_col))
        frame = frame.join(F.broadcast(renamed), item_idx_col).drop(item_idx_col)
    return frame
