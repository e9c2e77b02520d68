"""Backtest metrics, origins, model choice, conformal quantiles and the (s, Q) simulation against
plain Python / pandas references on small hand-made series."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from shopai_spark.demand import accuracy, policy
from shopai_spark.demand import backtest as bt
from shopai_spark.demand import features as feats
from shopai_spark.demand import panel as pnl
from shopai_spark.demand.config import DemandConfig

CONFIG = DemandConfig(lead_time_days=3, horizon=3, backtest_origins=4, selection_origins=2, origin_step_days=3,
                      moving_average_days=10, min_class_skus=2, service_level=0.95)
ROWS = pd.DataFrame({
    "sku": ["a", "a", "a", "b", "b", "c"],
    "demand_class": ["smooth", "smooth", "smooth", "lumpy", "lumpy", None],
    "forecast": [4.0, 5.0, 0.5, 9.0, 2.0, 1.0],
    "actual": [3.0, 7.0, 0.0, 10.0, 6.0, 0.0],
    "scale": [2.0, 2.0, 2.0, 0.5, 0.5, 0.0],
    "level": [1.0, 1.0, 1.0, 3.0, 3.0, 0.2],
})


def frame(spark, pdf: pd.DataFrame):
    return spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None))


def test_point_metrics_match_the_reference(spark):
    got = accuracy.point_metrics(frame(spark, ROWS.assign(k="x")), ["k"], 3).first()
    err = ROWS.actual - ROWS.forecast
    assert got["wape"] == pytest.approx(err.abs().sum() / ROWS.actual.sum())
    assert got["bias"] == pytest.approx(-err.sum() / ROWS.actual.sum())
    per_sku = [np.mean(np.abs(g.actual - g.forecast) / (3 * g.scale)) for _, g in ROWS.groupby("sku") if
               (g.scale > 0).all()]                                   # c has scale 0: left out
    assert got["mase"] == pytest.approx(np.mean(per_sku)) and got["skus"] == 3 and got["rows"] == 6


def test_quantile_metrics_match_the_reference(spark):
    pdf = ROWS.assign(k="x", p90=[5.0, 6.0, 1.0, 12.0, 3.0, 0.0])
    got = accuracy.quantile_metrics(frame(spark, pdf), ["k"], {"p90": 0.9}).first()
    gap = pdf.actual - pdf.p90
    assert got["pinball_p90"] == pytest.approx(np.mean(np.maximum(0.9 * gap, -0.1 * gap)))
    assert got["coverage_p90"] == pytest.approx(np.mean(pdf.actual <= pdf.p90))


def test_origins_never_let_a_chosen_on_target_reach_a_reported_origin():
    origins = bt.forecast_origins(dt.date(2024, 3, 31), CONFIG)
    assert origins.backtest == tuple(dt.date(2024, 3, d) for d in (20, 23, 26, 29))
    assert origins.selection == origins.backtest[:2] and origins.serving == dt.date(2024, 4, 1)
    last_target_day = origins.selection[-1] + dt.timedelta(days=CONFIG.lead_time_days - 1)
    assert last_target_day < origins.report[0]
    assert origins.report[-1] + dt.timedelta(days=CONFIG.lead_time_days - 1) == dt.date(2024, 3, 31)
    with pytest.raises(ValueError, match="origin_step_days"):
        DemandConfig(lead_time_days=7, origin_step_days=3)
    with pytest.raises(ValueError, match="baselines"):
        DemandConfig(models=["ets", "gbt"])


def test_choice_is_the_lowest_wape_baselines_first_and_small_classes_take_the_overall_choice():
    scores = pd.DataFrame([
        ("smooth", "zero", 1.0, 5), ("smooth", "moving_average", 0.6, 5), ("smooth", "ets", 0.4, 5),
        ("lumpy", "zero", 0.9, 5), ("lumpy", "moving_average", 1.2, 5), ("lumpy", "ets", 1.1, 5),
        ("erratic", "zero", 1.0, 1), ("erratic", "ets", 0.2, 1),
        ("intermittent", "moving_average", 0.7, 5), ("intermittent", "tsb", 0.7, 5),
        ("all", "zero", 0.95, 16), ("all", "moving_average", 0.7, 16), ("all", "ets", 0.5, 16),
    ], columns=["class", "model", "wape", "skus"])
    choice = bt.choose_models(scores, min_class_skus=2)
    assert choice["smooth"] == "ets"
    assert choice["lumpy"] == "zero"                     # nothing beats the zero forecast there
    assert choice["erratic"] == "ets" == choice["all"]   # one SKU: the overall choice, not its own
    assert choice["intermittent"] == "moving_average"    # a tie goes to the baseline
    assert choice["none"] == choice["all"]


def test_conformal_quantiles_match_numpy(spark):
    config = replace(CONFIG, min_class_skus=1)               # smooth has one SKU ("a") in the calibration
    calibration = ROWS.iloc[:5]
    quantiles = bt.scaled_error_quantiles(frame(spark, calibration), config)
    target = pd.DataFrame({"sku": ["a", "z"], "demand_class": ["smooth", "erratic"], "forecast": [2.0, 1.0],
                           "scale": [1.0, None], "level": [1.0, 0.5]})
    got = bt.with_quantiles(frame(spark, target), quantiles, config).toPandas().set_index("sku")
    spread = 3 * np.maximum(calibration.scale, 1 / 10)
    scaled = (calibration.actual - calibration.forecast) / spread
    smooth = scaled[calibration.demand_class == "smooth"]
    assert got.loc["a", "interval_source"] == "smooth"
    assert got.loc["a", "p90"] == pytest.approx(max(0.0, 2.0 + 3 * 1.0 * np.percentile(smooth, 90)))
    # a class without calibration rows takes the quantiles of all rows; no scale: the level
    assert got.loc["z", "interval_source"] == "all"
    assert got.loc["z", "p95"] == pytest.approx(max(0.0, 1.0 + 3 * 0.5 * np.percentile(scaled, 95)))
    assert (got["p50"] <= got["p90"]).all() and (got["p90"] <= got["p95"]).all()


def test_sq_policy_simulation_by_hand():
    units = [2, 2, 2, 5, 0, 0, 1, 1, 4, 3, 0, 2]
    days = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=len(units)), "units": units,
                         "reorder_point": 4.0, "forecast": 3.0})
    got = policy.simulate_sku(days, lead_time_days=2)
    # start 7 on hand; an order placed at the end of day t arrives at the start of day t + 3.
    # day0 → 5; day1 → 3 ≤ 4: order (arrives day4); day2 → 1, position 4: order (day5);
    # day3 sells 1 of 5 (4 lost) → 0; day4 +3 → 3; day5 +3 → 6; day6 → 5; day7 → 4: order (day10);
    # day8 → 0, position 3: order (day11); day9: 3 lost; day10 +3 → 3; day11 +3, sells 2 → 4: order (day14)
    assert got["demand"] == 22 and got["served"] == 15
    assert got["cycles"] == 3                             # arrivals on days 4, 5, 10, 11
    assert got["cycles_in_stock"] == 2                    # [5, 10) lost day 9's units; day 3 is before any cycle
    assert got["stock_days"] == 5 + 3 + 1 + 0 + 3 + 6 + 5 + 4 + 0 + 0 + 3 + 4 and got["days"] == 12
    assert math.isclose(got["served"] / got["demand"], 15 / 22)


def test_gbt_tracks_a_level_above_its_training_range(spark):
    """Demand doubles after the GBT's training data ends: trained on absolute units the trees would
    stop at the highest level they saw (about half of the new demand for the big SKUs); on the ratio
    to the SKU's recent level the forecast follows the level."""
    config = DemandConfig(lags=[1, 7], rolling_windows=[7, 28], zero_share_windows=[28], ewm_window=7, price_window=7,
                          promo_reference_days=14, stockout_rate_window=14, horizon=3, lead_time_days=3,
                          class_window_days=28, moving_average_days=14, gbt_max_iter=10, gbt_max_depth=3,
                          origin_step_days=3)
    rng = np.random.default_rng(5)
    start, days = dt.date(2024, 1, 1), 160
    rows = [(f"s{rate}", start + dt.timedelta(days=d), int(u), float(u) * 5, 1, int(u), float(u) * 5)
            for rate in range(1, 13) for d in range(days)
            if (u := rng.poisson(rate * (2 if d >= 100 else 1))) > 0]
    sales = spark.createDataFrame(rows, "sku STRING, date DATE, units LONG, revenue DOUBLE, orders LONG, "
                                        "priced_units LONG, priced_revenue DOUBLE")
    end = start + dt.timedelta(days=days - 1)
    panel = pnl.build_panel(sales, None, pnl.sku_bounds(sales, None, end, 91))
    features = feats.add_features(panel, config, end).cache()
    origins = (start + dt.timedelta(days=140), start + dt.timedelta(days=150))
    frame = bt.model_frame(features, bt.Origins(origins, (), end + dt.timedelta(days=1)), config)
    forecast = bt.gbt_forecasts(frame, start + dt.timedelta(days=100), origins, config)
    actual = features.filter(F.col("date").isin(*origins)).select("sku", F.col("date").alias("origin"),
                                                                  F.col("target_3").alias("actual"))
    totals = forecast.join(actual, ["sku", "origin"]).agg(F.sum("forecast"), F.sum("actual")).first()
    assert 0.8 < totals[0] / totals[1] < 1.25
    features.unpersist()
