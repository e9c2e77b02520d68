"""The planted demand generator (its truth holds: mean units, classes as the job measures them,
launches, determinism) and forecasts scored against that truth."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd
import pytest
from pyspark.sql import functions as F

from bench.bench_demand import END, planted_inputs
from shopai_spark.demand import accuracy
from shopai_spark.demand import features as feats
from shopai_spark.demand import panel as pnl
from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.evaluation import CHOSEN, evaluate
from shopai_spark.generate.demand import CLASSES, daily_demand, planted_skus


def planted_features(spark, skus: int, days: int, config: DemandConfig):
    """The demand job's features over the bench's planted series, and the truth (sku, date,
    expected_units, planted_class)."""
    sales, activity, truth = planted_inputs(spark, skus, days)
    bounds = pnl.sku_bounds(sales, activity, END, config.delist_after_days)
    panel = pnl.build_panel(sales, activity, bounds, extra_day=END + dt.timedelta(days=1))
    return feats.add_features(panel, config, END), truth


@pytest.fixture(scope="module")
def planted(spark):
    skus = planted_skus(spark, 300, 420, seed=5)
    return skus.toPandas(), daily_demand(skus, 420, END, seed=5).toPandas()


def test_mean_units_match_the_planted_expectation_per_class(planted):
    skus, days = planted
    by_class = days.merge(skus[["sku", "demand_class"]]).groupby("demand_class")
    means = by_class.agg(units=("units", "mean"), expected=("expected_units", "mean"), cells=("units", "size"))
    assert set(means.index) == {c.name for c in CLASSES}
    for name, row in means.iterrows():
        assert row["units"] == pytest.approx(row["expected"], rel=0.06), name     # 5k+ days per class


def test_launches_and_determinism(spark, planted):
    skus, days = planted
    first = days.groupby("sku")["date"].min().rename("first").reset_index().merge(skus)
    launched = [END - dt.timedelta(days=419 - int(d)) for d in first["launch_day"]]
    assert list(first["first"]) == launched and (first["launch_day"] > 0).any()
    again = daily_demand(planted_skus(spark, 300, 420, seed=5), 420, END, seed=5).toPandas()
    pd.testing.assert_frame_equal(days.sort_values(["sku", "date"]).reset_index(drop=True),
                                  again.sort_values(["sku", "date"]).reset_index(drop=True))


def test_the_job_measures_the_planted_classes(spark):
    features, truth = planted_features(spark, 200, 400, DemandConfig())
    measured = features.filter(F.col("date") == F.lit(END)).select("sku", "demand_class")
    both = measured.join(truth.select("sku", "planted_class").distinct(), "sku").toPandas()
    agreement = (both["demand_class"] == both["planted_class"]).mean()
    assert len(both) == 200 and agreement >= 0.9, pd.crosstab(both["planted_class"], both["demand_class"])


def test_with_expected_actuals_sums_the_lead_time_and_drops_uncovered_rows(spark):
    rows = spark.createDataFrame([("a", dt.date(2024, 1, 1), "m", 5.0, 9.0), ("a", dt.date(2024, 1, 3), "m", 1.0, 9.0)],
                                 "sku string, origin date, model string, forecast double, actual double")
    expected = spark.createDataFrame([("a", dt.date(2024, 1, d), float(d)) for d in range(1, 5)],
                                     "sku string, date date, expected_units double")
    got = accuracy.with_expected_actuals(rows, expected, 3).collect()
    assert [(r["origin"], r["actual"], r["forecast"]) for r in got] == [(dt.date(2024, 1, 1), 6.0, 5.0)]


@pytest.mark.e2e
def test_chosen_forecasts_are_nearer_the_truth_than_the_baselines(spark):
    """On planted series, the chosen models' report-origin forecasts are nearer the planted expected
    units than both baselines are, and nearer the truth than the noisy actuals are."""
    config = replace(DemandConfig(), models=["zero", "moving_average", "seasonal_naive", "ets", "croston_sba"],
                     backtest_origins=6, selection_origins=3, min_class_skus=5)
    features, truth = planted_features(spark, 60, 240, config)
    result = evaluate(features, END, config)
    assert result is not None
    truth = accuracy.with_expected_actuals(result.report_forecasts, truth.select("sku", "date", "expected_units"),
                                           config.lead_time_days)

    def wape(rows):
        return rows.agg(F.sum(F.abs(F.col("actual") - F.col("forecast"))) / F.sum("actual")).first()[0]

    chosen = truth.filter(F.col("model") == CHOSEN)
    for baseline in ("zero", "moving_average"):
        assert wape(chosen) < wape(truth.filter(F.col("model") == baseline)), baseline
    assert wape(chosen) < wape(result.report_forecasts.filter(F.col("model") == CHOSEN))
