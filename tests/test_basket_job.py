"""The fpgrowth job end to end on silver tables with planted bundles: gold outputs, MLflow, the guard
and the refusal to write empty results."""

from __future__ import annotations

import datetime as dt
import random

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import main, run_job
from shopai_spark.basket.guard import SearchTooLargeError
from shopai_spark.basket.job import (
    ASSOCIATION_RULES,
    FREQUENT_ITEMSETS,
    FREQUENTLY_BOUGHT_TOGETHER,
    top_rules,
)
from shopai_spark.schemas import ORDER_ITEMS, ORDERS, PRODUCTS
from shopai_spark.tables import EmptyOutputError, Lakehouse
from tests import test_basket_reference as ref
from tests.conftest import cli_args

pytestmark = pytest.mark.e2e

BUNDLES = ({"P05", "P06", "P07"}, {"P20", "P21"})
GOLD = (FREQUENT_ITEMSETS, ASSOCIATION_RULES, FREQUENTLY_BOUGHT_TOGETHER)


def planted_orders(seed: int = 7, n: int = 800, skus: int = 40) -> list[list[str]]:
    """Zipf-ish single items per order; bundle 1 added to 8% of orders, bundle 2 to 6%."""
    rng = random.Random(seed)
    names = [f"P{i:02d}" for i in range(skus)]
    weights = [1 / (i + 1) for i in range(skus)]
    orders = []
    for _ in range(n):
        items = rng.choices(names, weights, k=rng.randint(1, 5))
        for bundle, share in zip(BUNDLES, (0.08, 0.06), strict=True):
            if rng.random() < share:
                items += sorted(bundle)
        orders.append(items)
    return orders


@pytest.fixture
def silver(spark, make_config):
    """Silver orders/order_items/products from planted_orders (+ a null-SKU line and an empty order)."""
    config = make_config("fpgrowth.min_support=0.02", "fpgrowth.min_confidence=0.5")
    lake = Lakehouse(spark, config.lakehouse)
    data = planted_orders()
    start = dt.datetime(2024, 1, 1)
    orders = [(f"o{i}", f"u{i % 50}", start + dt.timedelta(hours=i), "DE") for i in range(len(data) + 1)]
    lines = [(f"o{i}", sku, 1, 2.5) for i, items in enumerate(data) for sku in items] + [("o0", None, 1, 1.0)]
    products = [(f"P{i:02d}", f"Product {i}", f"cat{i % 4}", "brand", 2.5) for i in range(40)]
    lake.overwrite(spark.createDataFrame(orders, "order_id STRING, user_id STRING, order_ts TIMESTAMP, country STRING"),
                   ORDERS.ref)
    lake.overwrite(spark.createDataFrame(lines, "order_id STRING, sku STRING, quantity INT, unit_price DOUBLE"),
                   ORDER_ITEMS.ref)
    lake.overwrite(spark.createDataFrame(products, "sku STRING, title STRING, category STRING, brand STRING, "
                                                   "list_price DOUBLE"), PRODUCTS.ref)
    return config, lake, data


def test_job_guard_then_mining_then_refusal(spark, make_config, silver):
    config, lake, data = silver
    # 1. a support far too low: the guard stops the job before anything is written
    with pytest.raises(SearchTooLargeError, match="Suggested: --set fpgrowth.min_support="):
        run_job("fpgrowth", make_config("fpgrowth.min_support=0.002", "fpgrowth.max_itemsets=200"), spark)
    assert not any(lake.exists(ref_) for ref_ in GOLD)

    # 2. a good run
    summary = run_job("fpgrowth", config, spark)
    baskets = [frozenset(items) for items in data]
    exact = ref.frequent_itemsets(baskets, 0.02)
    expected_rules = ref.rules(exact, len(baskets), 0.5)
    assert summary.tables == {str(FREQUENT_ITEMSETS): len(exact), str(ASSOCIATION_RULES): len(expected_rules),
                              str(FREQUENTLY_BOUGHT_TOGETHER): lake.read(FREQUENTLY_BOUGHT_TOGETHER).count()}
    rules = lake.read(ASSOCIATION_RULES)
    assert {"run_id", "generated_at", "antecedent_names", "rule_text"} <= set(rules.columns)
    assert rules.select("run_id").distinct().collect()[0][0] == summary.run_id
    ref.assert_rules_match(ref.spark_rules(rules), expected_rules)
    assert ref.spark_itemsets(lake.read(FREQUENT_ITEMSETS)) == exact

    # planted bundles come back as the high-lift rules, with readable names
    strong = [r for r in rules.filter(F.col("lift") >= 3).collect()]
    # (every high-lift rule predicts a bundle item from another item of the same bundle)
    assert strong and all(any(r["consequent"][0] in b and set(r["antecedent"]) & b for b in BUNDLES) for r in strong)
    for bundle in BUNDLES:
        for item in bundle:
            assert any(r["consequent"] == [item] and set(r["antecedent"]) <= bundle for r in strong), item
    best = top_rules(rules, 1)["rule_text"].iloc[0]
    assert best.startswith("{Product ") and summary.lines[1].strip().startswith(best)
    fbt = lake.read(FREQUENTLY_BOUGHT_TOGETHER)
    top = {r["sku"]: r["companion_sku"] for r in fbt.filter("rank = 1").collect()}
    assert top["P05"] in {"P06", "P07"} and top["P20"] == "P21"

    # MLflow: counts by size/length, data-quality counts, the CSV and the PNG
    client = mlflow.tracking.MlflowClient(config.tracking.tracking_uri)
    metrics = client.get_run(summary.run_id).data.metrics
    assert metrics["rules"] == len(expected_rules) and metrics["baskets.null_sku_lines"] == 1
    assert metrics["baskets.empty_baskets"] == 1 and metrics["baskets.baskets"] == len(data)
    assert metrics["itemsets.size_3"] == sum(1 for k in exact if len(k) == 3)
    artifacts = {a.path for a in client.list_artifacts(summary.run_id)}
    assert {"top_rules.csv", "rules_support_confidence.png"} <= artifacts

    # 3. no rule reaches the confidence: refused, previous outputs kept
    versions = {ref_: lake.version(ref_) for ref_ in GOLD}
    with pytest.raises(EmptyOutputError, match="min_confidence"):
        run_job("fpgrowth", make_config("fpgrowth.min_support=0.3", "fpgrowth.min_confidence=1.0"), spark)
    assert {ref_: lake.version(ref_) for ref_ in GOLD} == versions


def test_missing_silver_tables_are_one_clear_line(tmp_path, mlflow_store, capsys):
    assert main("fpgrowth", cli_args(tmp_path, mlflow_store)) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fpgrowth failed: fpgrowth needs silver.orders, silver.order_items")
    assert "run jobs/ingest.py" in err[-1]
