"""The global forecast model: one Spark ML GBTRegressor over all SKUs, on the feature table.

It predicts ``target_L`` (units on the L = ``lead_time_days`` days from the row's date) relative to
the SKU's level, so that it tracks each SKU's level: the label is ``target_L / scale`` with
``scale = L * max(level, 1 / moving_average_days)`` and ``level`` the mean uncensored daily units of
the ``moving_average_days`` days before the row (the moving-average baseline's rate); the forecast is
``prediction * scale`` clipped at 0. Trees cannot extrapolate: trained on absolute units, a SKU whose
sales grow past the training range is forecast at the highest level the trees saw (the old model
forecast about half of the demo shop's rising hold-out for that reason); on the ratio the level comes
from the row itself.

Features: :func:`~shopai_spark.demand.features.feature_columns` cast to double with nulls as -1.
Training rows: a known target (not censored) that ends before the forecast origin, at most
``max_train_rows`` of them (sampled).
"""

from __future__ import annotations

import datetime as dt

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.features import feature_columns, past

GBT = "gbt"
LABEL = "label"
RATIO = "ratio"
SCALE = "gbt_scale"
MISSING = -1.0


def with_model_columns(df: DataFrame, config: DemandConfig) -> DataFrame:
    """Feature rows (sku, date, units, likely_stockout, features, target_L) → sku, date, label
    (target_L as double), gbt_scale, ratio (label / gbt_scale) and the model features as doubles
    (nulls → -1). The level window needs the SKU's earlier rows in ``df``."""
    demand = F.when(~F.col("likely_stockout"), F.col("units").cast("double"))
    level = F.avg(demand).over(past(config.moving_average_days))
    scale = F.lit(float(config.lead_time_days)) * F.greatest(
        F.coalesce(level, F.lit(0.0)), F.lit(1.0 / config.moving_average_days))
    label = F.col(f"target_{config.lead_time_days}").cast("double")
    return df.select(
        "sku", "date", label.alias(LABEL), scale.alias(SCALE),
        *[F.coalesce(F.col(c).cast("double"), F.lit(MISSING)).alias(c) for c in feature_columns(config)],
    ).withColumn(RATIO, F.col(LABEL) / F.col(SCALE))


def training_rows(frame: DataFrame, origin: dt.date, lead_time_days: int) -> DataFrame:
    """Rows of :func:`with_model_columns` whose target is known and ends before ``origin``."""
    return frame.filter(F.col(LABEL).isNotNull()
                        & (F.col("date") <= F.lit(origin - dt.timedelta(days=lead_time_days))))


def fit_gbt(train: DataFrame, config: DemandConfig) -> PipelineModel | None:
    """Assembler + GBTRegressor on the ratio of at most about ``max_train_rows`` sampled training rows;
    None without training rows."""
    rows = train.count()
    if rows == 0:
        return None
    if rows > config.max_train_rows:
        train = train.sample(fraction=config.max_train_rows / rows, seed=config.seed)
    assembler = VectorAssembler(inputCols=feature_columns(config), outputCol="features")
    gbt = GBTRegressor(labelCol=RATIO, featuresCol="features", predictionCol="gbt_ratio",
                       maxIter=config.gbt_max_iter, maxDepth=config.gbt_max_depth, seed=config.seed)
    return Pipeline(stages=[assembler, gbt]).fit(train)


def predict(model: PipelineModel, rows: DataFrame) -> DataFrame:
    """Rows of :func:`with_model_columns` → sku, date, gbt (the lead-time forecast, clipped at 0)."""
    forecast = F.greatest(F.col("gbt_ratio") * F.col(SCALE), F.lit(0.0))
    return model.transform(rows).select("sku", "date", forecast.alias(GBT))
