"""The demand_features job end to end on silver tables written in the test: gold tables, MLflow,
incremental == full, forecast metrics and inventory signals against plain Python."""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import mlflow
import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from shopai_spark.app import load_config, run_job
from shopai_spark.demand import forecast as fc
from shopai_spark.demand import inventory as inv
from shopai_spark.demand.features import output_columns
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
             "demand.lead_time_days=3", "demand.holdout_days=7", "demand.gbt_max_iter=5", "demand.gbt_max_depth=3")
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
    columns = output_columns(config.demand)
    expected = pandas_to_spark(spark, reference_features(), columns)
    assert_approx_df_equality(as_doubles(features.select(*columns)).orderBy("sku", "date"),
                              expected.orderBy("sku", "date"), precision=1e-9, ignore_nullable=True)


def test_full_run_inventory_signals_and_mlflow(spark, full_run):
    config, summary = full_run
    signals = gold(spark, config, INVENTORY_SIGNALS).toPandas().set_index("sku")
    assert sorted(signals.index) == ["A", "B", "C", "E"]           # D was delisted before the end date
    z = NormalDist().inv_cdf(0.95)
    np.testing.assert_allclose(signals.safety_stock_units, z * signals.forecast_error_std)
    np.testing.assert_allclose(signals.reorder_point_units,
                               signals.forecast_lead_time_units + signals.safety_stock_units)
    assert signals.loc["C", "error_std_source"] == "poisson"           # no hold-out rows for the new SKU
    assert signals.loc["C", "forecast_error_std"] == pytest.approx(
        math.sqrt(signals.loc["C", "forecast_lead_time_units"]))
    assert (signals.loc[["A", "E"], "error_std_source"] == "holdout").all()

    run = mlflow.get_run(summary.run_id)
    wape = {model: run.data.metrics[f"{model}_wape"] for model in ("seasonal_naive", "gbt")}
    assert all(0 <= value < 10 for value in wape.values()) and "gbt_mase" in run.data.metrics
    assert set(signals.forecast_model) == {min(wape, key=wape.get)}     # the signals use the better model
    assert run.data.metrics["lines_after_end_date"] == 1 and run.data.metrics["lines_orphan_item"] == 1
    assert run.data.params["demand.resolved_end_date"] == str(END)
    assert any("busy SKU" in line for line in summary.lines)


def test_incremental_run_equals_full_run(spark, full_run, tmp_path, mlflow_store):
    early = dt.date(2024, 3, 20)
    first = config_in(tmp_path, mlflow_store, "demand.forecast=false", f"demand.end_date={early}")
    write_silver(spark, first, early)
    run_job("demand_features", first, spark)
    assert gold(spark, first, SKU_DEMAND_FEATURES).agg(F.max("date")).first()[0] == early

    incremental = config_in(tmp_path, mlflow_store, "demand.forecast=false", f"demand.end_date={END}",
                            "demand.mode=incremental", "demand.incremental_days=14")
    write_silver(spark, incremental, END)
    run_job("demand_features", incremental, spark)
    history = Lakehouse(spark, incremental.lakehouse).history(SKU_DEMAND_FEATURES, 1)[0]
    assert "2024-03-18" in history["operationParameters"]["predicate"]     # only the last 14 days replaced

    got = gold(spark, incremental, SKU_DEMAND_FEATURES).drop(*METADATA, "month_start")
    want = gold(spark, full_run[0], SKU_DEMAND_FEATURES).drop(*METADATA, "month_start")
    assert got.count() == want.count()
    assert_approx_df_equality(as_doubles(got).orderBy("sku", "date"), as_doubles(want).orderBy("sku", "date"),
                              precision=1e-12, ignore_nullable=True)


def test_error_metrics_match_plain_python(spark):
    rows = [("a", 4.0, 3.0, 5.0), ("a", 0.0, 1.0, 0.5), ("b", 10.0, 7.0, 9.0), ("b", 6.0, 6.0, 2.0)]
    df = spark.createDataFrame(rows, f"sku STRING, {fc.LABEL} DOUBLE, {fc.NAIVE} DOUBLE, {fc.GBT} DOUBLE")
    got = fc.error_metrics(df, fc.MODELS, scale=2.0)
    y = np.array([r[1] for r in rows])
    for i, model in enumerate(fc.MODELS, start=2):
        err = np.abs(y - np.array([r[i] for r in rows]))
        assert got[f"{model}_wape"] == pytest.approx(err.sum() / y.sum())
        assert got[f"{model}_mase"] == pytest.approx(err.mean() / 2.0)
    spread = {r["sku"]: r["error_std"] for r in inv.error_spread(df, fc.GBT).collect()}
    assert spread["a"] == pytest.approx(np.std([4.0 - 5.0, 0.0 - 0.5], ddof=1))


def test_seasonal_naive_and_split_have_no_overlap(spark):
    units = [(dt.date(2024, 1, 1) + dt.timedelta(days=i), i) for i in range(20)]
    df = spark.createDataFrame([("s", d, u) for d, u in units], "sku STRING, date DATE, units LONG")
    naive = {r["date"]: r["n"] for r in df.select("date", fc.seasonal_naive(9).alias("n")).collect()}
    # day t+k-1 ← units at t+k-1-7*ceil(k/7): for t = day 14: days 7..13 then 7, 8 again (k = 8, 9)
    assert naive[units[14][0]] == sum(range(7, 14)) + 7 + 8
    assert naive[units[6][0]] is None and naive[units[7][0]] == sum(range(0, 7)) + 0 + 1
    from shopai_spark.demand.config import DemandConfig
    split = fc.time_split(dt.date(2024, 3, 31), DemandConfig(lead_time_days=3, holdout_days=7))
    assert split.holdout_end == dt.date(2024, 3, 29) and split.holdout_start == dt.date(2024, 3, 23)
    assert split.train_end + dt.timedelta(days=3 - 1) < split.holdout_start
