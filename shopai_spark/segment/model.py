"""K-Means on the scaled features: the estimator, the fitted pipeline, convergence, distances and
the stage that maps K-Means cluster indexes to stable segment ids and names.

Fitting (:func:`fit`) starts on a sample and refines on everyone. The start is scikit-learn's
``KMeans`` (k-means++, best of ``n_init`` starts) on at most ``selection_sample`` standardised
customers, collected to the driver (a bounded sample). Then Lloyd passes over all customers
(:func:`refine`) move the centres until their squared moves sum to at most ``tol`` or ``max_iter``
passes are done. The customers are packed once into float64 blocks (:func:`packed_points`, one binary value per
Arrow batch), so a pass is one ``mapInPandas`` over a few large values that returns, per partition,
each cluster's count, coordinate sums and cost. Restarts on a sample cost a fraction of restarts on
everyone, and a start from the sample's optimum needs few full passes (``make bench``:
``segments.fit`` against scikit-learn's ``KMeans`` on the whole matrix; ``select_k`` still fits
MLlib K-Means per k on the sample).

Fitted pipeline (what is logged to MLflow): SQL log1p → VectorAssembler → StandardScaler → KMeans
(``cluster``, an MLlib ``KMeansModel`` holding the refined centres) → SQL ``CASE`` mapping
(``segment_id``, ``segment_name``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.segment.config import SegmentsConfig
from shopai_spark.segment.scaling import FEATURES_COL, preprocessing_stages

CLUSTER_COL = "cluster"


def kmeans(k: int, config: SegmentsConfig, seed: int | None = None) -> KMeans:
    """Spark MLlib KMeans: k-means|| init, seed, maxIter, tol and initSteps from ``config``."""
    return KMeans(featuresCol=FEATURES_COL, predictionCol=CLUSTER_COL, k=k, initMode="k-means||",
                  initSteps=config.init_steps, seed=config.seed if seed is None else seed,
                  maxIter=config.max_iter, tol=config.tol)


def best_kmeans(scaled: DataFrame, k: int, config: SegmentsConfig) -> KMeansModel:
    """Lowest-cost of ``config.n_init`` K-Means fits on ``scaled`` (seeds seed, seed + 1, ...).

    ``scaled`` has the ``features`` vector column; it is cached for the fits and released after."""
    own_cache = not scaled.storageLevel.useMemory and not scaled.storageLevel.useDisk
    if own_cache:
        scaled = scaled.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        fits = [kmeans(k, config, config.seed + i).fit(scaled) for i in range(config.n_init)]
    finally:
        if own_cache:
            scaled.unpersist()
    return min(fits, key=lambda m: m.summary.trainingCost)


@dataclass(frozen=True)
class FitResult:
    """A fitted scaler + K-Means pipeline and how the fit went."""

    model: PipelineModel
    k: int
    iterations: int  # Lloyd passes over all customers after the sample start
    converged: bool
    cost: float  # sum of squared distances to the nearest centroid (standardised space)


@dataclass(frozen=True)
class Refined:
    """Centres after :func:`refine`, with the passes made and the cost of exactly these centres."""

    centers: np.ndarray
    iterations: int
    converged: bool
    cost: float


STEP_SCHEMA = "cluster int, count long, sums array<double>, cost double"
BLOCK_SCHEMA = "rows long, block binary"
# Packed points per partition of a Lloyd pass: a pass costs a Spark job plus, per task, a Python
# worker round trip, so few large partitions (measured on 1M x 6: 0.75 s a pass with 16 partitions,
# 0.35 s with 3), and still one per 16 MB so that large data spreads over the cluster.
BYTES_PER_PARTITION = 16 * 2**20


def packed_points(scaled: DataFrame, dims: int) -> DataFrame:
    """``scaled`` (``features`` vector of ``dims`` values) → rows (long), block (binary: ``rows`` x
    ``dims`` float64 values, row-major): the points in blocks of one Arrow batch each."""
    coordinates = [vector_to_array(FEATURES_COL)[j].alias(f"x{j}") for j in range(dims)]

    def pack(batches):
        for batch in batches:
            x = np.ascontiguousarray(batch.to_numpy(dtype=np.float64))
            yield pd.DataFrame({"rows": [len(x)], "block": [x.tobytes()]})
    return scaled.select(*coordinates).mapInPandas(pack, BLOCK_SCHEMA)


def lloyd_partials(centers: np.ndarray):
    """A ``mapInPandas`` function: point blocks (BLOCK_SCHEMA) → one row per cluster of the
    partition: cluster, count, sums (coordinate sums of its nearest points) and cost (squared
    distance of the partition's points to their nearest centre, on cluster 0)."""
    k, d = centers.shape
    norms = (centers * centers).sum(axis=1)

    def partials(batches):
        counts, sums, cost = np.zeros(k, dtype=np.int64), np.zeros((k, d)), 0.0
        for batch in batches:
            for rows, block in zip(batch["rows"], batch["block"], strict=True):
                x = np.frombuffer(block, dtype=np.float64).reshape(int(rows), d)
                nearest = (norms[None, :] - 2.0 * x @ centers.T).argmin(axis=1)
                cost += float(((x - centers[nearest]) ** 2).sum())
                counts += np.bincount(nearest, minlength=k)
                for j in range(d):
                    sums[:, j] += np.bincount(nearest, weights=x[:, j], minlength=k)
        yield pd.DataFrame({"cluster": np.arange(k, dtype=np.int32), "count": counts, "sums": list(sums),
                            "cost": [cost] + [0.0] * (k - 1)})
    return partials


def lloyd_pass(points: DataFrame, centers: np.ndarray) -> tuple[float, np.ndarray]:
    """One Lloyd pass over ``points`` (BLOCK_SCHEMA): the cost of ``centers`` (k x d) and the
    moved centres (each the mean of its nearest points; a centre with no point stays). Only k rows
    per partition reach the driver."""
    parts = points.mapInPandas(lloyd_partials(centers), STEP_SCHEMA).collect()
    counts, sums = np.zeros(len(centers)), np.zeros_like(centers)
    for row in parts:
        counts[row["cluster"]] += row["count"]
        sums[row["cluster"]] += np.asarray(row["sums"])
    moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers)
    return float(sum(row["cost"] for row in parts)), moved


