"""Fast top-N for every user (and similar items) with numpy inside ``mapInPandas``.

MLlib's ``recommendForAllUsers`` cross-joins factor blocks through the shuffle. Here the item
factors (one float32 matrix: items x rank, 5 MB for 20,000 items at rank 64) travel inside the
scoring function: Spark ships a Python function's pickled bytes once per stage (classic PySpark
broadcasts any function over 1 MB; Spark Connect sends it in the plan), so no ``SparkContext`` is
needed and the same code runs on Spark Connect. Each task scores blocks of ``block_size`` users
with one matrix product, masks excluded items with -inf and keeps the top k with
:func:`top_k_rows` (chunk maxima bound the k-th score, then only the few candidates above that
bound are sorted). The result has
the same rows as ``recommendForAllUsers`` (ties in score may be ordered differently).

Output frames are long: query id, ``rank`` (1..k), item id, ``score`` (DOUBLE).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


@dataclass(frozen=True)
class ItemFactors:
    """Item ids (ascending int) and their factor vectors (float32, one row per id)."""

    ids: np.ndarray
    vectors: np.ndarray

    def positions(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each id in ``vectors``; -1 for ids without factors."""
        pos = np.searchsorted(self.ids, item_ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[pos] == item_ids, pos, -1)

    def normalized(self) -> ItemFactors:
        """Unit-length vectors (zero vectors stay zero): dot products become cosine similarities."""
        return ItemFactors(self.ids, _unit_rows(self.vectors))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def collect_item_factors(factors: DataFrame, id_col: str = "id", features_col: str = "features") -> ItemFactors:
    """An ALS model's ``itemFactors`` (id, features) → :class:`ItemFactors` on the driver.

    Item factors are as large as the catalogue, not the user base, so they fit on the driver."""
    table = factors.select(id_col, features_col).toPandas().sort_values(id_col)
    rank = len(table[features_col].iloc[0]) if len(table) else 0
    vectors = np.stack(table[features_col].to_numpy()).astype(np.float32) if len(table) \
        else np.zeros((0, rank), np.float32)
    return ItemFactors(table[id_col].to_numpy(dtype=np.int64), vectors)


CHUNKS_PER_K = 32   # top_k_rows: chunks per wanted item when it bounds the k-th score by chunk maxima


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the positions and values of the k largest scores, best first; equal scores: lower
    position first. ``-inf`` marks excluded items (kept only when a row has fewer finite scores).

    Instead of a partition of every row: the row's first ``size * chunks`` columns are cut into
    ``chunks = CHUNKS_PER_K * k`` strided chunks (column j in chunk j % chunks). The k-th largest
    chunk maximum ``t`` is <= the row's k-th largest score (the k chunks with maxima >= t hold k
    distinct scores >= t), so the answer lies in the chunks whose maximum is >= t plus the few tail
    columns, and only their scores >= t are sorted. Cost per block: one max over the block (a
    vectorised elementwise maximum of ``size`` slabs) and a sort of a few candidates per row.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k == 0:
        return np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), scores.dtype)
    chunks = CHUNKS_PER_K * k
    if n_items < 2 * chunks:   # narrow rows: every score is a candidate
        rows, cols = np.divmod(np.arange(n_rows * n_items), n_items)
        values = scores.ravel()
    else:
        scores = np.ascontiguousarray(scores)
        size = n_items // chunks
        step = scores.strides[1]
        grid = np.lib.stride_tricks.as_strided(scores, shape=(n_rows, size, chunks),
                                               strides=(scores.strides[0], chunks * step, step), writeable=False)
        maxima = grid.max(axis=1)
        threshold = np.partition(maxima, chunks - k, axis=1)[:, chunks - k]
        pair_rows, pair_chunks = np.nonzero(maxima >= threshold[:, None])
        tail = np.arange(size * chunks, n_items)
        values = np.concatenate([grid[pair_rows, :, pair_chunks].ravel(), scores[:, tail].ravel()])
        cols = np.concatenate([(pair_chunks[:, None] + np.arange(size) * chunks).ravel(), np.tile(tail, n_rows)])
        rows = np.concatenate([np.repeat(pair_rows, size), np.repeat(np.arange(n_rows), len(tail))])
        keep = values >= threshold[rows]
        rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)   # position among the row's candidates
    keep = rank < k
    return cols[keep].reshape(n_rows, k).astype(np.int64), values[keep].reshape(n_rows, k)


