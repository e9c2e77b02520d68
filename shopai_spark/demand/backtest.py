"""Rolling-origin backtest: forecasts at several origins, a model chosen per demand class on the
earlier origins, accuracy and quantiles reported on the later ones.

Origins (:func:`forecast_origins`): the last is the latest day whose lead time ends on the end date;
``backtest_origins`` of them, ``origin_step_days`` apart (>= L, so no target of a selection origin
overlaps a later origin's training data). Every forecast at an origin reads only days before it:
per-SKU models refit on the days before it; the GBT is fitted once on the targets that ended before
the first origin. The serving origin is the day after the end date (the GBT is refitted on every
known target for it when a class chose it).

Rows compared (:func:`comparable`): an origin's (sku, origin) pairs where every model has a forecast
and the actual lead-time demand is known and uncensored (same rows for every model). The model of a
demand class (:func:`choose_models`) is the lowest WAPE on the selection origins, the baselines
(zero, moving average) among the candidates, so a model that does not beat them is never chosen;
a class with fewer than ``min_class_skus`` SKUs (or no class) takes the choice made on all SKUs.

Quantiles (:func:`with_quantiles`, split conformal): a row's error scaled by its spread,
``(actual − forecast) / spread`` with ``spread = L × max(scale or level, 1 / moving_average_days)``,
is taken from calibration rows of the chosen model of the same class (all classes when a class has
fewer than ``min_class_skus`` SKUs); the quantile at level p is ``max(0, forecast + spread × q_p)``.
The report origins are calibrated on the selection origins, the serving origin on all backtest origins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand import forecast as gbt
from shopai_spark.demand.config import BASELINES, DemandConfig
from shopai_spark.demand.models import SHORT_HISTORY, statistical_forecasts

ALL = "all"
NO_CLASS = "none"
PAIR = ["sku", "origin"]


@dataclass(frozen=True)
class Origins:
    """Forecast origins: the selection phase, the report phase and the serving origin."""

    selection: tuple[dt.date, ...]
    report: tuple[dt.date, ...]
    serving: dt.date

    @property
    def backtest(self) -> tuple[dt.date, ...]:
        return (*self.selection, *self.report)


def forecast_origins(end_date: dt.date, config: DemandConfig) -> Origins:
    """The backtest origins (oldest first) and the serving origin ``end_date + 1``."""
    last = end_date - dt.timedelta(days=config.lead_time_days - 1)
    dates = [last - dt.timedelta(days=config.origin_step_days * k) for k in reversed(range(config.backtest_origins))]
    return Origins(tuple(dates[:config.selection_origins]), tuple(dates[config.selection_origins:]),
                   end_date + dt.timedelta(days=1))


def class_key() -> Column:
    """demand_class, or ``none`` where the SKU had no earlier sale in the class window."""
    return F.coalesce(F.col("demand_class"), F.lit(NO_CLASS))


def gbt_forecasts(frame: DataFrame, fitted_at: dt.date, dates: tuple[dt.date, ...],
                  config: DemandConfig) -> DataFrame | None:
    """Model-frame rows (:func:`~shopai_spark.demand.forecast.with_model_columns`) → sku, origin,
    model = gbt, forecast at ``dates``, from one GBT fitted on the targets that ended before
    ``fitted_at``; None without training rows."""
    model = gbt.fit_gbt(gbt.training_rows(frame, fitted_at, config.lead_time_days), config)
    if model is None:
        return None
    rows = frame.filter(F.col("date").isin(*dates))
    return gbt.predict(model, rows).select("sku", F.col("date").alias("origin"), F.lit(gbt.GBT).alias("model"),
                                           F.col(gbt.GBT).alias("forecast"))


def model_frame(features: DataFrame, origins: Origins, config: DemandConfig) -> DataFrame:
    """The GBT's rows: :func:`~shopai_spark.demand.forecast.with_model_columns` at the origins and
    wherever a target is known."""
    return gbt.with_model_columns(features, config).filter(
        F.col("date").isin(*origins.backtest, origins.serving) | F.col(gbt.LABEL).isNotNull())


def parameter_origins(origins: Origins, config: DemandConfig) -> frozenset[dt.date]:
    """The origins where the per-SKU models estimate their parameters: the first backtest origin and
    the serving origin, or every origin with ``refit_every_origin``."""
    if config.refit_every_origin:
        return frozenset((*origins.backtest, origins.serving))
    return frozenset((origins.backtest[0], origins.serving))


def all_forecasts(features: DataFrame, origins: Origins, config: DemandConfig) -> DataFrame:
    """Feature rows up to the serving origin → every model's forecast at every origin (the GBT at the
    backtest origins only: it is fitted for serving only when chosen, :func:`serving_gbt`): sku,
    origin, model, forecast, fit_failed, history_days, scale, level, undershoot (see
    :mod:`~shopai_spark.demand.models`). Checkpointed here, so the per-SKU fits run once.

    The GBT is fitted once on the targets that ended before the first origin and used at every
    backtest origin (a refit per origin would cost a GBT fit each); so are the per-SKU models'
    parameters unless ``refit_every_origin`` (:func:`parameter_origins`)."""
    observed = features.filter(F.col("date") < F.lit(origins.serving))
    stats = statistical_forecasts(observed, [*origins.backtest, origins.serving], config,
                                  parameter_origins(origins, config)).localCheckpoint()
    if gbt.GBT not in config.models:
        return stats
    global_rows = gbt_forecasts(model_frame(features, origins, config), origins.backtest[0], origins.backtest, config)
    if global_rows is None:
        return stats
    return stats.unionByName(with_attributes(global_rows, stats)).localCheckpoint()


def with_attributes(global_rows: DataFrame, stats: DataFrame) -> DataFrame:
    """GBT rows (sku, origin, model, forecast) + fit_failed (false) and the per-SKU attributes of the
    same (sku, origin) (history_days, scale, level, undershoot); rows of SKUs without per-SKU forecasts are dropped."""
    attributes = stats.filter(F.col("model") == "zero").drop("model", "forecast", "fit_failed")
    return global_rows.join(attributes, PAIR).withColumn("fit_failed", F.lit(False))


def serving_gbt(features: DataFrame, stats: DataFrame, origins: Origins, config: DemandConfig) -> DataFrame | None:
    """The GBT's rows at the serving origin (fitted on every known target), as :func:`all_forecasts`
    rows; None without training rows."""
    rows = gbt_forecasts(model_frame(features, origins, config), origins.serving, (origins.serving,), config)
    return None if rows is None else with_attributes(rows, stats.filter(F.col("origin") == F.lit(origins.serving)))


def with_actuals(forecasts: DataFrame, features: DataFrame, config: DemandConfig) -> DataFrame:
    """Forecasts of SKUs with a panel row at the origin (active then: delisted or not yet launched
    SKUs are dropped) + actual (target_L at the origin row, null when unknown or censored) and
    demand_class (the class at the origin row: from days before it)."""
    actuals = features.select("sku", F.col("date").alias("origin"), "demand_class",
                              F.col(f"target_{config.lead_time_days}").cast("double").alias("actual"))
    return forecasts.join(actuals, PAIR)


def comparable(rows: DataFrame, origins: tuple[dt.date, ...]) -> DataFrame:
    """Rows of ``origins`` with a known actual, restricted to the (sku, origin) pairs where every
    model present at these origins has a forecast (short-history fallbacks left out)."""
    scored = rows.filter(F.col("origin").isin(*origins) & F.col("actual").isNotNull()
                         & (F.col("model") != SHORT_HISTORY))
    models = scored.agg(F.countDistinct("model")).first()[0]
    complete = scored.groupBy(*PAIR).agg(F.count("*").alias("_n")).filter(F.col("_n") == models).drop("_n")
    return scored.join(complete, PAIR)


def choose_models(scores: pd.DataFrame, min_class_skus: int) -> dict[str, str]:
    """Per-class WAPE on the selection origins (columns class, model, wape, skus; class ``all`` for
    every SKU) → {class: chosen model}, ``all`` and ``none`` included. Lowest WAPE wins; ties go to
    the baselines, then to the model listed first."""
    order = {m: i for i, m in enumerate(BASELINES)}
    ranked = scores.dropna(subset=["wape"]).assign(
        _order=lambda d: d["model"].map(order).fillna(len(order))).sort_values(["wape", "_order", "model"])
    best = ranked.groupby("class", sort=False).head(1).set_index("class")
    overall = best.loc[ALL, "model"] if ALL in best.index else BASELINES[1]
    choice = {ALL: overall, NO_CLASS: overall}
    for name, row in best.iterrows():
        if name not in (ALL, NO_CLASS):
            choice[name] = row["model"] if row["skus"] >= min_class_skus else overall
    return choice


def chosen_model(choice: dict[str, str]) -> Column:
    """The chosen model of each row's class (:func:`class_key`; unseen classes → ``all``)."""
    expr = F.lit(choice[ALL])
    for name, model in choice.items():
        expr = F.when(class_key() == name, F.lit(model)).otherwise(expr)
    return expr


