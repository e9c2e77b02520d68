"""Baseline forecasts of lead-time demand on the feature table, with a time-based hold-out.

Both models predict ``target_L`` (units on the L = ``lead_time_days`` days starting at the row's
date) from what is known before that date:

* seasonal naive: each of the L days gets the units of the same weekday in the last week before the
  row's date (day t+k-1 ← units at t+k-1-7*ceil(k/7));
* a global Spark ML GBTRegressor on :func:`~shopai_spark.demand.features.feature_columns` (nulls → -1,
  predictions clipped at 0), trained on all SKUs at once.

Split by time (no row's target overlaps the hold-out): the hold-out is the last ``holdout_days``
forecast dates whose target is known (t <= end - L + 1); training rows end L days before it.
``likely_stockout`` rows and rows without a seasonal-naive value are left out of both.

Metrics (pooled over SKUs): WAPE = sum|y - p| / sum y; MASE = MAE / the seasonal-naive MAE on the
training rows (so MASE < 1 beats the naive forecast's in-sample error).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand.config import SEASON_DAYS, DemandConfig
from shopai_spark.demand.features import by_sku, feature_columns

log = logging.getLogger(__name__)

LABEL = "label"
NAIVE = "seasonal_naive"
GBT = "gbt"
MODELS = (NAIVE, GBT)
MISSING = -1.0


def seasonal_naive(lead_time_days: int) -> Column:
    """Seasonal-naive forecast of units over days t..t+L-1 (null when a needed past day is missing)."""
    lags = [SEASON_DAYS * math.ceil(k / SEASON_DAYS) - (k - 1) for k in range(1, lead_time_days + 1)]
    total = F.lit(0).cast("long")
    for lag in lags:
        total = total + F.lag("units", lag).over(by_sku())
    return total.cast("double")


def with_model_columns(df: DataFrame, config: DemandConfig) -> DataFrame:
    """Feature rows (units, likely_stockout, features, targets) → + label (target_L as double) and
    seasonal_naive; model features cast to double with nulls as -1."""
    features = feature_columns(config)
    return df.select(
        "sku", "date", "likely_stockout",
        F.col(f"target_{config.lead_time_days}").cast("double").alias(LABEL),
        seasonal_naive(config.lead_time_days).alias(NAIVE),
        *[F.coalesce(F.col(c).cast("double"), F.lit(MISSING)).alias(c) for c in features],
    )


@dataclass(frozen=True)
class Split:
    train_end: dt.date
    holdout_start: dt.date
    holdout_end: dt.date


def time_split(end_date: dt.date, config: DemandConfig) -> Split:
    """Hold-out = the last ``holdout_days`` dates with a known target; training ends L days earlier."""
    holdout_end = end_date - dt.timedelta(days=config.lead_time_days - 1)
    holdout_start = holdout_end - dt.timedelta(days=config.holdout_days - 1)
    return Split(holdout_start - dt.timedelta(days=config.lead_time_days), holdout_start, holdout_end)


def usable(df: DataFrame) -> DataFrame:
    return df.filter(F.col(LABEL).isNotNull() & F.col(NAIVE).isNotNull() & ~F.col("likely_stockout"))


def fit_gbt(train: DataFrame, config: DemandConfig, rows: int) -> PipelineModel:
    """Assembler + GBTRegressor on at most ``max_train_rows`` sampled training rows."""
    if rows > config.max_train_rows:
        train = train.sample(fraction=config.max_train_rows / rows, seed=config.seed)
    assembler = VectorAssembler(inputCols=feature_columns(config), outputCol="features")
    gbt = GBTRegressor(labelCol=LABEL, featuresCol="features", predictionCol="gbt_raw",
                       maxIter=config.gbt_max_iter, maxDepth=config.gbt_max_depth, seed=config.seed)
    return Pipeline(stages=[assembler, gbt]).fit(train)


def predict(model: PipelineModel, df: DataFrame) -> DataFrame:
    """+ gbt (prediction clipped at 0); drops the assembled vector."""
    return (model.transform(df).withColumn(GBT, F.greatest(F.col("gbt_raw"), F.lit(0.0)))
            .drop("features", "gbt_raw"))


def error_metrics(df: DataFrame, models: tuple[str, ...], scale: float | None) -> dict[str, float | None]:
    """``<model>_wape``, ``<model>_mae``, ``<model>_mase`` of each prediction column against label."""
    aggs = [F.sum(LABEL).alias("y"), F.count("*").alias("n")]
    aggs += [F.sum(F.abs(F.col(LABEL) - F.col(m))).alias(m) for m in models]
    row = df.agg(*aggs).first()
    out: dict[str, float | None] = {}
    for m in models:
        abs_error, n, y = row[m], row["n"], row["y"]
        mae = abs_error / n if n else None
        out[f"{m}_wape"] = abs_error / y if y else None
        out[f"{m}_mae"] = mae
        out[f"{m}_mase"] = mae / scale if mae is not None and scale else None
    return out


@dataclass
class ForecastResult:
    """Hold-out metrics, the chosen model's name, the fitted GBT and hold-out predictions."""

    metrics: dict[str, float | None]
    best: str
    model: PipelineModel
    holdout: DataFrame       # sku, date, label, seasonal_naive, gbt
    split: Split


