"""End to end: generate → ingest → demand_features through ``runtime.main`` at a small size."""

from __future__ import annotations

from pyspark.sql import functions as F

from shopai_spark.demand.job import INVENTORY_SIGNALS, SKU_DEMAND_FEATURES
from shopai_spark.demand.job import run as demand_job
from shopai_spark.generate.job import run as generate_job
from shopai_spark.ingest.job import run as ingest_job
from shopai_spark.runtime import main
from shopai_spark.schemas import ORDER_ITEMS, TRUTH_PROMOTIONS
from shopai_spark.tables import Lakehouse

from .conftest import LOCAL_CONF, base_overrides

SMALL = ["generate.users=300", "generate.skus=40", "generate.days=120", "generate.events_per_user=20",
         "generate.dirt_share=0.02", "demand.promotions_table=bronze.truth_promotions", "demand.gbt_max_iter=5",
         "demand.holdout_days=14"]


def test_generate_ingest_demand(tmp_path, mlflow_store, make_config, spark, capsys):
    args = ["--conf", str(LOCAL_CONF)]
    for item in [*base_overrides(tmp_path, mlflow_store), *SMALL]:
        args += ["--set", item]
    for name, job in (("generate_data", generate_job), ("ingest", ingest_job), ("demand_features", demand_job)):
        assert main(name, job, args) == 0
    out = capsys.readouterr().out
    assert "== demand_features" in out and "busy SKU" in out and "reorder point" in out

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
    assert lake.read(INVENTORY_SIGNALS).filter("reorder_point_units < forecast_lead_time_units").count() == 0