def spread(config: DemandConfig) -> Column:
    """L × max(scale (or level without one), 1 / moving_average_days): the unit of scaled errors."""
    unit = F.greatest(F.coalesce(F.col("scale"), F.col("level"), F.lit(0.0)),
                      F.lit(1.0 / config.moving_average_days))
    return F.lit(float(config.lead_time_days)) * unit


def reorder_point(config: DemandConfig) -> Column:
    """The reorder point of a row with quantile columns: the service-level quantile of lead-time
    demand plus the expected undershoot (ordering when the position has fallen to the quantile
    would leave, on average, the undershoot less than the quantile to cover the lead time)."""
    return F.col(service_quantile(config)) + F.coalesce(F.col("undershoot"), F.lit(0.0))


def quantile_levels(config: DemandConfig) -> dict[str, float]:
    """Quantile columns: p50, p90 and the service level (``p<100 x level>``)."""
    levels = {"p50": 0.5, "p90": 0.9}
    levels[f"p{round(config.service_level * 100, 2):g}".replace(".", "_")] = config.service_level
    return levels


def service_quantile(config: DemandConfig) -> str:
    """The quantile column of the service level (the reorder point)."""
    return next(name for name, level in quantile_levels(config).items() if level == config.service_level)


def scaled_error_quantiles(calibration: DataFrame, config: DemandConfig) -> DataFrame:
    """Calibration rows of the chosen models → class key, n_skus and q_<name> per quantile level
    (one row per class plus ``all``)."""
    levels = quantile_levels(config)
    scaled = calibration.select(class_key().alias("class"), "sku",
                                ((F.col("actual") - F.col("forecast")) / spread(config)).alias("e"))
    aggs = [F.countDistinct("sku").alias("n_skus"),
            *[F.percentile("e", level).alias(f"q_{name}") for name, level in levels.items()]]
    per_class = scaled.groupBy("class").agg(*aggs)
    overall = scaled.agg(*aggs).select(F.lit(ALL).alias("class"), "*")
    return per_class.unionByName(overall)


