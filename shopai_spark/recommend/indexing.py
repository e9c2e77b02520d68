"""String ids ↔ dense integer ids for ALS (which needs INT user and item columns).

The mappings are plain DataFrames (``user_id``/``user_idx`` and ``item_id``/``item_idx``) that the
job stores as gold.als_user_index and gold.als_item_index, so any score can be mapped back. Ids are
numbered 0..n-1 with DataFrame operations only (no RDD, so it runs on Spark Connect): each id falls
in one of ``spark.sql.shuffle.partitions`` hash buckets, its number is the count of ids in earlier
buckets plus its rank (by id) inside its bucket. Bucket and rank are functions of the ids alone, so
the numbering is the same however often or wherever the plan is evaluated; only one count per
bucket reaches the driver. Null ids never reach this module (the quality rules quarantine them);
more than 2**31-1 distinct ids raise :class:`IdRangeError` instead of failing deep inside MLlib.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.recommend.config import INT_RANGE


class IdRangeError(ValueError):
    """More distinct ids than ALS's INT id columns can hold."""


def build_index(frame: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Distinct non-null ``id_col`` values of ``frame`` → (``id_col`` STRING, ``idx_col`` INT), dense
    from 0, ordered by (hash bucket, id). Raises IdRangeError beyond the INT range."""
    buckets = int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    ids = frame.select(F.col(id_col).cast("string").alias(id_col)).where(F.col(id_col).isNotNull()).distinct() \
        .withColumn("_bucket", F.pmod(F.xxhash64(id_col), F.lit(buckets)).cast("int"))
    sizes = dict(ids.groupBy("_bucket").count().collect())   # at most `buckets` rows
    offsets, total = [], 0
    for bucket in range(buckets):
        offsets.append(total)
        total += sizes.get(bucket, 0)
    if total > INT_RANGE:
        raise IdRangeError(f"{total:,} distinct {id_col} values exceed ALS's integer id range ({INT_RANGE:,})")
    rank = F.row_number().over(Window.partitionBy("_bucket").orderBy(id_col)) - 1
    offset = F.element_at(F.array(*(F.lit(o) for o in offsets)), F.col("_bucket") + 1)
    return ids.select(id_col, (offset + rank).cast("int").alias(idx_col))


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
