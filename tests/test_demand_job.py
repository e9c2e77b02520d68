"""The demand_features job end to end on silver tables written in the test: gold tables, MLflow,
incremental == full (also after a gap longer than incremental_days), the backtest's metrics, choice
and inventory signals."""

from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from shopai_spark.app import load_config, run_job
from shopai_spark.demand.inventory import INVENTORY_COLUMNS
from shopai_spark.demand.job import INVENTORY_SIGNALS, SKU_DEMAND_FEATURES
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides
from tests.test_demand_features import (
    END,
    EVENTS_DDL,
    ITEMS_DDL,
    ORDERS_DDL,
    as_doubles,
    numeric_columns,
    pandas_to_spark,
    reference_features,
    sample_rows,
)

pytestmark = pytest.mark.e2e

# the sample config of test_demand_features as --set overrides
OVERRIDES = ("demand.start_date=2024-01-20", "demand.lags=[1,2,7]", "demand.rolling_windows=[3,7]",
             "demand.ewm_alpha=0.5", "demand.ewm_window=5", "demand.zero_share_windows=[7]", "demand.price_window=7",
             "demand.promo_reference_days=14", "demand.holidays=[2024-02-14,2024-03-29]",
             "demand.delist_after_days=20", "demand.stockout_rate_window=14", "demand.horizon=3",
             "demand.lead_time_days=3", "demand.gbt_max_iter=5", "demand.gbt_max_depth=3", "demand.class_window_days=30",
             "demand.backtest_origins=4", "demand.selection_origins=2", "demand.origin_step_days=3",
             "demand.min_history_days=14", "demand.min_class_skus=1")
METADATA = ("run_id", "generated_at")


def write_silver(spark, config, end: dt.date) -> None:
    lake = Lakehouse(spark, config.lakehouse)
    orders, items, events = sample_rows(end)
    lake.overwrite(spark.createDataFrame(orders, ORDERS_DDL), ORDERS.ref)
    lake.overwrite(spark.createDataFrame(items, ITEMS_DDL), ORDER_ITEMS.ref)
    lake.overwrite(spark.createDataFrame(events, EVENTS_DDL), EVENTS.ref)


def config_in(folder, mlflow_store, *overrides: str):
    return load_config(LOCAL_CONF, [*base_overrides(folder, mlflow_store), *OVERRIDES, *overrides])


def gold(spark, config, ref):
    return Lakehouse(spark, config.lakehouse).read(ref)


@pytest.fixture(scope="module")
def full_run(spark, tmp_path_factory, mlflow_store):
    """One full run (with forecast and inventory) on the sample data: (config, summary)."""
    config = config_in(tmp_path_factory.mktemp("demand_full"), mlflow_store, f"demand.end_date={END}")
    write_silver(spark, config, END)
    return config, run_job("demand_features", config, spark)


def test_full_run_features_equal_the_pandas_reference(spark, full_run):
    config, summary = full_run
    features = gold(spark, config, SKU_DEMAND_FEATURES)
    assert set(METADATA) | {"month_start"} <= set(features.columns)
    assert features.select("run_id").distinct().collect()[0][0] == summary.run_id
    columns = numeric_columns(config.demand)
    expected = pandas_to_spark(spark, reference_features(), columns)
    assert_approx_df_equality(as_doubles(features.select(*columns)).orderBy("sku", "date"),
                              expected.orderBy("sku", "date"), precision=1e-9, ignore_nullable=True)


def artifact_table(run_id: str, name: str) -> pd.DataFrame:
    return pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{name}.csv"))


