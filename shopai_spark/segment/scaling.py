"""Feature scaling as Spark ML stages: log1p of the skewed features, assemble, standardise.

The stages become the head of the fitted segmentation pipeline, so scoring with the logged model
repeats exactly the same transformation. :func:`transform_rows` is the same transformation in numpy
for a handful of rows (centroids), used to compare centroids across runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer, StandardScaler, StandardScalerModel, VectorAssembler

from shopai_spark.segment.config import LOG_FEATURES

SUFFIX = "__t"
FEATURES_COL = "features"


def preprocessing_stages(features: Sequence[str]) -> list:
    """Stages: SQL ``log1p(max(x, 0))`` for skewed features (others as is) into ``<x>__t``;
    VectorAssembler → ``raw_features``; StandardScaler (mean 0, std 1) → ``features``."""
    exprs = [f"LOG1P(GREATEST(CAST(`{f}` AS DOUBLE), 0D)) AS `{f}{SUFFIX}`" if f in LOG_FEATURES
             else f"CAST(`{f}` AS DOUBLE) AS `{f}{SUFFIX}`" for f in features]
    return [
        SQLTransformer(statement=f"SELECT *, {', '.join(exprs)} FROM __THIS__"),
        VectorAssembler(inputCols=[f"{f}{SUFFIX}" for f in features], outputCol="raw_features",
                        handleInvalid="error"),
        StandardScaler(inputCol="raw_features", outputCol=FEATURES_COL, withMean=True, withStd=True),
    ]


def model_features(model: PipelineModel) -> list[str]:
    """The feature columns a fitted pipeline reads (from its VectorAssembler)."""
    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    return [c.removesuffix(SUFFIX) for c in assembler.getInputCols()]


def scaler_of(model: PipelineModel) -> StandardScalerModel:
    return next(s for s in model.stages if isinstance(s, StandardScalerModel))


def transform_rows(rows: np.ndarray, features: Sequence[str], scaler: StandardScalerModel) -> np.ndarray:
    """Rows in original units (n x len(features)) → standardised rows, as the Spark stages do
    (a zero standard deviation gives 0, like StandardScaler)."""
    rows = np.asarray(rows, dtype=float).copy()
    for j, f in enumerate(features):
        if f in LOG_FEATURES:
            rows[:, j] = np.log1p(np.maximum(rows[:, j], 0.0))
    mean = scaler.mean.toArray()
    std = scaler.std.toArray()
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (rows - mean) / safe, 0.0)
