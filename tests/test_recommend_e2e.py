"""als through ``shopai_spark.runtime.main`` (the jobs' entry point) on the generated shop.

Heavy (``make test-heavy``): in CI the cluster test and the Connect test run this job through its
entry point on a generated shop, and the job's own tests run it on small planted data.
"""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from shopai_spark.app import main
from shopai_spark.recommend.job import USER_RECOMMENDATIONS
from shopai_spark.schemas import EVENTS, ORDERS
from shopai_spark.tables import Lakehouse

from .conftest import cli_args

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

SMALL = ["als.rank=8", "als.max_iter=5", "als.num_blocks=2", "als.top_n=5",
         "als.split=time", "als.registered_model=null"]


def test_als_on_the_generated_shop(spark, tmp_path, mlflow_store, shop_lakehouse, make_config, capsys):
    assert main("als", cli_args(tmp_path, mlflow_store, *SMALL)) == 0
    out = capsys.readouterr().out
    assert "== als" in out and "sample user" in out and "popularity" in out
    lake = Lakehouse(spark, make_config(*SMALL).lakehouse)
    recs = lake.read(USER_RECOMMENDATIONS)
    known = lake.read(EVENTS.ref).select("user_id").union(lake.read(ORDERS.ref).select("user_id")).distinct()
    assert known.where("user_id IS NOT NULL").subtract(recs.select("user_id")).count() == 0
    assert recs.where("user_id IS NULL").count() == 0   # guest checkouts get no row
    assert recs.groupBy("user_id").count().where("count != 5").count() == 0
    bought = lake.read(EVENTS.ref).where("event_type = 'purchase'").select("user_id", "sku").distinct()
    assert recs.join(bought, ["user_id", "sku"]).count() == 0
    # the served lists come from the recommender that did best on validation, said in one line
    served = [line for line in out.splitlines() if line.startswith("  served: ")]
    assert len(served) == 1 and "validation ndcg_at_k: popularity " in served[0], served
    fallback = recs.where(F.col("is_fallback")).count()
    assert (fallback == recs.count()) == served[0].startswith("  served: popularity to every user")