def with_quantiles(rows: DataFrame, quantiles: DataFrame, config: DemandConfig) -> DataFrame:
    """Forecast rows (forecast, scale, level, demand_class) + one column per quantile level, from the
    class's scaled-error quantiles (``all`` below ``min_class_skus`` SKUs) + interval_source."""
    levels = quantile_levels(config)
    own = quantiles.filter(F.col("n_skus") >= config.min_class_skus).withColumnRenamed("class", "_class")
    overall = quantiles.filter(F.col("class") == ALL).select(
        *[F.col(f"q_{n}").alias(f"_all_{n}") for n in levels])
    joined = rows.withColumn("_class", class_key()).join(own, "_class", "left").crossJoin(F.broadcast(overall))
    unit = spread(config)
    out = joined.withColumn("interval_source", F.when(F.col("n_skus").isNotNull(), F.col("_class"))
                            .otherwise(F.lit(ALL)))
    for name in levels:
        q = F.coalesce(F.col(f"q_{name}"), F.col(f"_all_{name}"))       # null quantile stays null, never 0
        out = out.withColumn(name, F.when(q.isNotNull(), F.greatest(F.col("forecast") + unit * q, F.lit(0.0))))
    return out.drop("_class", "n_skus", *[f"q_{n}" for n in levels], *[f"_all_{n}" for n in levels])
