"""K-Means on the scaled features: the estimator, the fitted pipeline, convergence, distances and
the stage that maps K-Means cluster indexes to stable segment ids and names.

Fitted pipeline (what is logged to MLflow): SQL log1p → VectorAssembler → StandardScaler → KMeans
(``cluster``) → SQL ``CASE`` mapping (``segment_id``, ``segment_name``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.functions import vector_to_array
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
    iterations: int
    converged: bool
    cost: float  # sum of squared distances to the nearest centroid (standardised space)


def fit(customers: DataFrame, features: Sequence[str], k: int, config: SegmentsConfig) -> FitResult:
    """Fit scaling + K-Means (best of ``n_init``) on ``customers`` (columns ``features``, no nulls).

    Converged means the kept K-Means fit stopped before ``max_iter`` iterations (centres moved less
    than ``tol``).
    """
    scaling = Pipeline(stages=preprocessing_stages(features)).fit(customers)
    best = best_kmeans(scaling.transform(customers).select(FEATURES_COL), k, config)
    summary = best.summary
    return FitResult(model=PipelineModel(stages=[*scaling.stages, best]), k=k, iterations=summary.numIter,
                     converged=summary.numIter < config.max_iter, cost=float(summary.trainingCost))


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