def _score_blocks(batches: Iterator[pd.DataFrame], items: ItemFactors, k: int, block_size: int, id_col: str,
                  exclude_col: str | None, exclude_self: bool, normalize: bool) -> Iterator[pd.DataFrame]:
    for batch in batches:
        for start in range(0, len(batch), block_size):
            block = batch.iloc[start:start + block_size]
            query = np.stack(block["features"].to_numpy()).astype(np.float32)
            if normalize:
                query = _unit_rows(query)
            scores = query @ items.vectors.T
            if exclude_col is not None:
                lists = [np.asarray(v if v is not None else (), dtype=np.int64) for v in block[exclude_col]]
                rows = np.repeat(np.arange(len(lists)), [len(v) for v in lists])
                cols = items.positions(np.concatenate(lists)) if rows.size else np.zeros(0, np.int64)
                keep = cols >= 0
                scores[rows[keep], cols[keep]] = -np.inf
            query_ids = block[id_col].to_numpy(dtype=np.int64)
            if exclude_self:
                own = items.positions(query_ids)
                has = own >= 0
                scores[np.arange(len(block))[has], own[has]] = -np.inf
            positions, values = top_k_rows(scores, k)
            n = positions.shape[1]
            out = pd.DataFrame({
                "query": np.repeat(query_ids, n).astype(np.int32),
                "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), len(block)),
                "item": items.ids[positions.ravel()].astype(np.int32),
                "score": values.ravel().astype(np.float64),
            })
            yield out[np.isfinite(out["score"])]


def _top_k_frame(queries: DataFrame, items: ItemFactors, k: int, block_size: int, id_col: str,
                 exclude_col: str | None = None, exclude_self: bool = False, normalize: bool = False) -> DataFrame:
    schema = "query INT, rank INT, item INT, score DOUBLE"

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _score_blocks(batches, items, k, block_size, id_col, exclude_col, exclude_self, normalize)

    return queries.mapInPandas(score, schema)


def recommend_all(user_factors: DataFrame, items: ItemFactors, n: int, exclude: DataFrame | None = None,
                  block_size: int = 1024) -> DataFrame:
    """Top ``n`` items per user of ``user_factors`` (``id``, ``features``: an ALS model's
    userFactors) → user_idx, rank, item_idx, score (dot product, as ALS predicts).

    ``exclude`` (user_idx, item_idx): items never recommended to that user (e.g. already bought).
    A user with fewer than ``n`` items left gets fewer rows.
    """
    queries = user_factors.select(F.col("id").alias("user_idx"), "features")
    exclude_col = None
    if exclude is not None:
        lists = exclude.groupBy("user_idx").agg(F.collect_set("item_idx").alias("_exclude"))
        queries = queries.join(lists, "user_idx", "left")
        exclude_col = "_exclude"
    frame = _top_k_frame(queries, items, n, block_size, "user_idx", exclude_col)
    return frame.select(F.col("query").alias("user_idx"), "rank", F.col("item").alias("item_idx"), "score")


def similar_items(items: ItemFactors, spark: SparkSession, m: int, block_size: int = 1024,
                  partitions: int | None = None) -> DataFrame:
    """Top ``m`` other items per item by cosine similarity of factors → item_idx, rank,
    similar_idx, score."""
    # plain Python lists: without Arrow (a cluster's default) Spark cannot take numpy float32 elements
    table = pd.DataFrame({"item_idx": items.ids.astype(np.int32), "features": items.vectors.tolist()})
    queries = spark.createDataFrame(table, "item_idx INT, features ARRAY<FLOAT>")
    if partitions:
        queries = queries.repartition(partitions)
    frame = _top_k_frame(queries, items.normalized(), m, block_size, "item_idx", exclude_self=True,
                         normalize=True)
    return frame.select(F.col("query").alias("item_idx"), "rank", F.col("item").alias("similar_idx"), "score")


def recommendations_to_long(recommendations: DataFrame, user_col: str = "user_idx",
                            item_col: str = "item_idx") -> DataFrame:
    """MLlib's ``recommendForAllUsers`` output (user, recommendations array<struct<item, rating>>)
    → user_col, rank, item_col, score; for comparing with :func:`recommend_all`."""
    exploded = recommendations.select(user_col, F.posexplode("recommendations").alias("pos", "rec"))
    return exploded.select(user_col, (F.col("pos") + 1).alias("rank"), F.col(f"rec.{item_col}").alias(item_col),
                           F.col("rec.rating").cast("double").alias("score"))
