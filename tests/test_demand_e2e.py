"""End to end: demand_features through the entry point ``app.main`` on the generated shop.

Heavy (``make test-heavy``): in CI the cluster test and the Connect test run this job through its
entry point on a generated shop, and the job's own tests run it on small planted data.
"""

from __future__ import annotations

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import main
from shopai_spark.demand.job import INVENTORY_SIGNALS, SKU_DEMAND_FEATURES
from shopai_spark.schemas import ORDER_ITEMS, TRUTH_PROMOTIONS
from shopai_spark.tables import Lakehouse

from .conftest import cli_args

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

# ARIMA (three quarters of the per-SKU fitting time) is left out here; tests/test_demand_models.py
# checks it against the library, and the pipeline tests run it.
SMALL = ["demand.promotions_table=bronze.truth_promotions", "demand.gbt_max_iter=5", "demand.backtest_origins=6",
         "demand.selection_origins=3", "demand.models=[zero,moving_average,seasonal_naive,ets,croston_sba,tsb,imapa,gbt]"]


def test_demand_on_the_generated_shop(tmp_path, mlflow_store, shop_lakehouse, make_config, spark, capsys):
    assert main("demand_features", cli_args(tmp_path, mlflow_store, *SMALL)) == 0
    out = capsys.readouterr().out
    assert "== demand_features" in out and "busy SKU" in out and "reorder point" in out
    assert "none worse on the selection origins" in out

    lake = Lakehouse(spark, make_config(*SMALL).lakehouse)
    features = lake.read(SKU_DEMAND_FEATURES)
    lives = features.groupBy("sku").agg(F.count("*").alias("n"), F.min("date").alias("a"), F.max("date").alias("b"))
    assert lives.filter(F.col("n") != F.datediff("b", "a") + 1).count() == 0          # calendar-complete
    assert features.groupBy("sku", "date").count().filter("count > 1").count() == 0
    sold = lake.read(ORDER_ITEMS.ref).agg(F.sum("quantity")).first()[0]
    assert features.agg(F.sum("units")).first()[0] <= sold                             # only lines in range

    # promo_flag comes from the planted promotions table
    promos = lake.read(TRUTH_PROMOTIONS)
    covered = (features.join(promos, "sku").filter(F.col("date").between(F.col("start_date"), F.col("end_date")))
               .select("sku", "date").distinct().count())
    assert covered > 0 and features.filter("promo_flag").count() == covered
    # every SKU active on the end date gets a positive reorder point and says where it came from
    signals = lake.read(INVENTORY_SIGNALS).toPandas()
    assert len(signals) > 0 and (signals["reorder_point_units"] > 0).all()
    assert signals["forecast_model"].notna().all() and signals["interval_source"].notna().all()
    assert ((signals["reorder_point_units"] - signals["forecast_lead_time_units"]
             - signals["safety_stock_units"]).abs() < 1e-9).all()
    # the GBT tracks each SKU's level: over the report origins it forecasts about what the moving
    # average does, not half of it (the old absolute-units GBT's failure on this shop)
    metrics = mlflow.get_run(mlflow.search_runs(experiment_names=[make_config().tracking.experiment])
                             .iloc[0]["run_id"]).data.metrics
    assert metrics["gbt_bias_all"] > metrics["moving_average_bias_all"] - 0.15
    assert metrics["zero_wape_all"] == pytest.approx(1.0)