def refine(points: DataFrame, start: np.ndarray, max_iter: int, tol: float) -> Refined:
    """Lloyd passes from the centres ``start`` (k x d) over ``points`` (BLOCK_SCHEMA, cached; every
    point counts) until the squared moves of the centres sum to at most ``tol`` (converged; as
    scikit-learn's ``tol`` on standardised data, whose mean feature variance is 1) or ``max_iter``
    (>= 1) passes are done. Returns the last centres whose cost was measured, so the cost is exactly theirs."""
    centers = np.asarray(start, dtype=float)
    for iteration in range(1, max_iter + 1):
        cost, moved = lloyd_pass(points, centers)
        converged = float(((moved - centers) ** 2).sum()) <= tol
        if converged or iteration == max_iter:
            return Refined(centers, iteration, converged, cost)
        centers = moved
    raise ValueError(f"max_iter must be >= 1, got {max_iter}")


def kmeans_model(spark, centers: np.ndarray) -> KMeansModel:
    """An MLlib ``KMeansModel`` whose centres are exactly ``centers`` (k distinct rows): K-Means with
    random init fitted on the k centres themselves takes all of them and no Lloyd step (maxIter 0)."""
    frame = spark.createDataFrame([(Vectors.dense(c.tolist()),) for c in centers], [FEATURES_COL])
    model = KMeans(featuresCol=FEATURES_COL, predictionCol=CLUSTER_COL, k=len(centers), initMode="random",
                   maxIter=0, seed=0).fit(frame)
    if len(model.clusterCenters()) != len(centers):
        raise RuntimeError(f"segments: K-Means refinement ended with duplicate centres ({len(centers)} asked)")
    return model


