"""Demand panel, features and targets against a plain pandas reference implementation.

Sample data (:func:`sample_silver`): SKU A sells on most days with gaps, a promotion and zero-price
lines; B is launched mid-period; C sells on the end date only (a one-day SKU); D sells twice and is
delisted; E sells daily except a week with views and no sales (a stockout). Bad lines: an orphan
item, an order after the end date, one before the start date, a non-positive quantity.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shopai_spark.demand import features as feats
from shopai_spark.demand import panel as pnl
from shopai_spark.demand.config import DemandConfig

END = dt.date(2024, 3, 31)
START = dt.date(2024, 1, 20)
CONFIG = DemandConfig(
    start_date=str(START), end_date=str(END), lags=[1, 2, 7], rolling_windows=[3, 7], ewm_alpha=0.5, ewm_window=5,
    zero_share_windows=[7], price_window=7, promo_reference_days=14, holidays=["2024-02-14", "2024-03-29"],
    delist_after_days=20, stockout_rate_window=14, horizon=3, incremental_days=10, lead_time_days=3,
    class_window_days=30, origin_step_days=3,
)


# ---------------------------------------------------------------------------------------------
# sample silver data


def sample_rows(end: dt.date = END) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(orders, order_items, events) rows as tuples, in silver column order; sales up to ``end``."""
    rng = np.random.default_rng(7)
    orders: list[tuple] = []
    items: list[tuple] = []
    events: list[tuple] = []

    def ts(day: dt.date, hour: int = 12) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hour)

    def sell(sku: str, day: dt.date, qty: int, price: float) -> None:
        order_id = f"o{len(orders)}"
        orders.append((order_id, f"u{len(orders) % 5}", ts(day, 8 + len(orders) % 10), "GB"))
        items.append((order_id, sku, qty, price))

    def view(sku: str, day: dt.date, n: int, kind: str = "view") -> None:
        for i in range(n):
            events.append((f"u{i}", f"s{i}", sku, kind, ts(day, 9 + i % 10), 10.0))

    day = dt.date(2024, 2, 1)
    while day <= end:
        promo = dt.date(2024, 3, 1) <= day <= dt.date(2024, 3, 7)
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 3))):
                sell("A", day, int(rng.integers(1, 5)), 0.0 if rng.random() < 0.1 else (8.0 if promo else 10.0))
        if rng.random() < 0.5:
            view("A", day, int(rng.integers(1, 4)))
        if day >= dt.date(2024, 3, 10) and rng.random() < 0.5:
            sell("B", day, int(rng.integers(1, 3)), 5.0 + day.day % 3)
            view("B", day, 1, "add_to_cart")
        stockout = dt.date(2024, 3, 15) <= day <= dt.date(2024, 3, 21)
        if stockout:
            view("E", day, 5)
        else:
            sell("E", day, int(rng.integers(3, 7)), 20.0)
        day += dt.timedelta(days=1)
    if end >= END:
        sell("C", END, 2, 3.0)
    sell("D", dt.date(2024, 2, 3), 1, 7.0)
    sell("D", dt.date(2024, 2, 5), 3, 0.0)
    # one order with two lines
    orders.append(("multi", "u9", ts(dt.date(2024, 2, 10)), "GB"))
    items += [("multi", "A", 1, 10.0), ("multi", "E", 2, 20.0)]
    # bad lines
    items.append(("missing-order", "A", 3, 10.0))                 # orphan_item
    orders.append(("late", "u1", ts(end + dt.timedelta(days=2)), "GB"))
    items.append(("late", "A", 4, 10.0))                          # after_end_date
    orders.append(("early", "u1", ts(dt.date(2024, 1, 10)), "GB"))
    items.append(("early", "A", 5, 10.0))                         # before_start_date
    orders.append(("neg", "u2", ts(dt.date(2024, 2, 20)), "GB"))
    items.append(("neg", "E", -1, 20.0))                          # nonpositive_quantity
    return orders, items, events