def test_full_run_inventory_signals_and_mlflow(spark, full_run):
    config, summary = full_run
    signals = gold(spark, config, INVENTORY_SIGNALS).toPandas().set_index("sku")
    assert sorted(signals.index) == ["A", "B", "C", "E"]           # D was delisted before the end date
    assert set(signals.columns) >= set(INVENTORY_COLUMNS) - {"sku"}      # sku is the index
    # the one-day SKU gets a flagged fallback from its one day, never 0
    assert signals.loc["C", "forecast_model"] == signals.loc["C", "fallback_reason"] == "short_history"
    assert signals.loc["C", "forecast_lead_time_units"] == pytest.approx(2 * 3)
    assert (signals["reorder_point_units"] > 0).all()
    np.testing.assert_allclose(signals.reorder_point_units, signals.lead_time_service_units + signals.undershoot_units)
    assert (signals.undershoot_units > 0).any() and (signals.undershoot_units >= 0).all()
    np.testing.assert_allclose(signals.safety_stock_units,
                               signals.reorder_point_units - signals.forecast_lead_time_units)
    assert (signals.lead_time_p50_units <= signals.lead_time_p90_units + 1e-9).all()
    assert (signals.lead_time_p90_units <= signals.reorder_point_units + 1e-9).all()      # P95 >= P90

    run = mlflow.get_run(summary.run_id)
    metrics, params = run.data.metrics, run.data.params
    for sku in ("A", "E"):                                        # long histories: the choice of their class
        row = signals.loc[sku]
        assert row["fallback_reason"] is None or row["fallback_reason"] == "fit_failed"
        assert row["forecast_model"] == params[f"demand.chosen_model_{row['demand_class']}"]
    assert metrics["zero_wape_all"] == pytest.approx(1.0)         # Σ|y - 0| / Σy
    for name in ("backtest_wape_all", "backtest_bias_all", "backtest_mase_all", "moving_average_wape_all",
                 "pinball_loss_p90_all", "p90_coverage_all", "p95_coverage_all"):
        assert name in metrics, name
    # the choice was made on the selection origins, never losing to a baseline there
    selection = artifact_table(summary.run_id, "backtest_selection_scores").set_index(["class", "model"])["wape"]
    chosen = params["demand.chosen_model_all"]
    assert selection[("all", chosen)] <= min(selection[("all", "zero")], selection[("all", "moving_average")])
    report = artifact_table(summary.run_id, "backtest_report_scores").set_index(["class", "model"])["wape"]
    assert report[("all", "chosen")] == pytest.approx(metrics["backtest_wape_all"])
    assert run.data.metrics["lines_after_end_date"] == 1 and run.data.metrics["lines_orphan_item"] == 1
    assert run.data.params["demand.resolved_end_date"] == str(END)
    assert any("busy SKU" in line for line in summary.lines)
    assert any("chosen models vs the zero forecast" in line for line in summary.lines)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary.run_id)}
    assert {"backtest_error_by_class.png", "fan_chart.png"} <= artifacts


def test_incremental_run_equals_full_run(spark, full_run, tmp_path, mlflow_store):
    early = dt.date(2024, 3, 10)
    first = config_in(tmp_path, mlflow_store, "demand.forecast=false", f"demand.end_date={early}")
    write_silver(spark, first, early)
    run_job("demand_features", first, spark)
    assert gold(spark, first, SKU_DEMAND_FEATURES).agg(F.max("date")).first()[0] == early

    # 21 days later with incremental_days=14: the gap is wider, so the run goes back to 03-09
    incremental = config_in(tmp_path, mlflow_store, "demand.forecast=false", f"demand.end_date={END}",
                            "demand.mode=incremental", "demand.incremental_days=14")
    write_silver(spark, incremental, END)
    run_job("demand_features", incremental, spark)
    history = Lakehouse(spark, incremental.lakehouse).history(SKU_DEMAND_FEATURES, 1)[0]
    assert "2024-03-09" in history["operationParameters"]["predicate"]     # stored end - horizon + 2

    got = gold(spark, incremental, SKU_DEMAND_FEATURES).drop(*METADATA, "month_start")
    want = gold(spark, full_run[0], SKU_DEMAND_FEATURES).drop(*METADATA, "month_start")
    assert got.count() == want.count()
    assert_approx_df_equality(as_doubles(got).orderBy("sku", "date"), as_doubles(want).orderBy("sku", "date"),
                              precision=1e-12, ignore_nullable=True)