def sample_start(sample: np.ndarray, k: int, config: SegmentsConfig) -> np.ndarray:
    """Centres (k x d) of scikit-learn's KMeans on ``sample`` (n x d standardised rows): k-means++,
    best of ``n_init`` starts (seed ``seed``), ``max_iter`` and ``tol`` from ``config``."""
    from sklearn.cluster import KMeans as SkKMeans

    fitted = SkKMeans(n_clusters=k, n_init=config.n_init, random_state=config.seed, max_iter=config.max_iter,
                      tol=config.tol).fit(sample)
    return np.asarray(fitted.cluster_centers_, dtype=float)


def fit(customers: DataFrame, features: Sequence[str], k: int, config: SegmentsConfig) -> FitResult:
    """Fit scaling + K-Means on ``customers`` (columns ``features``, no nulls): start from
    :func:`sample_start` on at most ``selection_sample`` customers, then :func:`refine` on everyone.

    Converged: the last pass moved the centres by at most ``tol`` (see :func:`refine`), within ``max_iter``.
    """
    scaling = Pipeline(stages=preprocessing_stages(features)).fit(customers)
    scaled = scaling.transform(customers).select(FEATURES_COL)
    rows = customers.count()
    if rows < k:
        raise ValueError(f"segments: {rows} customers are too few for k = {k}")
    partitions = max(1, math.ceil(rows * len(features) * 8 / BYTES_PER_PARTITION))
    points = packed_points(scaled, len(features)).coalesce(partitions).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sample = customers if rows <= config.selection_sample else customers.sample(
            fraction=config.selection_sample / rows, seed=config.seed)
        matrix = scaling.transform(sample).select(vector_to_array(FEATURES_COL).alias("x")).toPandas()["x"]
        start = sample_start(np.stack(matrix.to_numpy()), k, config)
        refined = refine(points, start, config.max_iter, config.tol)
    finally:
        points.unpersist()
    best = kmeans_model(customers.sparkSession, refined.centers)
    return FitResult(model=PipelineModel(stages=[*scaling.stages, best]), k=k, iterations=refined.iterations,
                     converged=refined.converged, cost=refined.cost)


def kmeans_of(model: PipelineModel) -> KMeansModel:
    return next(s for s in model.stages if isinstance(s, KMeansModel))


def centers(model: PipelineModel) -> np.ndarray:
    """K-Means centres in the standardised space, one row per cluster index."""
    return np.array(kmeans_of(model).clusterCenters(), dtype=float)


def with_segment_map(model: PipelineModel, segment_of: Mapping[int, tuple[int, str]]) -> PipelineModel:
    """``model`` plus a stage adding ``segment_id`` and ``segment_name`` for each cluster index."""
    ids = " ".join(f"WHEN {c} THEN {sid}" for c, (sid, _) in sorted(segment_of.items()))
    names = " ".join(f"WHEN {c} THEN '{name.replace(chr(39), chr(39) * 2)}'"
                     for c, (_, name) in sorted(segment_of.items()))
    mapping = SQLTransformer(statement=(
        f"SELECT *, CAST(CASE `{CLUSTER_COL}` {ids} END AS INT) AS segment_id, "
        f"CASE `{CLUSTER_COL}` {names} END AS segment_name FROM __THIS__"))
    return PipelineModel(stages=[*model.stages, mapping])


def with_distance(scored: DataFrame, cluster_centers: np.ndarray) -> DataFrame:
    """Add ``distance_to_centroid``: Euclidean distance of ``features`` to its cluster's centre.

    Input: ``features`` (vector) and ``cluster`` (int) columns; the centres are a small literal.
    """
    literal = F.array(*[F.array(*[F.lit(float(x)) for x in row]) for row in cluster_centers])
    diffs = F.zip_with(vector_to_array(FEATURES_COL), F.element_at(literal, F.col(CLUSTER_COL) + 1),
                       lambda a, b: (a - b) * (a - b))
    return scored.withColumn("distance_to_centroid", F.sqrt(F.aggregate(diffs, F.lit(0.0), lambda acc, x: acc + x)))