ORDERS_DDL = "order_id STRING, user_id STRING, order_ts TIMESTAMP, country STRING"
ITEMS_DDL = "order_id STRING, sku STRING, quantity INT, unit_price DOUBLE"
EVENTS_DDL = "user_id STRING, session_id STRING, sku STRING, event_type STRING, event_ts TIMESTAMP, price DOUBLE"


def sample_frames(spark: SparkSession, end: dt.date = END) -> tuple[DataFrame, DataFrame, DataFrame]:
    orders, items, events = sample_rows(end)
    return (spark.createDataFrame(orders, ORDERS_DDL), spark.createDataFrame(items, ITEMS_DDL),
            spark.createDataFrame(events, EVENTS_DDL))


def spark_features(spark: SparkSession, config: DemandConfig = CONFIG, end: dt.date = END) -> DataFrame:
    orders, items, events = sample_frames(spark, end)
    start = dt.date.fromisoformat(config.start_date) if config.start_date else None
    lines = pnl.valid_lines(pnl.order_lines(orders, items), start, end)
    sales = pnl.daily_sales(lines)
    activity = pnl.daily_activity(events, start, end)
    bounds = pnl.sku_bounds(sales, activity, end, config.delist_after_days)
    panel = pnl.build_panel(sales, activity, bounds)
    return feats.add_features(panel, config, end).select(*feats.output_columns(config))


# ---------------------------------------------------------------------------------------------
# the pandas reference


