"""The synthetic shop as Spark DataFrames built from ``spark.range`` (pure functions, no I/O).

Randomness. Every random number is :func:`~shopai_spark.generate.draws.uniform`: ``xxhash64(seed, salt, keys...)`` mapped to
[0, 1). Unlike ``rand()`` it does not depend on how rows are partitioned, so the same seed gives the
same rows on a laptop and on a cluster.

Catalog. SKU index ``i`` (``SKU-00001`` is ``i = 0``) is in category ``i % categories`` with
popularity rank ``i // categories`` inside it. :func:`catalog` draws each SKU's brand, price, launch
day, trend, weekend uplift, price change and promotions: one small row per SKU, broadcast-joined
wherever order lines and events need a SKU's price or demand.

Customers and orders. Each customer belongs to one planted segment (:data:`SEGMENTS`), which fixes
how many orders they place, when (last and first order as a share of ``days`` before
``end_date``), how many units per line and how much they browse. Each order draws
:data:`CANDIDATES_PER_ORDER` candidate SKUs (primary category 70 %, Zipf-like rank
``floor((n + 1) ** u) - 1``) and keeps each with probability ``demand(sku, day) / max demand(sku)``
(thinning: no sales before launch, trend, weekend uplift, promotion lift). An order whose candidates
were all rejected keeps one available SKU, so every order has a line. With ``bundle_rate`` an order
also contains a whole planted bundle. UnitPrice is the SKU's price that day (after a price change,
minus the promotion discount).

Events. Every order line gets view → add_to_cart → purchase in the session ``S-<InvoiceNo>``, the
purchase at the order's timestamp; browsing sessions add views and cart-adds that do not convert, so
that events ≈ ``users * events_per_user``.

Days are indexes 0..days-1 (day 0 = ``end_date - days + 1``); timestamps are built from a day and a
second of that day, so their text (UTC) does not depend on the session time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopai_spark.generate.config import GenerateConfig
from shopai_spark.generate.draws import between, choose, lookup, uniform

CATEGORY_NAMES = ("Home", "Kitchen", "Garden", "Toys", "Books", "Electronics", "Beauty", "Sports",
                  "Fashion", "Stationery", "Pets", "Grocery", "Outdoor", "Music", "Baby", "Health")
COUNTRIES = (("United Kingdom", 0.70), ("Germany", 0.07), ("France", 0.07), ("EIRE", 0.05),
             ("Spain", 0.04), ("Netherlands", 0.04), ("Belgium", 0.03))

PRIMARY_CATEGORY_SHARE = 0.7   # share of a customer's picks from their primary category
CANDIDATES_PER_ORDER = 3       # candidate SKUs per order before thinning
LAUNCH_SHARE = 0.15            # SKUs (never a category's top seller) launched during the period
PRICE_CHANGE_SHARE = 0.4       # SKUs with one step change of their list price
PROMO_SLOTS = 2                # the period is cut into this many slots with at most one promotion each
PROMO_SHARE = 0.3              # chance that a SKU has a promotion in a slot
CART_SHARE = 0.2               # share of browsing events that are (non-converting) cart-adds
SESSION_EVENTS = 5             # browsing events per browsing session
FUNNEL_STEPS = ("view", "add_to_cart", "purchase")
INVOICE_BASE = 5_000_000
CANCELLATION_PREFIX = "C"
ORDER_TS = "%s %02d:%02d:%02d"      # InvoiceDate: yyyy-MM-dd HH:mm:ss
EVENT_TS = "%sT%02d:%02d:%02dZ"     # event_ts: ISO-8601 UTC
DIRT_KIND = "dirt_kind"


@dataclass(frozen=True)
class Segment:
    """A planted customer segment. Day ranges are shares of ``days`` before ``end_date``."""

    segment_id: int
    name: str
    share: float                      # share of customers
    orders: tuple[int, int]           # orders per customer (inclusive range)
    last_order: tuple[float, float]   # days since the last order / days
    first_order: tuple[float, float]  # days since the first order / days (never after the last)
    quantity: tuple[int, int]         # units per order line (inclusive range)
    browsing: float                   # relative number of browsing events


SEGMENTS = (
    Segment(1, "champions", 0.15, (8, 12), (0.0, 0.03), (0.7, 1.0), (2, 4), 2.0),
    Segment(2, "loyal", 0.25, (4, 6), (0.02, 0.10), (0.5, 1.0), (1, 2), 1.2),
    Segment(3, "at_risk", 0.20, (3, 5), (0.40, 0.60), (0.75, 1.0), (2, 3), 0.5),
    Segment(4, "hibernating", 0.25, (1, 2), (0.65, 0.95), (0.7, 1.0), (1, 1), 0.2),
    Segment(5, "new", 0.15, (1, 2), (0.0, 0.05), (0.01, 0.08), (1, 2), 1.0),
)
MAX_ORDERS = max(s.orders[1] for s in SEGMENTS)

# Dirt kinds per raw table, and the raw column each kind spoils (duplicate_row repeats the row).
DIRT_KINDS: dict[str, tuple[str, ...]] = {
    "products": ("negative_price", "duplicate_row"),
    "orders": ("missing_user_id", "missing_sku", "bad_timestamp", "negative_quantity", "negative_price",
               "duplicate_row"),
    "events": ("missing_user_id", "missing_sku", "bad_timestamp", "negative_price", "unknown_event_type",
               "duplicate_row"),
}
_DIRT_COLUMNS = {
    "products": {"negative_price": "list_price"},
    "orders": {"missing_user_id": "CustomerID", "missing_sku": "StockCode", "bad_timestamp": "InvoiceDate",
               "negative_quantity": "Quantity", "negative_price": "UnitPrice"},
    "events": {"missing_user_id": "user_id", "missing_sku": "sku", "bad_timestamp": "event_ts",
               "negative_price": "price", "unknown_event_type": "event_type"},
}
_BAD_TIMESTAMPS = {"orders": ("not a date", "2024-13-45 25:00:00"),
                   "events": ("not a date", "2024-13-45T25:00:00Z")}

# catalog columns the demand and price formulas read
_PRICE_COLUMNS = ("base_price", "price_change_day", "new_price", "promo_start", "promo_end", "promo_discount")
_DEMAND_COLUMNS = ("launch_day", "trend", "weekend_uplift", "has_promo", "promo_start", "promo_end")


# ---------------------------------------------------------------------------------------------
# days and small column helpers


def period_start(config: GenerateConfig) -> dt.date:
    """The date of day index 0."""
    return dt.date.fromisoformat(config.end_date) - dt.timedelta(days=config.days - 1)


def _date(config: GenerateConfig, day: Column) -> Column:
    """DATE of day index ``day``."""
    return F.date_add(F.lit(period_start(config)), day.cast("int"))


def _timestamp(config: GenerateConfig, day: Column, second: Column, pattern: str) -> Column:
    """Text of second ``second`` (0..86399) of day ``day`` in ``pattern`` (ORDER_TS or EVENT_TS)."""
    second = second.cast("int")
    return F.format_string(pattern, _date(config, day).cast("string"), F.floor(second / 3600).cast("int"),
                           F.floor(second / 60).cast("int") % 60, second % 60)


def _promo_span(config: GenerateConfig) -> int:
    """Days per promotion slot."""
    return config.days // PROMO_SLOTS


# ---------------------------------------------------------------------------------------------
# catalog


def catalog(spark: SparkSession, config: GenerateConfig) -> DataFrame:
    """One row per SKU with everything planted about it.

    Returns: sku_index (BIGINT 0..skus-1), sku (``SKU-00042``), title, category, brand,
    category_index (INT), base_price (DOUBLE, list price at the start, ends in .99), launch_day
    (INT, first day it can sell; 0 for most, mid-period for LAUNCH_SHARE of the SKUs that are neither
    a category's top seller nor a bundle member),
    trend (DOUBLE per year: demand ∝ exp(trend * years from mid-period)), weekend_uplift (DOUBLE:
    Saturday/Sunday demand is 1 + uplift times weekday demand), price_change_day (INT, null for
    SKUs without a price change), new_price (DOUBLE, list price from that day on), promo_start /
    promo_end / promo_discount (ARRAY per slot of :data:`PROMO_SLOTS`: first and last day, discount
    0.10..0.30; null entries for slots without a promotion), has_promo (BOOLEAN).
    """
    days, seed = config.days, config.seed
    idx = F.col("sku_index")
    category_index = (idx % config.categories).cast("int")
    rank = F.floor(idx / config.categories)
    named = F.when(category_index < len(CATEGORY_NAMES), lookup(CATEGORY_NAMES, category_index))
    level = F.lit(8.0) * F.pow(F.lit(5.0), uniform(seed, "category_price", category_index))
    price = level * F.exp((uniform(seed, "price", idx) - 0.5) * 0.6)
    late = (rank >= 1) & ~_bundle_slot(config, idx) & (uniform(seed, "launch", idx) < LAUNCH_SHARE)
    skus = spark.range(config.skus).select(F.col("id").alias("sku_index")).select(
        "sku_index",
        F.format_string("SKU-%05d", idx + 1).alias("sku"),
        F.coalesce(named, F.format_string("Category %d", category_index + 1)).alias("category"),
        F.format_string("Brand %02d", between(uniform(seed, "brand", idx), 1, config.brands)).alias("brand"),
        category_index.alias("category_index"),
        (F.greatest(F.round(price, 0), F.lit(1.0)) - 0.01).alias("base_price"),
        F.when(late, F.floor(days * (0.2 + 0.6 * uniform(seed, "launch_day", idx)))).otherwise(0).cast("int")
        .alias("launch_day"),
        F.round(-0.4 + uniform(seed, "trend", idx), 3).alias("trend"),
        F.round(0.6 * uniform(seed, "weekend", idx), 3).alias("weekend_uplift"),
        F.when(uniform(seed, "price_change", idx) < PRICE_CHANGE_SHARE,
               F.floor(days * (0.3 + 0.5 * uniform(seed, "price_change_day", idx))).cast("int"))
        .alias("price_change_day"),
    )
    skus = skus.select(
        "*",
        F.format_string("%s %s item %d", "brand", "category", idx + 1).alias("title"),
        F.when(F.col("price_change_day").isNotNull(),
               F.round(F.col("base_price") * (0.8 + 0.4 * uniform(seed, "new_price", idx)), 2)).alias("new_price"),
    )
    return _with_promotions(skus, config).select(
        "sku_index", "sku", "title", "category", "brand", "category_index", "base_price", "launch_day", "trend",
        "weekend_uplift", "price_change_day", "new_price", "promo_start", "promo_end", "promo_discount",
        F.exists("promo_start", lambda start: start.isNotNull()).alias("has_promo"))


def _with_promotions(skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """Add promo_start, promo_end, promo_discount (arrays over the slots, see :func:`catalog`).

    Slot k covers days [k * span, (k + 1) * span); a promotion lasts 3-7 days inside its slot and
    exists with probability PROMO_SHARE unless it would end before launch. Slots shorter than 4
    days hold none.
    """
    span, seed = _promo_span(config), config.seed
    idx = F.col("sku_index")
    starts, ends, discounts = [], [], []
    for slot in range(PROMO_SLOTS):
        key = F.lit(slot)
        length = between(uniform(seed, "promo_length", idx, key), 3, max(3, min(7, span - 1)))
        start = (slot * span + F.floor(uniform(seed, "promo_start", idx, key) * (span - length + 1))).cast("int")
        end = start + length - 1
        exists = F.lit(span >= 4) & (uniform(seed, "promo", idx, key) < PROMO_SHARE) & (end >= F.col("launch_day"))
        starts.append(F.when(exists, start))
        ends.append(F.when(exists, end))
        discounts.append(F.when(exists, F.round(0.10 + 0.05 * F.floor(uniform(seed, "promo_discount", idx, key) * 5), 2)))
    return skus.select("*", F.array(*starts).alias("promo_start"), F.array(*ends).alias("promo_end"),
                       F.array(*discounts).alias("promo_discount"))


def _join_catalog(frame: DataFrame, skus: DataFrame, index: str, columns: Sequence[str], prefix: str = "") -> DataFrame:
    """``frame`` plus the catalog ``columns`` (named ``prefix + column``) of the SKU in ``index``
    (broadcast join: the catalog has one small row per SKU)."""
    key = f"{prefix}_catalog_key"
    dimension = skus.select(F.col("sku_index").alias(key), *[F.col(c).alias(prefix + c) for c in columns])
    return frame.join(F.broadcast(dimension), F.col(index) == F.col(key)).drop(key)


class SkuDay:
    """Price and demand formulas of a SKU on a day, over the catalog columns joined with ``prefix``."""

    def __init__(self, config: GenerateConfig, day: Column, prefix: str = ""):
        self.config = config
        self.day = day
        self.prefix = prefix

    def col(self, name: str) -> Column:
        return F.col(self.prefix + name)

    def _slot(self, name: str) -> Column:
        """This day's entry of the per-slot promotion array ``name`` (null when out of range)."""
        slot = F.floor(self.day / max(_promo_span(self.config), 1)).cast("int") + 1
        return F.try_element_at(self.col(name), slot)

    def on_promo(self) -> Column:
        return F.coalesce(self.day.between(self._slot("promo_start"), self._slot("promo_end")), F.lit(False))

    def discount(self) -> Column:
        """The promotion discount that day; null when the SKU is not on promotion."""
        return F.when(self.on_promo(), self._slot("promo_discount"))

    def price(self) -> Column:
        """What a unit costs that day: the list price (new price from the change day) minus the discount."""
        listed = F.when(self.day >= self.col("price_change_day"), self.col("new_price")).otherwise(self.col("base_price"))
        return F.round(listed * (1 - F.coalesce(self.discount(), F.lit(0.0))), 2)

    def demand_ratio(self) -> Column:
        """Demand that day divided by the SKU's maximum demand over the period (0..1): the
        thinning acceptance probability; 0 before launch. Demand ∝ exp(trend * years from
        mid-period) * (1 + weekend_uplift on Sat/Sun) * (promo_lift while on promotion)."""
        middle = (self.config.days - 1) / 2
        trend, uplift = self.col("trend"), self.col("weekend_uplift")
        trend_part = F.exp(trend * (self.day - middle) / 365.0 - F.abs(trend) * middle / 365.0)
        weekend = F.dayofweek(_date(self.config, self.day)).isin(1, 7)
        weekday_part = F.when(weekend, F.lit(1.0)).otherwise(1.0 / (1.0 + uplift))
        at_peak = self.on_promo() | ~self.col("has_promo")
        promo_part = F.when(at_peak, F.lit(1.0)).otherwise(F.lit(1.0 / self.config.promo_lift))
        return F.when(self.day >= self.col("launch_day"), trend_part * weekday_part * promo_part).otherwise(0.0)


def _pick(config: GenerateConfig, primary: Column, salt: str, *keys: Column) -> Column:
    """SKU index for a customer with ``primary`` category (that category 70 % of the time, else a
    uniform one) with Zipf-like rank ``floor((n + 1) ** u) - 1`` among the category's n SKUs."""
    categories = config.categories
    other = F.floor(uniform(config.seed, f"{salt}:other", *keys) * categories).cast("int")
    category = F.when(uniform(config.seed, f"{salt}:primary", *keys) < PRIMARY_CATEGORY_SHARE, primary) \
        .otherwise(other)
    size = F.floor((config.skus - 1 - category) / categories) + 1
    rank = F.least(F.floor(F.pow(size + 1, uniform(config.seed, f"{salt}:rank", *keys))) - 1, size - 1)
    return (rank * categories + category).cast("long")


def _top_seller(config: GenerateConfig, idx: Column) -> Column:
    """Index of the top seller (rank 0, launched on day 0) of ``idx``'s category."""
    return (idx % config.categories).cast("long")


def _bundle_step(config: GenerateConfig) -> int:
    """Distance between consecutive bundle member slots in the SKU index."""
    return config.skus // (3 * config.bundles) if config.bundles else 1


def _bundle_slot(config: GenerateConfig, idx: Column) -> Column:
    """True for the SKU indexes :func:`bundles` may pick (they are on sale all period, never launched
    late, so every bundle can be bought from day 0)."""
    step = _bundle_step(config)
    offset = idx - config.seed % step
    return (offset >= 0) & (offset % step == 0) & (offset < 3 * config.bundles * step)


def bundles(skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """Planted bundles of 2-3 distinct SKUs, spread evenly over the catalog.

    Input: :func:`catalog`. Returns: bundle (BIGINT, 0-based), skus (ARRAY<BIGINT> of sku_index),
    launch_day (INT, first day every member can sell).
    """
    spark, seed = skus.sparkSession, config.seed
    step = _bundle_step(config)
    bundle, slot = F.floor(F.col("id") / 3).cast("long"), (F.col("id") % 3).cast("int")
    size = F.when(uniform(seed, "bundle_size", bundle) < 0.5, F.lit(2)).otherwise(F.lit(3))
    members = spark.range(3 * config.bundles).filter(slot < size).select(
        bundle.alias("bundle"), (F.lit(seed % step) + F.col("id") * step).alias("member"))
    launched = members.join(skus.select(F.col("sku_index").alias("member"), "launch_day"), "member")
    return launched.groupBy("bundle").agg(F.array_sort(F.collect_list("member")).alias("skus"),
                                          F.max("launch_day").alias("launch_day"))


# ---------------------------------------------------------------------------------------------
# customers and orders


def customers(spark: SparkSession, config: GenerateConfig) -> DataFrame:
    """One row per customer with the planted plan.

    Returns: uid (BIGINT, 0-based), user_id (``U-000001``), segment_id (INT 1..5), segment_name,
    orders (INT, planned), last_ago / first_ago (INT, days before end_date of the last and first
    order; first >= last), primary_category (INT), country, min_quantity / max_quantity (INT),
    browsing (DOUBLE, relative browsing intensity).
    """
    seed, days = config.seed, config.days
    uid, segment = F.col("uid"), F.col("segment")

    def per_segment(field: str, pick: int | None = None) -> Column:
        return lookup([getattr(s, field) if pick is None else getattr(s, field)[pick] for s in SEGMENTS], segment)

    def days_ago(field: str) -> Column:
        low, high = per_segment(field, 0), per_segment(field, 1)
        share = low + uniform(seed, field, uid) * (high - low)
        return F.least(F.floor(share * days), F.lit(days - 1)).cast("int")

    with_segment = spark.range(config.users).select(
        F.col("id").alias("uid"), choose(uniform(seed, "segment", F.col("id")), [s.share for s in SEGMENTS])
        .alias("segment"))
    planned = with_segment.select(
        "uid",
        F.format_string("U-%06d", uid + 1).alias("user_id"),
        per_segment("segment_id").alias("segment_id"),
        per_segment("name").alias("segment_name"),
        between(uniform(seed, "orders", uid), per_segment("orders", 0), per_segment("orders", 1)).alias("orders"),
        days_ago("last_order").alias("last_ago"),
        days_ago("first_order").alias("first_ago"),
        F.floor(uniform(seed, "primary_category", uid) * config.categories).cast("int").alias("primary_category"),
        lookup([c for c, _ in COUNTRIES], choose(uniform(seed, "country", uid), [s for _, s in COUNTRIES]))
        .alias("country"),
        per_segment("quantity", 0).alias("min_quantity"),
        per_segment("quantity", 1).alias("max_quantity"),
        per_segment("browsing").cast("double").alias("browsing"),
    )
    return planned.withColumn("first_ago", F.greatest("first_ago", "last_ago"))


def _order_headers(customer_rows: DataFrame, config: GenerateConfig) -> DataFrame:
    """One row per planned order: uid, user_id, country, primary_category, min/max_quantity,
    invoice (BIGINT), day, second (INT, 08:00-21:59).

    Order 0 is the customer's last order; the others fall uniformly between their first and last day.
    """
    seed, days = config.seed, config.days
    uid, k = F.col("uid"), F.col("k")
    orders = customer_rows.withColumn("k", F.explode(F.sequence(F.lit(0), F.col("orders") - 1)))
    spread = F.col("last_ago") + F.floor(uniform(seed, "order_day", uid, k)
                                         * (F.col("first_ago") - F.col("last_ago") + 1))
    ago = F.when(k == 0, F.col("last_ago")).otherwise(spread)
    return orders.select(
        "uid", "user_id", "country", "primary_category", "min_quantity", "max_quantity",
        (F.lit(INVOICE_BASE) + uid * MAX_ORDERS + k).alias("invoice"),
        (F.lit(days - 1) - ago).cast("int").alias("day"),
        (8 * 3600 + F.floor(uniform(seed, "order_second", uid, k) * 14 * 3600)).cast("int").alias("second"),
    )


def order_lines(customer_rows: DataFrame, skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """The sales order lines (no cancellations): one row per (order, SKU).

    Inputs: :func:`customers`, :func:`catalog`. Returns: user_id, invoice_no (STRING, e.g.
    ``5000123``), sku_index (BIGINT), sku, title, day (INT), second (INT, second of the day),
    quantity (INT > 0), unit_price (DOUBLE, the SKU's price that day), country.
    """
    seed = config.seed
    day, invoice = F.col("day"), F.col("invoice")
    orders = _order_headers(customer_rows, config).select("*", *[
        _pick(config, F.col("primary_category"), "candidate", invoice, F.lit(j)).alias(f"candidate_{j}")
        for j in range(CANDIDATES_PER_ORDER)])
    for j in range(CANDIDATES_PER_ORDER):
        orders = _join_catalog(orders, skus, f"candidate_{j}", _DEMAND_COLUMNS, prefix=f"c{j}_")
    accepted = F.array_compact(F.array(*[
        F.when(uniform(seed, "accept", invoice, F.lit(j)) < SkuDay(config, day, f"c{j}_").demand_ratio(),
               F.col(f"candidate_{j}"))
        for j in range(CANDIDATES_PER_ORDER)]))
    fallback = F.when(day >= F.col("c0_launch_day"), F.col("candidate_0")) \
        .otherwise(_top_seller(config, F.col("candidate_0")))
    basket = F.when(F.size(accepted) > 0, accepted).otherwise(F.array(fallback))
    orders = _with_bundle(orders, skus, config)
    lines = orders.select(
        "user_id", "country", "min_quantity", "max_quantity", "invoice", "day", "second",
        F.explode(F.array_distinct(F.concat(basket, F.col("bundle_skus")))).alias("sku_index"))
    lines = _join_catalog(lines, skus, "sku_index", ("sku", "title", *_PRICE_COLUMNS))
    return lines.select(
        "user_id", invoice.cast("string").alias("invoice_no"), "sku_index", "sku", "title", "day", "second",
        between(uniform(seed, "quantity", invoice, F.col("sku_index")), F.col("min_quantity"), F.col("max_quantity"))
        .alias("quantity"),
        SkuDay(config, day).price().alias("unit_price"),
        "country",
    )


def _with_bundle(orders: DataFrame, skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """``orders`` plus bundle_skus: the SKU indexes of the whole bundle this order contains (with
    probability bundle_rate, once all its SKUs are launched), else an empty array."""
    empty = F.array().cast("array<bigint>")
    if config.bundles == 0:
        return orders.withColumn("bundle_skus", empty)
    invoice = F.col("invoice")
    chosen = F.when(uniform(config.seed, "bundle", invoice) < config.bundle_rate,
                    F.floor(uniform(config.seed, "which_bundle", invoice) * config.bundles).cast("long"))
    table = bundles(skus, config).select(F.col("bundle").alias("_bundle"), F.col("skus").alias("_bundle_members"),
                                         F.col("launch_day").alias("_bundle_launch"))
    joined = orders.withColumn("_bundle", chosen).join(F.broadcast(table), "_bundle", "left")
    available = F.col("_bundle_members").isNotNull() & (F.col("day") >= F.col("_bundle_launch"))
    return joined.withColumn("bundle_skus", F.when(available, F.col("_bundle_members")).otherwise(empty)) \
        .drop("_bundle", "_bundle_members", "_bundle_launch")


def _cancellations(lines: DataFrame, config: GenerateConfig) -> DataFrame:
    """Cancellation lines for about ``cancel_rate`` of the orders (about half their lines), 1-5 days
    after the order and inside the period: the order_lines columns, invoice_no ``C<InvoiceNo>`` and
    negative quantity."""
    seed = config.seed
    invoice = F.col("invoice_no")
    delay = (1 + F.floor(uniform(seed, "cancel_delay", invoice) * 5)).cast("int")
    cancelled = ((uniform(seed, "cancel", invoice) < config.cancel_rate)
                 & (uniform(seed, "cancel_line", invoice, F.col("sku_index")) < 0.5)
                 & (F.col("day") + delay <= config.days - 1))
    return lines.filter(cancelled).select(
        "user_id", F.concat(F.lit(CANCELLATION_PREFIX), invoice).alias("invoice_no"), "sku_index", "sku", "title",
        (F.col("day") + delay).alias("day"),
        (9 * 3600 + F.floor(uniform(seed, "cancel_second", invoice) * 8 * 3600)).cast("int").alias("second"),
        (-F.col("quantity")).alias("quantity"), "unit_price", "country",
    )


def orders(lines: DataFrame, config: GenerateConfig) -> DataFrame:
    """The raw orders export: one row per invoice line, sales and cancellations, Online-Retail layout.

    Input: :func:`order_lines`. Returns: InvoiceNo (``5000123`` / ``C5000123``), StockCode
    (``SKU-00042``), Description, Quantity (INT, negative on cancellations), InvoiceDate
    (``yyyy-MM-dd HH:mm:ss`` UTC), UnitPrice (DOUBLE), CustomerID (``U-000017``), Country.
    """
    return lines.unionByName(_cancellations(lines, config)).select(
        F.col("invoice_no").alias("InvoiceNo"),
        F.col("sku").alias("StockCode"),
        F.col("title").alias("Description"),
        F.col("quantity").alias("Quantity"),
        _timestamp(config, F.col("day"), F.col("second"), ORDER_TS).alias("InvoiceDate"),
        F.col("unit_price").alias("UnitPrice"),
        F.col("user_id").alias("CustomerID"),
        F.col("country").alias("Country"),
    )


# ---------------------------------------------------------------------------------------------
# events


def browse_events_per_user(config: GenerateConfig, sales_lines: int) -> float:
    """Mean browsing events per customer so that all events ≈ ``users * events_per_user``, given
    the number of sales order lines (each brings 3 funnel events); never negative."""
    funnel = len(FUNNEL_STEPS) * sales_lines / config.users
    return max(0.0, config.events_per_user - funnel)


def _funnel_events(lines: DataFrame, config: GenerateConfig) -> DataFrame:
    """view → add_to_cart → purchase per order line in session ``S-<InvoiceNo>``: the purchase at the
    order's second, the cart-add 1-10 minutes and the view 1-15 minutes before that.

    Returns: user_id, session_id, sku, day, second, event_type, price."""
    keys = (F.col("invoice_no"), F.col("sku_index"))
    cart_second = F.col("second") - 60 - F.floor(uniform(config.seed, "cart_gap", *keys) * 540)
    view_second = cart_second - 60 - F.floor(uniform(config.seed, "view_gap", *keys) * 840)
    seconds = (view_second, cart_second, F.col("second"))
    step = F.explode(F.array(*[F.struct(F.lit(kind).alias("event_type"), second.cast("int").alias("second"))
                               for kind, second in zip(FUNNEL_STEPS, seconds, strict=True)]))
    return lines.select("user_id", F.concat(F.lit("S-"), F.col("invoice_no")).alias("session_id"), "sku", "day",
                        F.col("unit_price").alias("price"), step.alias("step")) \
        .select("user_id", "session_id", "sku", "day", "step.second", "step.event_type", "price")


def _browse_events(customer_rows: DataFrame, skus: DataFrame, config: GenerateConfig, per_user: float) -> DataFrame:
    """Browsing that does not convert: views and cart-adds in sessions of SESSION_EVENTS events on
    days inside the customer's active period; segments browse in proportion to ``browsing``. A SKU
    not launched yet that day is replaced by its category's top seller.

    Returns: user_id, session_id, sku, day, second, event_type, price."""
    seed = config.seed
    mean_browsing = sum(s.share * s.browsing for s in SEGMENTS)
    uid, k = F.col("uid"), F.col("k")
    count = F.round(F.lit(per_user) * F.col("browsing") / mean_browsing
                    * (0.5 + uniform(seed, "browse_count", uid))).cast("int")
    rows = customer_rows.withColumn("k", F.explode(
        F.when(count > 0, F.sequence(F.lit(0), count - 1)).otherwise(F.array().cast("array<int>"))))
    session = F.floor(k / SESSION_EVENTS).cast("int")
    ago = F.col("last_ago") + F.floor(uniform(seed, "browse_day", uid, session)
                                      * (F.col("first_ago") - F.col("last_ago") + 1))
    second = (8 * 3600 + F.floor(uniform(seed, "session_start", uid, session) * 13 * 3600)
              + (k % SESSION_EVENTS) * 90 + F.floor(uniform(seed, "browse_gap", uid, k) * 60))
    rows = rows.select(
        "user_id", uid, k,
        F.format_string("S-%06d-%04d", uid + 1, session).alias("session_id"),
        (F.lit(config.days - 1) - ago).cast("int").alias("day"),
        second.cast("int").alias("second"),
        _pick(config, F.col("primary_category"), "browse", uid, k).alias("picked"),
    )
    rows = _join_catalog(rows, skus, "picked", ("launch_day",), prefix="picked_")
    available = F.when(F.col("day") >= F.col("picked_launch_day"), F.col("picked")) \
        .otherwise(_top_seller(config, F.col("picked")))
    rows = _join_catalog(rows.withColumn("sku_index", available), skus, "sku_index", ("sku", *_PRICE_COLUMNS))
    return rows.select(
        "user_id", "session_id", "sku", "day", "second",
        F.when(uniform(seed, "browse_type", uid, k) < CART_SHARE, F.lit("add_to_cart")).otherwise(F.lit("view"))
        .alias("event_type"),
        SkuDay(config, F.col("day")).price().alias("price"),
    )


def events(customer_rows: DataFrame, skus: DataFrame, lines: DataFrame, config: GenerateConfig,
           browse_per_user: float) -> DataFrame:
    """The raw events export: funnel events of every order line plus ``browse_per_user`` browsing
    events per customer on average (see :func:`browse_events_per_user`).

    Inputs: :func:`customers`, :func:`catalog`, :func:`order_lines`. Returns: user_id, session_id,
    sku, event_type (view / add_to_cart / purchase), event_ts (``2024-03-01T10:15:00Z``), price
    (DOUBLE).
    """
    both = _funnel_events(lines, config).unionByName(_browse_events(customer_rows, skus, config, browse_per_user))
    return both.select("user_id", "session_id", "sku", "event_type",
                       _timestamp(config, F.col("day"), F.col("second"), EVENT_TS).alias("event_ts"), "price")


def products(skus: DataFrame) -> DataFrame:
    """The raw products export. Input: :func:`catalog`. Returns: sku, title, category, brand,
    list_price (DOUBLE, the base price)."""
    return skus.select("sku", "title", "category", "brand", F.col("base_price").alias("list_price"))


# ---------------------------------------------------------------------------------------------
# ground truth


def truth_segments(customer_rows: DataFrame) -> DataFrame:
    """Planted segments. Input: :func:`customers`. Returns: user_id, segment_id (INT), segment_name."""
    return customer_rows.select("user_id", "segment_id", "segment_name")


def truth_bundles(skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """Planted bundles. Input: :func:`catalog`. Returns: bundle_id (INT, 1-based), sku; 2-3 rows
    per bundle."""
    members = bundles(skus, config).select((F.col("bundle") + 1).cast("int").alias("bundle_id"),
                                           F.explode("skus").alias("sku_index"))
    return members.join(skus.select("sku_index", "sku"), "sku_index").select("bundle_id", "sku")


def truth_sku_demand(skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """Per-SKU demand dynamics. Input: :func:`catalog`. Returns: sku, launch_date (DATE, first day
    it can sell), trend_per_year (DOUBLE, demand ∝ exp(trend * years from mid-period)),
    weekend_uplift (DOUBLE, Saturday/Sunday demand = 1 + uplift times weekday demand), base_price
    (DOUBLE), price_change_date (DATE, null without a change), new_price (DOUBLE, list price from
    that date on, else null)."""
    change = F.col("price_change_day")
    return skus.select(
        "sku",
        _date(config, F.col("launch_day")).alias("launch_date"),
        F.col("trend").alias("trend_per_year"),
        "weekend_uplift",
        "base_price",
        F.when(change.isNotNull(), _date(config, change)).alias("price_change_date"),
        "new_price",
    )


def truth_promotions(skus: DataFrame, config: GenerateConfig) -> DataFrame:
    """Planted promotions (demand × ``promo_lift`` while they run). Input: :func:`catalog`.
    Returns: sku, start_date, end_date (DATE, inclusive), discount (DOUBLE off the list price)."""
    slots = skus.select("sku", F.posexplode("promo_start").alias("slot", "start"), "promo_end", "promo_discount")
    position = F.col("slot") + 1
    return slots.filter(F.col("start").isNotNull()).select(
        "sku",
        _date(config, F.col("start")).alias("start_date"),
        _date(config, F.element_at("promo_end", position)).alias("end_date"),
        F.element_at("promo_discount", position).alias("discount"),
    )


# ---------------------------------------------------------------------------------------------
# dirt


def dirty(frame: DataFrame, table: str, dirt_share: float, seed: int) -> DataFrame:
    """``frame`` (raw table ``products``, ``orders`` or ``events``) with about ``dirt_share`` of its
    rows spoilt, deterministically by ``seed`` and the row's values.

    Each spoilt row gets one kind of ``DIRT_KINDS[table]``: missing_user_id / missing_sku (null),
    bad_timestamp ("not a date" or an impossible date), negative_quantity (a sales line made
    negative without the C prefix), negative_price, unknown_event_type ("click"), duplicate_row
    (the row appears twice). Cancellation lines are never spoilt. Returns the raw columns plus
    ``dirt_kind`` (the kind; null on clean rows; set on both copies of a duplicate).
    """
    if dirt_share == 0:
        return frame.withColumn(DIRT_KIND, F.lit(None).cast("string"))
    kinds = DIRT_KINDS[table]
    u = uniform(seed, f"dirt:{table}", *[F.col(c) for c in frame.columns])
    eligible = ~F.col("InvoiceNo").startswith(CANCELLATION_PREFIX) if table == "orders" else F.lit(True)
    marked = frame.withColumn("_dirt_position", u / dirt_share * len(kinds)).withColumn(
        DIRT_KIND, F.when(eligible & (u < dirt_share), lookup(kinds, F.floor("_dirt_position"))))
    variant = F.col("_dirt_position") - F.floor("_dirt_position")   # uniform in [0, 1) inside a kind
    for kind, column in _DIRT_COLUMNS[table].items():
        spoilt = _spoilt(kind, table, F.col(column), variant)
        marked = marked.withColumn(column, F.when(F.col(DIRT_KIND) == kind, spoilt).otherwise(F.col(column)))
    marked = marked.drop("_dirt_position")
    return marked.unionByName(marked.filter(F.col(DIRT_KIND) == "duplicate_row"))


def _spoilt(kind: str, table: str, value: Column, variant: Column) -> Column:
    """The spoilt value of a raw column for dirt ``kind``; ``variant`` in [0, 1) picks between the
    two bad timestamps."""
    if kind in ("missing_user_id", "missing_sku"):
        return F.lit(None)
    if kind == "bad_timestamp":
        unparseable, impossible = _BAD_TIMESTAMPS[table]
        return F.when(variant < 0.5, F.lit(unparseable)).otherwise(F.lit(impossible))
    if kind == "unknown_event_type":
        return F.lit("click")
    return -F.abs(value)   # negative_quantity, negative_price
