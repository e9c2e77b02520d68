"""generate → ingest → als through ``shopai_spark.runtime.main`` (the jobs' entry point) at a small size."""

from __future__ import annotations

from pyspark.sql import functions as F

from shopai_spark.generate.job import run as generate
from shopai_spark.ingest.job import run as ingest
from shopai_spark.recommend.job import USER_RECOMMENDATIONS
from shopai_spark.recommend.job import run as als
from shopai_spark.runtime import main
from shopai_spark.schemas import EVENTS, ORDERS
from shopai_spark.tables import Lakehouse

from .conftest import LOCAL_CONF, base_overrides

SMALL = ["generate.users=200", "generate.skus=40", "generate.days=90", "generate.events_per_user=15",
         "generate.dirt_share=0.02", "als.rank=8", "als.max_iter=5", "als.num_blocks=2", "als.top_n=5",
         "als.split=time", "als.registered_model=null"]


def test_generate_ingest_als(spark, tmp_path, mlflow_store, make_config, capsys):
    sets = [*base_overrides(tmp_path, mlflow_store), *SMALL]
    argv = ["--conf", str(LOCAL_CONF), *[a for s in sets for a in ("--set", s)]]
    for name, job in (("generate_data", generate), ("ingest", ingest), ("als", als)):
        assert main(name, job, argv) == 0
    out = capsys.readouterr().out
    assert "== als" in out and "sample user" in out and "popularity" in out
    lake = Lakehouse(spark, make_config(*SMALL).lakehouse)
    recs = lake.read(USER_RECOMMENDATIONS)
    known = lake.read(EVENTS.ref).select("user_id").union(lake.read(ORDERS.ref).select("user_id")).distinct()
    assert known.subtract(recs.select("user_id")).count() == 0
    assert recs.groupBy("user_id").count().where("count != 5").count() == 0
    bought = lake.read(EVENTS.ref).where("event_type = 'purchase'").select("user_id", "sku").distinct()
    assert recs.join(bought, ["user_id", "sku"]).count() == 0
    assert recs.where(F.col("is_fallback")).count() < recs.count()
