"""The demand job's forecasting step: backtest, model choice, quantiles, policy simulation and the
serving forecasts behind gold.inventory_signals (see :mod:`~shopai_spark.demand.backtest`).

Everything reported is measured on the report origins with choices and calibrations made on the
selection origins; the serving forecasts use the same choice, calibrated on every backtest origin.
Metric names carry the demand class (``smooth``, ``erratic``, ``intermittent``, ``lumpy``, ``none``
for SKUs without an earlier sale in the class window, ``all``): ``backtest_{wape,bias,mase}_<class>``
(the chosen models), ``<model>_{wape,bias,mase}_<class>`` (every model, baselines included),
``pinball_loss_<q>_<class>``, ``<q>_coverage_<class>``, ``simulated_service_level_<class>``,
``simulated_fill_rate_<class>``, ``simulated_average_stock_<class>``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.demand import accuracy, policy
from shopai_spark.demand import backtest as bt
from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.forecast import GBT
from shopai_spark.demand.inventory import inventory_signals, serving_forecasts

CHOSEN = "chosen"          # the model column of the chosen models' rows in report_scores
CHOSEN_NAME = "backtest"   # ... and its metric name


@dataclass
class ForecastEvaluation:
    """What the forecasting step measured and decided (small pandas tables) and the signals."""

    origins: bt.Origins
    choice: dict[str, str]
    selection_scores: pd.DataFrame      # class, model, wape, bias, mase, rows, skus (selection origins)
    report_scores: pd.DataFrame         # the same on the report origins, + model "chosen"
    report_quantiles: pd.DataFrame      # class, pinball_<q>, coverage_<q> (chosen models, report origins)
    service: pd.DataFrame               # class, simulated_service_level, simulated_fill_rate, average_stock
    fan: pd.DataFrame                   # a few SKUs per class: sku, class, origin, actual, forecast, p50, p90
    fit_failures: dict[str, int]
    signals: DataFrame
    report_forecasts: DataFrame         # the rows of report_scores (lazy, from checkpointed rows): sku, origin,
                                        # model ("chosen" for the chosen ones), forecast, actual, scale, demand_class
    metrics: dict[str, float] = field(default_factory=dict)


def by_class(rows: DataFrame) -> DataFrame:
    """Each row twice: with its class key and with class ``all``."""
    keyed = rows.withColumn("class", bt.class_key())
    return keyed.unionByName(keyed.withColumn("class", F.lit(bt.ALL)))


def scores(rows: DataFrame, config: DemandConfig) -> pd.DataFrame:
    return accuracy.point_metrics(by_class(rows), ["class", "model"], config.lead_time_days).toPandas()


def fan_sample(report: DataFrame, per_class: int) -> pd.DataFrame:
    """The ``per_class`` SKUs of each class with most units in the report rows (their rows only)."""
    volume = report.groupBy("sku", bt.class_key().alias("class")).agg(F.sum("actual").alias("_units"))
    top = (volume.withColumn("_rank", F.row_number().over(Window.partitionBy("class").orderBy(F.desc("_units"), "sku")))
           .filter(F.col("_rank") <= per_class).select("sku", "class"))
    return (report.join(top, "sku").select("sku", "class", "origin", "actual", "forecast", "p50", "p90")
            .orderBy("class", "sku", "origin").toPandas())


def flatten(table: pd.DataFrame, columns: dict[str, str]) -> dict[str, float]:
    """Rows of a per-class table → {name_<class>: value}; ``columns`` maps a column to its metric
    name (``{model}`` in it is replaced by the row's model, ``chosen`` → ``backtest``)."""
    out: dict[str, float] = {}
    for row in table.to_dict("records"):
        model = row.get("model")
        for column, name in columns.items():
            value = row.get(column)
            if value is None or pd.isna(value):
                continue
            label = name.format(model=CHOSEN_NAME if model == CHOSEN else model)
            out[f"{label}_{row['class']}"] = float(value)
    return out



def evaluate(features: DataFrame, end_date: dt.date, config: DemandConfig) -> ForecastEvaluation | None:
    """Feature rows up to the serving origin (every SKU's whole panel) → the evaluation and the
    inventory signals as of ``end_date`` (see the module docstring); None (nothing cached) when the
    selection or the report origins have no comparable row: too little history for a backtest."""
    origins = bt.forecast_origins(end_date, config)
    features = features.localCheckpoint()          # short plans below: the feature plan is deep
    rows = bt.with_actuals(bt.all_forecasts(features, origins, config), features, config).localCheckpoint()
    selection = bt.comparable(rows, origins.selection)
    selection_scores = scores(selection, config)
    report = bt.comparable(rows, origins.report)
    if selection_scores.empty or report.isEmpty():
        return None
    choice = bt.choose_models(selection_scores, config.min_class_skus)
    chosen = bt.chosen_model(choice)
    report_chosen = report.filter(F.col("model") == chosen)
    report_forecasts = report.unionByName(report_chosen.withColumn("model", F.lit(CHOSEN)))
    report_scores = scores(report_forecasts, config)
    calibrated = bt.with_quantiles(
        report_chosen, bt.scaled_error_quantiles(selection.filter(F.col("model") == chosen), config), config).cache()
    levels = bt.quantile_levels(config)
    report_quantiles = accuracy.quantile_metrics(by_class(calibrated), ["class"], levels).toPandas()
    plans = calibrated.select("sku", "origin", "demand_class", "forecast",
                              bt.reorder_point(config).alias("reorder_point"))
    days = features.filter(F.col("date") <= F.lit(end_date)).select("sku", "date", "units")
    simulated = policy.simulate(days, plans, origins.report, config.origin_step_days, config.lead_time_days)
    service = pd.concat([policy.service_figures(simulated, bt.class_key()).toPandas(),
                         policy.service_figures(simulated, F.lit(bt.ALL)).toPandas()], ignore_index=True)
    all_chosen = bt.comparable(rows, origins.backtest).filter(F.col("model") == chosen)
    at_serving = rows.filter(F.col("origin") == F.lit(origins.serving))
    if GBT in choice.values():
        refitted = bt.serving_gbt(features, rows.drop("actual", "demand_class"), origins, config)
        if refitted is not None:
            at_serving = at_serving.unionByName(bt.with_actuals(refitted, features, config))
    serving = bt.with_quantiles(serving_forecasts(at_serving, chosen), bt.scaled_error_quantiles(all_chosen, config),
                                config)
    signals = inventory_signals(serving, config, end_date).cache()
    signals.count()                               # materialised before the rows it reads are unpersisted
    failures = {r["model"]: int(r["n"]) for r in rows.filter(F.col("fit_failed")).groupBy("model")
                .agg(F.count("*").alias("n")).collect()}
    fan = fan_sample(calibrated, per_class=2)
    calibrated.unpersist()
    result = ForecastEvaluation(origins, choice, selection_scores, report_scores, report_quantiles, service, fan,
                                failures, signals, report_forecasts)
    result.metrics = evaluation_metrics(result)
    return result


def evaluation_metrics(result: ForecastEvaluation) -> dict[str, float]:
    """The MLflow metrics of the module docstring, from the evaluation's tables."""
    metrics = flatten(result.report_scores, {"wape": "{model}_wape", "bias": "{model}_bias", "mase": "{model}_mase"})
    quantile_columns = {}
    for column in result.report_quantiles.columns:
        if column.startswith("pinball_"):
            quantile_columns[column] = f"pinball_loss_{column.removeprefix('pinball_')}"
        elif column.startswith("coverage_"):
            quantile_columns[column] = f"{column.removeprefix('coverage_')}_coverage"
    metrics.update(flatten(result.report_quantiles, quantile_columns))
    metrics.update(flatten(result.service, {"simulated_service_level": "simulated_service_level",
                                            "simulated_fill_rate": "simulated_fill_rate",
                                            "average_stock": "simulated_average_stock"}))
    metrics.update({f"fit_failures_{model}": float(n) for model, n in result.fit_failures.items()})
    return metrics