def evaluate(frame: DataFrame, config: DemandConfig, end_date: dt.date) -> ForecastResult | None:
    """Fit the GBT on the training rows and score both models on the hold-out of ``frame``
    (:func:`with_model_columns` output). None when training or hold-out rows are missing."""
    split = time_split(end_date, config)
    rows = usable(frame)
    train = rows.filter(F.col("date") <= F.lit(split.train_end)).cache()
    holdout = rows.filter(F.col("date").between(F.lit(split.holdout_start), F.lit(split.holdout_end)))
    train_rows = train.count()
    if train_rows == 0 or holdout.isEmpty():
        log.warning("forecast skipped: %d training rows, hold-out %s..%s empty=%s", train_rows,
                    split.holdout_start, split.holdout_end, holdout.isEmpty())
        train.unpersist()
        return None
    scale = train.agg(F.avg(F.abs(F.col(LABEL) - F.col(NAIVE)))).first()[0]
    model = fit_gbt(train, config, train_rows)
    train.unpersist()
    scored = predict(model, holdout).select("sku", "date", LABEL, NAIVE, GBT).cache()
    metrics = error_metrics(scored, MODELS, scale)
    metrics.update({"naive_train_mae": scale, "train_rows": float(train_rows)})
    candidates = {m: metrics[f"{m}_wape"] for m in MODELS if metrics[f"{m}_wape"] is not None}
    best = min(candidates, key=candidates.get) if candidates else NAIVE
    return ForecastResult(metrics=metrics, best=best, model=model, holdout=scored, split=split)


def metrics_table(result: ForecastResult) -> pd.DataFrame:
    """One row per model: wape, mae, mase (for MLflow)."""
    return pd.DataFrame([{"model": m, **{k: result.metrics[f"{m}_{k}"] for k in ("wape", "mae", "mase")}}
                         for m in MODELS])


def holdout_by_date(result: ForecastResult) -> pd.DataFrame:
    """Hold-out totals per date (at most ``holdout_days`` rows): actual and both forecasts."""
    return (result.holdout.groupBy("date").agg(*[F.sum(c).alias(c) for c in (LABEL, *MODELS)])
            .orderBy("date").toPandas())


def plot_holdout(table: pd.DataFrame, lead_time_days: int):
    """Line chart of hold-out totals: actual vs the two forecasts."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, nothing to close

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for column, label in ((LABEL, "actual"), (NAIVE, "seasonal naive"), (GBT, "GBT")):
        ax.plot(table["date"], table[column], label=label)
    ax.set_title(f"Hold-out: units over the next {lead_time_days} days, all SKUs")
    ax.legend()
    fig.autofmt_xdate()
    return fig