def _last_valid(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return valid[-1] if len(valid) else np.nan


def _ewm(values: np.ndarray, decay: float) -> float:
    """Weighted mean, weight decay**age with age 0 for the newest value (NaN = before the first day)."""
    valid = values[~np.isnan(values)]
    weights = decay ** np.arange(len(valid))[::-1]
    return float(np.dot(valid, weights) / weights.sum())


def _stockout(units: np.ndarray, i: int, run: float, views: float, config: DemandConfig) -> bool:
    """Day i: zero sales with views, zero run of ``run`` days improbable given the window's days
    before the run (Poisson and empirical chance both below the threshold)."""
    if units[i] != 0 or views <= 0 or np.isnan(run):
        return False
    before = units[max(0, i - config.stockout_rate_window):i - int(run) + 1]
    if len(before) == 0:
        return False
    chance = max(np.exp(-before.mean() * run), ((np.sum(before == 0) + 1) / (len(before) + 2)) ** run)
    return chance < config.stockout_max_probability


def _demand_class(adi: float, cv2: float) -> str | None:
    """Syntetos–Boylan: ADI cut-off 1.32, CV² cut-off 0.49."""
    if np.isnan(adi):
        return None
    if adi < 1.32:
        return "smooth" if cv2 < 0.49 else "erratic"
    return "intermittent" if cv2 < 0.49 else "lumpy"


def reference_features(config: DemandConfig = CONFIG, end: dt.date = END) -> pd.DataFrame:
    """The same table computed row by row with pandas, straight from the docstrings' definitions."""
    orders_rows, items_rows, events_rows = sample_rows(end)
    orders = pd.DataFrame(orders_rows, columns=["order_id", "user_id", "order_ts", "country"])
    items = pd.DataFrame(items_rows, columns=["order_id", "sku", "quantity", "unit_price"])
    events = pd.DataFrame(events_rows, columns=["user_id", "session_id", "sku", "event_type", "event_ts", "price"])
    start = pd.Timestamp(config.start_date)
    end_ts = pd.Timestamp(end)
    lines = items.merge(orders, on="order_id", how="inner")
    lines["date"] = lines["order_ts"].dt.normalize()
    lines = lines[(lines.quantity > 0) & (lines.date >= start) & (lines.date <= end_ts)]
    lines = lines.assign(revenue=lines.quantity * lines.unit_price,
                         priced_units=np.where(lines.unit_price > 0, lines.quantity, 0),
                         priced_revenue=np.where(lines.unit_price > 0, lines.quantity * lines.unit_price, 0.0))
    daily = lines.groupby(["sku", "date"]).agg(units=("quantity", "sum"), revenue=("revenue", "sum"),
                                               orders=("order_id", "nunique"),
                                               priced_units=("priced_units", "sum"),
                                               priced_revenue=("priced_revenue", "sum"))
    events["date"] = events["event_ts"].dt.normalize()
    events = events[(events.date >= start) & (events.date <= end_ts)]
    views = events[events.event_type == "view"].groupby(["sku", "date"]).size().rename("views")
    carts = events[events.event_type == "add_to_cart"].groupby(["sku", "date"]).size().rename("cart_adds")
    holidays = sorted(pd.Timestamp(h) for h in config.holidays)
    decay = 1 - config.ewm_alpha
    frames = []
    for sku, sku_daily in daily.groupby(level="sku"):
        sku_daily = sku_daily.droplevel("sku")
        sku_events = events[events.sku == sku]
        last_activity = max(sku_daily.index.max(), sku_events.date.max() if len(sku_events) else pd.NaT)
        grid_end = min(end_ts, last_activity + pd.Timedelta(days=config.delist_after_days))
        dates = pd.date_range(sku_daily.index.min(), grid_end, freq="D")
        f = sku_daily.reindex(dates).fillna({"units": 0, "revenue": 0.0, "orders": 0, "priced_units": 0,
                                             "priced_revenue": 0.0})
        f["views"] = views.get(sku, pd.Series(dtype=float)).reindex(dates).fillna(0)
        f["cart_adds"] = carts.get(sku, pd.Series(dtype=float)).reindex(dates).fillna(0)
        f["avg_price"] = np.where(f.priced_units > 0, f.priced_revenue / f.priced_units.where(f.priced_units > 0),
                                  np.nan)
        u = f["units"].astype(float)
        f["history_days"] = (dates - dates[0]).days
        sale_day = pd.Series(np.where(u > 0, dates, pd.NaT), index=dates, dtype="datetime64[ns]")
        last_sale = sale_day.ffill().shift(1)
        f["days_since_last_sale"] = (pd.Series(dates, index=dates) - last_sale).dt.days
        f["likely_stockout"] = [
            float(_stockout(u.to_numpy(), i, run, views, config))
            for i, (run, views) in enumerate(zip(f.days_since_last_sale, f.views, strict=True))]
        demand = u.where(f["likely_stockout"] == 0)               # censored days left out
        prev = demand.shift(1)
        for k in config.lags:
            f[f"units_lag_{k}"] = demand.shift(k)
        for w in config.rolling_windows:
            r = prev.rolling(w, min_periods=1)
            f[f"units_mean_{w}"], f[f"units_std_{w}"] = r.mean(), r.std()
            f[f"units_min_{w}"], f[f"units_max_{w}"], f[f"units_sum_{w}"] = r.min(), r.max(), r.sum()
        f["units_ewm"] = prev.rolling(config.ewm_window, min_periods=1).apply(lambda v: _ewm(v, decay), raw=True)
        for w in config.zero_share_windows:
            f[f"zero_share_{w}"] = (u == 0).astype(float).shift(1).rolling(w, min_periods=1).mean()
        f["views_sum_7"] = f["views"].shift(1).rolling(7, min_periods=1).sum()
        f["cart_adds_sum_7"] = f["cart_adds"].shift(1).rolling(7, min_periods=1).sum()
        past_price = f["avg_price"].shift(1)
        ref_days = config.promo_reference_days
        f["price"] = past_price.rolling(ref_days, min_periods=1).apply(_last_valid, raw=True)
        p = config.price_window
        f[f"price_mean_{p}"] = past_price.rolling(p, min_periods=1).mean()
        f[f"price_rel_{p}"] = f["price"] / f[f"price_mean_{p}"]
        reference = past_price.rolling(ref_days, min_periods=1).max()
        f["promo_discount"] = 1 - f["price"] / reference
        f["promo_flag"] = (f["promo_discount"] >= config.promo_discount_threshold).astype(float)
        window = prev.rolling(config.class_window_days, min_periods=1)
        sales = prev.where(prev > 0)
        sale_window = sales.rolling(config.class_window_days, min_periods=1)
        f["adi"] = window.count() / sale_window.count().where(sale_window.count() > 0)
        f["cv2"] = sale_window.var(ddof=0) / sale_window.mean() ** 2
        f["demand_class"] = [_demand_class(a, c) for a, c in zip(f["adi"], f["cv2"], strict=True)]
        f["day_of_week"] = dates.dayofweek + 1
        f["week_of_year"] = dates.isocalendar().week.to_numpy()
        f["month"] = dates.month
        f["is_month_start"] = (dates.day == 1).astype(float)
        f["is_month_end"] = dates.is_month_end.astype(float)
        f["is_holiday"] = dates.isin(holidays).astype(float)
        f["days_to_next_holiday"] = [next(((h - d).days for h in holidays if h >= d), np.nan) for d in dates]
        for h in range(1, config.horizon + 1):
            f[f"target_{h}"] = demand.rolling(h).sum().shift(-(h - 1))     # NaN when a day is censored
        f["sku"], f["date"], f["first_sale_date"] = sku, dates.date, dates[0].date()
        frames.append(f.reset_index(drop=True))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# comparison helpers

KEYS = ("sku", "date", "first_sale_date")


def numeric_columns(config: DemandConfig) -> list[str]:
    """Output columns but the string demand_class (checked on its own)."""
    return [c for c in feats.output_columns(config) if c != "demand_class"]


def as_doubles(df: DataFrame) -> DataFrame:
    """Every non-key, non-string column cast to double (booleans → 0/1) so Spark and pandas types line up."""
    kinds = dict(df.dtypes)
    return df.select(*KEYS, *[F.col(c) if kinds[c] == "string" else F.col(c).cast("double").alias(c)
                              for c in df.columns if c not in KEYS])


def pandas_to_spark(spark: SparkSession, pdf: pd.DataFrame, columns: list[str]) -> DataFrame:
    values = [c for c in columns if c not in KEYS]
    schema = "sku STRING, date DATE, first_sale_date DATE, " + ", ".join(f"`{c}` DOUBLE" for c in values)
    rows = [(r["sku"], r["date"], r["first_sale_date"],
             *[None if pd.isna(r[c]) else float(r[c]) for c in values]) for r in pdf.to_dict("records")]
    return spark.createDataFrame(rows, schema)


# ---------------------------------------------------------------------------------------------
# tests


@pytest.fixture(scope="module")
def actual(spark) -> DataFrame:
    return spark_features(spark).cache()


def test_every_feature_matches_the_pandas_reference(spark, actual):
    columns = numeric_columns(CONFIG)
    expected = pandas_to_spark(spark, reference_features(), columns)
    assert_approx_df_equality(as_doubles(actual.select(*columns)).orderBy("sku", "date"),
                              expected.orderBy("sku", "date"), precision=1e-9, ignore_nullable=True)


def test_demand_class_matches_the_reference(actual):
    reference = reference_features()
    want = {(r["sku"], r["date"]): r["demand_class"] for r in reference.to_dict("records")}
    got = {(r["sku"], r["date"]): r["demand_class"] for r in actual.select("sku", "date", "demand_class").collect()}
    assert got == want
    assert {"smooth", "intermittent"} <= set(got.values())            # E sells daily, A on 60 % of days


def test_censored_days_are_left_out_of_lags_and_targets(actual):
    e = {r["date"]: r for r in actual.filter("sku = 'E'").collect()}
    flagged = [d for d, r in e.items() if r["likely_stockout"]]
    day = flagged[0]
    assert e[day + dt.timedelta(days=1)]["units_lag_1"] is None
    assert e[day - dt.timedelta(days=2)]["target_3"] is None and e[day]["target_1"] is None


def test_grid_is_calendar_complete_within_each_skus_life(actual):
    rows = {r["sku"]: r for r in actual.groupBy("sku").agg(
        F.min("date").alias("first"), F.max("date").alias("last"), F.count("*").alias("n")).collect()}
    assert rows["B"]["first"] == dt.date(2024, 3, 10) and rows["B"]["last"] == END
    assert rows["C"]["first"] == rows["C"]["last"] == END and rows["C"]["n"] == 1      # one-day SKU
    assert (rows["D"]["first"], rows["D"]["last"]) == (dt.date(2024, 2, 3), dt.date(2024, 2, 25))  # delisted
    for r in rows.values():
        assert r["n"] == (r["last"] - r["first"]).days + 1


def test_one_day_sku_has_no_history_and_known_first_target(actual):
    row = actual.filter("sku = 'C'").first()
    assert row["units"] == 2 and row["units_lag_1"] is None and row["units_mean_3"] is None
    assert row["units_ewm"] is None and row["days_since_last_sale"] is None and row["price"] is None
    assert row["target_1"] == 2 and row["target_2"] is None


def test_stockout_week_is_flagged_and_demand_is_gross(actual):
    flagged = sorted(r["date"].day for r in actual.filter("sku = 'E' AND likely_stockout").collect())
    assert flagged and set(flagged) <= set(range(15, 22)) and 21 in flagged
    assert actual.filter("sku <> 'E' AND likely_stockout").count() == 0


def test_promotion_rule_flags_the_discount_week(actual):
    promo_days = {r["date"] for r in actual.filter("sku = 'A' AND promo_flag").collect()}
    assert promo_days and all(dt.date(2024, 3, 2) <= d <= dt.date(2024, 3, 21) for d in promo_days)


def test_promotions_table_replaces_the_rule(spark):
    promos = spark.createDataFrame([("A", "2024-03-01", "2024-03-07", 0.2), ("B", "2024-03-30", "2024-04-05", 0.3)],
                                   "sku STRING, start_date STRING, end_date STRING, discount DOUBLE")
    orders, items, events = sample_frames(spark)
    lines = pnl.valid_lines(pnl.order_lines(orders, items), START, END)
    sales, activity = pnl.daily_sales(lines), pnl.daily_activity(events, START, END)
    panel = pnl.build_panel(sales, activity, pnl.sku_bounds(sales, activity, END, CONFIG.delist_after_days))
    out = feats.add_features(panel, CONFIG, END, promotions=promos).filter("promo_flag")
    got = sorted((r["sku"], r["date"].day, r["promo_discount"]) for r in out.collect())
    assert got == [("A", d, 0.2) for d in range(1, 8)] + [("B", 30, 0.3), ("B", 31, 0.3)]


def test_line_issues_are_counted_and_dropped(spark):
    orders, items, _ = sample_frames(spark)
    lines = pnl.order_lines(orders, items)
    counts = pnl.line_issue_counts(lines, START, END)
    zero_price = sum(1 for it in sample_rows()[1] if it[3] <= 0)
    assert counts == {"orphan_item": 1, "nonpositive_quantity": 1, "before_start_date": 1, "after_end_date": 1,
                      "zero_or_null_price": zero_price}
    assert pnl.valid_lines(lines, START, END).count() == len(sample_rows()[1]) - 4


def test_features_do_not_read_the_future(spark, actual):
    """Features up to a day are identical when every later day is removed from the input."""
    cut = dt.date(2024, 3, 20)
    truncated = spark_features(spark, end=cut).drop(*feats.target_columns(CONFIG))
    full = actual.filter(F.col("date") <= cut).drop(*feats.target_columns(CONFIG))
    assert_approx_df_equality(as_doubles(truncated).orderBy("sku", "date"), as_doubles(full).orderBy("sku", "date"),
                              precision=1e-9, ignore_nullable=True)
