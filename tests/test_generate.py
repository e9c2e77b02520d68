"""The synthetic shop: deterministic, Spark-native, and carrying the structure the other jobs must find."""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from shopai_spark.app import main
from shopai_spark.generate import shop
from shopai_spark.generate.config import GenerateConfig
from shopai_spark.schemas import TRUTH_BUNDLES, TRUTH_PROMOTIONS, TRUTH_SEGMENTS, TRUTH_SKU_DEMAND
from shopai_spark.tables import Lakehouse

from .conftest import LOCAL_CONF, base_overrides

pytestmark = pytest.mark.e2e

SMALL = GenerateConfig(users=600, skus=90, categories=6, days=120, events_per_user=60, bundles=4, seed=7)


@pytest.fixture(scope="module")
def planned(spark):
    """customers, catalog and sales order lines of SMALL, cached for the module."""
    customers = shop.customers(spark, SMALL).cache()
    skus = shop.catalog(spark, SMALL).cache()
    lines = shop.order_lines(customers, skus, SMALL).cache()
    yield customers, skus, lines
    for frame in (customers, skus, lines):
        frame.unpersist()


def test_same_seed_same_rows_whatever_the_partitioning(spark, planned):
    customers, skus, lines = planned
    again = shop.order_lines(shop.customers(spark, SMALL).repartition(5), shop.catalog(spark, SMALL), SMALL)
    order = ["invoice_no", "sku"]
    assert_df_equality(lines.orderBy(order), again.orderBy(order))
    other_seed = GenerateConfig(**{**SMALL.__dict__, "seed": 8})
    other = shop.order_lines(shop.customers(spark, other_seed), shop.catalog(spark, other_seed), other_seed)
    assert other.select("invoice_no", "sku").exceptAll(lines.select("invoice_no", "sku")).count() > 0


def test_events_reach_the_configured_volume_and_follow_the_funnel(spark, planned):
    customers, skus, lines = planned
    per_user = shop.browse_events_per_user(SMALL, lines.count())
    events = shop.events(customers, skus, lines, SMALL, per_user).cache()
    total = events.count()
    assert abs(total - SMALL.users * SMALL.events_per_user) <= 0.1 * SMALL.users * SMALL.events_per_user
    kinds = {r["event_type"]: r["count"] for r in events.groupBy("event_type").count().collect()}
    assert kinds["view"] > kinds["add_to_cart"] > kinds["purchase"] == lines.count()
    # every purchase has a view and a cart-add of the same SKU earlier in its session
    ordered = events.groupBy("session_id", "sku").agg(
        F.min(F.when(F.col("event_type") == "view", F.col("event_ts"))).alias("viewed"),
        F.min(F.when(F.col("event_type") == "add_to_cart", F.col("event_ts"))).alias("carted"),
        F.min(F.when(F.col("event_type") == "purchase", F.col("event_ts"))).alias("bought"))
    purchases = ordered.filter(F.col("bought").isNotNull())
    assert purchases.filter(~((F.col("viewed") < F.col("carted")) & (F.col("carted") < F.col("bought")))).count() == 0
    events.unpersist()


def test_segments_differ_in_recency_frequency_and_spend(planned):
    customers, _, lines = planned
    last_day = SMALL.days - 1
    per_customer = lines.groupBy("user_id").agg(
        F.countDistinct("invoice_no").alias("placed"), (last_day - F.max("day")).alias("recency"),
        F.sum(F.col("quantity") * F.col("unit_price")).alias("spend"))
    by_segment = {r["segment_name"]: r for r in customers.select("user_id", "segment_name").join(per_customer, "user_id").groupBy("segment_name").agg(
        F.count(F.lit(1)).alias("customers"), F.avg("placed").alias("orders"), F.avg("recency").alias("recency"),
        F.avg("spend").alias("spend")).collect()}
    assert set(by_segment) == {s.name for s in shop.SEGMENTS}
    champions, hibernating, new = by_segment["champions"], by_segment["hibernating"], by_segment["new"]
    assert champions["orders"] > 2 * hibernating["orders"]
    assert champions["spend"] > 3 * hibernating["spend"]
    assert champions["recency"] < 10 < hibernating["recency"]
    assert new["recency"] < 10
    shares = {name: row["customers"] / SMALL.users for name, row in by_segment.items()}
    assert all(abs(shares[s.name] - s.share) < 0.06 for s in shop.SEGMENTS), shares


