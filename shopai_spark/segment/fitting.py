"""Fitting the segment model: choose k, fit scaler + K-Means with stable segment ids and names, assign
customers. Used by the segments job and by ``bench/bench_segments.py``.

Frames in and out: ``customers`` has ``user_id`` and the columns of
:data:`~shopai_spark.segment.config.ALL_FEATURES` (one row per customer with orders);
:func:`assign` and :func:`prospects` return :data:`SEGMENT_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.segment import model as km
from shopai_spark.segment.config import ALL_FEATURES, SegmentsConfig
from shopai_spark.segment.profiles import (
    PROSPECT_ID,
    PROSPECT_NAME,
    name_segment,
    profile,
    stable_ids,
    unique_names,
)
from shopai_spark.segment.scaling import model_features, preprocessing_stages, scaler_of, transform_rows
from shopai_spark.segment.select_k import CURVES, choose_k, evaluate_k, plot_curve
from shopai_spark.tracking import JobRun

SEGMENT_COLUMNS = ("user_id", "segment_id", "segment_name", "distance_to_centroid", *ALL_FEATURES)


def select_k(customers: DataFrame, rows: int, features: Sequence[str], config: SegmentsConfig,
             run: JobRun) -> tuple[int, pd.DataFrame | None]:
    """k from config, or measured on a sample of at most ``config.selection_sample`` customers
    (cost and silhouette for k_min..k_max, logged as a table and two PNG curves)."""
    if config.k is not None:
        return config.k, None
    sample = customers
    if rows > config.selection_sample:
        sample = customers.sample(fraction=config.selection_sample / rows, seed=config.seed)
    scaled = (Pipeline(stages=preprocessing_stages(features)).fit(sample).transform(sample)
              .select(km.FEATURES_COL).persist(StorageLevel.MEMORY_AND_DISK))
    sample_rows = scaled.count()
    ks = range(config.k_min, min(config.k_max, sample_rows - 1) + 1)
    if not ks:
        raise ValueError(f"segments: {sample_rows} customers in the sample are too few for k >= {config.k_min}")
    table = evaluate_k(scaled, ks, config)
    scaled.unpersist()
    k = choose_k(table, config.silhouette_tolerance)
    run.log_table(table, "k_selection")
    for column in CURVES:
        run.log_figure(plot_curve(table, column, k), f"k_selection_{column}")
    return k, table


def previous_centroids(previous: pd.DataFrame | None, model: PipelineModel) -> dict[int, list[float]] | None:
    """Previous run's segment centroids (original units, from gold.segment_profiles) mapped through
    ``model``'s scaler; None when there is no usable previous profile."""
    features = model_features(model)
    if previous is None or not set(features) <= set(previous.columns):
        return None
    fitted = previous[previous["segment_id"] != PROSPECT_ID].dropna(subset=features)
    if fitted.empty:
        return None
    scaled = transform_rows(fitted[features].to_numpy(), features, scaler_of(model))
    return dict(zip(fitted["segment_id"].astype(int), scaled, strict=True))


def fit_with_ids(customers: DataFrame, features: Sequence[str], k: int, config: SegmentsConfig,
                 previous: pd.DataFrame | None) -> tuple[PipelineModel, km.FitResult]:
    """Fit scaler + K-Means, then give clusters stable ids (see profiles.py) and names; returns the
    pipeline with the id/name mapping stage appended, and the fit result."""
    result = km.fit(customers, features, k, config)
    by_cluster = profile(result.model.transform(customers), features, by=(km.CLUSTER_COL,))
    clusters = by_cluster[km.CLUSTER_COL].astype(int).tolist()
    if sorted(clusters) != list(range(k)):
        raise RuntimeError(f"segments: K-Means left empty clusters ({len(clusters)} of {k} used); lower k")
    new = transform_rows(by_cluster[list(features)].to_numpy(), features, scaler_of(result.model))
    monetary = by_cluster["monetary"] if "monetary" in features else by_cluster["customers"]
    ids = dict(zip(clusters, stable_ids(new, previous_centroids(previous, result.model), monetary.tolist()),
                   strict=True))
    centers = km.centers(result.model)
    names = unique_names({ids[c]: name_segment(centers[c], features) for c in range(k)})
    return km.with_segment_map(result.model, {c: (ids[c], names[ids[c]]) for c in range(k)}), result


def assign(model: PipelineModel, customers: DataFrame) -> DataFrame:
    """Customers with orders → SEGMENT_COLUMNS, by a fitted pipeline with the mapping stage."""
    scored = km.with_distance(model.transform(customers), km.centers(model))
    return scored.select(*SEGMENT_COLUMNS)


def prospects(customers: DataFrame) -> DataFrame:
    """Customers without orders → SEGMENT_COLUMNS in segment 0 (no distance)."""
    return customers.select(
        "user_id", F.lit(PROSPECT_ID).alias("segment_id"), F.lit(PROSPECT_NAME).alias("segment_name"),
        F.lit(None).cast("double").alias("distance_to_centroid"), *ALL_FEATURES)
