"""The silver table contract (see docs/tables.md): table refs, DDL and Delta CHECK constraints.

Ids are strings, timestamps UTC, money in the shop's currency as DOUBLE. An order or return whose
``user_id`` is null is a guest checkout: it counts for baskets and demand, and the per-customer jobs
(ALS, segments) leave it out and count it. ``source_lines`` (order_items, returns) is the number of
raw export lines merged into the row; every other silver row is one raw line (products derived from
order lines are the exception: they are no raw line, see docs/tables.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shopai_spark.tables import TableRef

EVENT_TYPES = ("view", "add_to_cart", "purchase")


def _finite_not_negative(column: str) -> str:
    """CHECK expression: ``column`` is a number in [0, +inf) (Spark orders NaN above +inf, so
    ``x >= 0`` alone lets NaN through)."""
    return f"({column} >= 0 AND {column} < double('Infinity'))"


@dataclass(frozen=True, eq=False)
class SilverTable:
    """A silver table: where it is, its columns (DDL), its merge keys and CHECK constraints."""

    ref: TableRef
    ddl: str
    keys: tuple[str, ...]
    constraints: dict[str, str] = field(default_factory=dict)


EVENTS = SilverTable(
    TableRef("silver", "events"),
    "user_id STRING NOT NULL, session_id STRING NOT NULL, sku STRING NOT NULL, event_type STRING NOT NULL, "
    "event_ts TIMESTAMP NOT NULL, price DOUBLE",
    keys=("user_id", "session_id", "sku", "event_type", "event_ts"),
    constraints={"known_event_type": "event_type IN ('view', 'add_to_cart', 'purchase')",
                 "price_finite_not_negative": "price IS NULL OR " + _finite_not_negative("price")},
)
ORDERS = SilverTable(
    TableRef("silver", "orders"),
    "order_id STRING NOT NULL, user_id STRING, order_ts TIMESTAMP NOT NULL, country STRING",
    keys=("order_id",),
)
ORDER_ITEMS = SilverTable(
    TableRef("silver", "order_items"),
    "order_id STRING NOT NULL, sku STRING NOT NULL, quantity INT NOT NULL, unit_price DOUBLE NOT NULL, "
    "source_lines INT NOT NULL",
    keys=("order_id", "sku"),
    constraints={"quantity_positive": "quantity > 0", "unit_price_finite_not_negative": _finite_not_negative("unit_price"),
                 "source_lines_positive": "source_lines > 0"},
)
RETURNS = SilverTable(
    TableRef("silver", "returns"),
    "return_id STRING NOT NULL, original_order_id STRING NOT NULL, user_id STRING, sku STRING NOT NULL, "
    "quantity INT NOT NULL, unit_price DOUBLE NOT NULL, return_ts TIMESTAMP NOT NULL, source_lines INT NOT NULL",
    keys=("return_id", "sku"),
    constraints={"returned_quantity_positive": "quantity > 0", "unit_price_finite_not_negative": _finite_not_negative("unit_price"),
                 "source_lines_positive": "source_lines > 0"},
)
PRODUCTS = SilverTable(
    TableRef("silver", "products"),
    "sku STRING NOT NULL, title STRING, category STRING, brand STRING, list_price DOUBLE",
    keys=("sku",),
    constraints={"list_price_finite_not_negative": "list_price IS NULL OR " + _finite_not_negative("list_price")},
)
SILVER_TABLES = (EVENTS, ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS)

# Ground truth planted by the synthetic generator (bronze layer), used to score the jobs.
TRUTH_SEGMENTS = TableRef("bronze", "truth_customer_segments")   # user_id, segment_id, segment_name
TRUTH_BUNDLES = TableRef("bronze", "truth_bundles")              # bundle_id, sku
TRUTH_SKU_DEMAND = TableRef("bronze", "truth_sku_demand")        # sku, launch_date, trend, weekly profile, ...
TRUTH_PROMOTIONS = TableRef("bronze", "truth_promotions")        # sku, start_date, end_date, discount