def test_popularity_is_skewed_and_nothing_sells_before_launch(planned):
    _, skus, lines = planned
    units = lines.groupBy("sku").agg(F.sum("quantity").alias("units")).orderBy(F.desc("units")).toPandas()
    top_tenth = units["units"].head(len(units) // 10).sum() / units["units"].sum()
    assert top_tenth > 0.25, f"top 10% of SKUs sell {top_tenth:.0%} of units: not Zipf-like"
    early = lines.join(skus.select("sku", "launch_day"), "sku").filter(F.col("day") < F.col("launch_day"))
    assert early.count() == 0
    assert skus.filter(F.col("launch_day") > 0).count() > 0


def test_planted_bundles_are_bought_together(planned):
    _, skus, lines = planned
    baskets = lines.groupBy("invoice_no").agg(F.collect_set("sku_index").alias("items"))
    orders = baskets.count()
    for row in shop.bundles(skus, SMALL).collect():
        together = baskets.filter(F.size(F.array_intersect("items", F.array(*map(F.lit, row["skus"]))))
                                  == len(row["skus"])).count()
        expected = orders * SMALL.bundle_rate / SMALL.bundles
        assert together >= 0.6 * expected, (row["skus"], together, expected)


def test_promotions_lower_the_price_and_lift_demand(spark, planned):
    _, skus, lines = planned
    promos = shop.truth_promotions(skus, SMALL).withColumn(
        "start_day", F.datediff("start_date", F.lit(shop.period_start(SMALL))))
    on_promo = lines.join(promos, "sku").filter(
        F.col("day").between(F.col("start_day"), F.col("start_day") + F.datediff("end_date", "start_date")))
    assert on_promo.count() > 0
    promo_days = promos.select(F.sum(F.datediff("end_date", "start_date") + 1)).first()[0]
    promo_skus = [r["sku"] for r in promos.select("sku").distinct().collect()]
    promo_units = on_promo.agg(F.sum("quantity")).first()[0]
    other_units = lines.filter(F.col("sku").isin(promo_skus)).agg(F.sum("quantity")).first()[0] - promo_units
    other_days = len(promo_skus) * SMALL.days - promo_days
    assert promo_units / promo_days > 1.3 * other_units / other_days, (promo_units, other_units)
    # the order line's price is the discounted list price
    discounted = on_promo.join(skus.select("sku", "base_price", "price_change_day"), "sku") \
        .filter(F.col("price_change_day").isNull())
    assert discounted.filter(F.abs(F.col("unit_price") - F.round(F.col("base_price") * (1 - F.col("discount")), 2))
                             > 0.005).count() == 0


def test_dirt_marks_about_the_requested_share(spark, planned):
    _, skus, lines = planned
    raw = shop.orders(lines, SMALL)
    spoilt = shop.dirty(raw, "orders", 0.1, seed=3)
    kinds = {r["dirt_kind"]: r["count"] for r in spoilt.groupBy("dirt_kind").count().collect()}
    clean_rows = raw.count()
    dirty_rows = sum(n for kind, n in kinds.items() if kind) - kinds["duplicate_row"] / 2
    assert set(kinds) - {None} == set(shop.DIRT_KINDS["orders"])
    assert 0.07 < dirty_rows / clean_rows < 0.13
    assert spoilt.filter(F.col("InvoiceNo").startswith("C") & F.col("dirt_kind").isNotNull()).count() == 0
    negative = spoilt.filter((F.col("dirt_kind") == "negative_quantity") & (F.col("Quantity") >= 0))
    assert negative.count() == 0
    cancellations = raw.filter(F.col("InvoiceNo").startswith("C"))
    assert cancellations.count() > 0 and cancellations.filter("Quantity >= 0").count() == 0


def test_generate_job_writes_raw_files_and_truth(spark, tmp_path, mlflow_store, make_config):
    sets = [*base_overrides(tmp_path, mlflow_store), "generate.users=200", "generate.skus=40",
            "generate.days=60", "generate.events_per_user=15", "generate.dirt_share=0.05", "generate.bundles=3"]
    assert main("generate_data", ["--conf", str(LOCAL_CONF), *[f"--set={s}" for s in sets]]) == 0
    config = make_config(*sets[-6:])
    raw = tmp_path / "raw"
    orders = spark.read.option("header", True).csv(str(raw / "orders"))
    assert orders.columns == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                              "CustomerID", "Country"]
    events = spark.read.json(str(raw / "events"))
    assert set(events.columns) == {"user_id", "session_id", "sku", "event_type", "event_ts", "price"}
    assert spark.read.option("header", True).csv(str(raw / "products")).count() >= 40

    lake = Lakehouse(spark, config.lakehouse)
    assert lake.read(TRUTH_SEGMENTS).count() == 200
    assert lake.read(TRUTH_SKU_DEMAND).count() == 40
    assert lake.read(TRUTH_BUNDLES).select("bundle_id").distinct().count() == 3
    promos = lake.read(TRUTH_PROMOTIONS)
    end = dt.date.fromisoformat(config.generate.end_date)
    assert promos.filter((F.col("end_date") > F.lit(end)) | (F.col("start_date") > F.col("end_date"))).count() == 0

    run_row = mlflow.search_runs(experiment_names=[config.tracking.experiment]).iloc[0]
    assert run_row["metrics.rows.raw.events"] == events.count()
    assert run_row["metrics.dirt.duplicate_row"] > 0 and run_row["metrics.dirt.bad_timestamp"] > 0
