"""Leak-free features and targets on the daily panel (see :mod:`shopai_spark.demand.panel`).

Every feature of the row dated ``t`` reads only rows dated before ``t`` of the same SKU: windows are
row frames ``rowsBetween(-w, -1)`` over the calendar-complete grid, so ``w`` rows are ``w`` days.
Windows shorter than ``w`` at the start of a SKU's life use the days there are (pandas
``rolling(w, min_periods=1)`` on the shifted series); with no earlier day the feature is null.
Calendar and holiday features describe the date itself (known in advance).

Censored days: a ``likely_stockout`` day measured supply, not demand. Its units are left out of the
demand features (lags are null on it; rolling windows, the weighted mean and the demand class skip
it) and of the targets (a target whose days include one is null).

Targets: ``target_h`` = units on days ``t .. t+h-1`` (the row's own day is the first forecast day:
nothing of it is in the features), null unless all ``h`` days are in the SKU's grid, on or before
the run's end date and not censored.

Demand class (Syntetos–Boylan): over the SKU's uncensored days among the ``class_window_days`` days
before ``t``, ``adi`` = days / days with sales and ``cv2`` = (population std / mean)² of the units on
days with sales; ``demand_class`` is smooth (adi < 1.32, cv2 < 0.49), erratic (adi < 1.32),
intermittent (cv2 < 0.49) or lumpy; all three are null without an earlier sale in the window.

Without silver.events (panel ``views`` / ``cart_adds`` null) the activity features
``views_sum_7`` / ``cart_adds_sum_7`` are null and ``likely_stockout`` is never set (it needs views);
every other feature is the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.panel import PANEL_COLUMNS

Transform = Callable[[DataFrame], DataFrame]
ACTIVITY_WINDOW = 7
STATS = ("mean", "std", "min", "max", "sum")
DEMAND = "_demand"        # units, null on a censored (likely_stockout) day
ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49
DEMAND_CLASSES = ("smooth", "erratic", "intermittent", "lumpy")
CALENDAR_COLUMNS = ("day_of_week", "week_of_year", "month", "is_month_start", "is_month_end", "is_holiday",
                    "days_to_next_holiday")


def by_sku() -> Window:
    """Each SKU's rows in date order (one row per day on the complete grid)."""
    return Window.partitionBy("sku").orderBy("date")


def past(days: int) -> Window:
    """The ``days`` rows (days) before the current one."""
    return by_sku().rowsBetween(-days, -1)


def _agg(stat: str, days: int) -> Column:
    col = F.col(DEMAND)
    fn = {"mean": F.avg, "std": F.stddev_samp, "min": F.min, "max": F.max, "sum": F.sum}[stat]
    return fn(col).over(past(days))


def feature_columns(config: DemandConfig) -> list[str]:
    """Names of the model features, in a fixed order."""
    return [
        "history_days",
        *[f"units_lag_{k}" for k in config.lags],
        *[f"units_{s}_{w}" for w in config.rolling_windows for s in STATS],
        "units_ewm",
        "days_since_last_sale",
        *[f"zero_share_{w}" for w in config.zero_share_windows],
        f"views_sum_{ACTIVITY_WINDOW}", f"cart_adds_sum_{ACTIVITY_WINDOW}",
        "price", f"price_mean_{config.price_window}", f"price_rel_{config.price_window}",
        "promo_discount", "promo_flag",
        *CALENDAR_COLUMNS,
        "adi", "cv2",
    ]


def target_columns(config: DemandConfig) -> list[str]:
    return [f"target_{h}" for h in range(1, config.horizon + 1)]


def output_columns(config: DemandConfig) -> list[str]:
    """Columns of :func:`add_features`'s output, in table order."""
    return [*PANEL_COLUMNS, "likely_stockout", *feature_columns(config), "demand_class", *target_columns(config)]


def with_history_and_lags(config: DemandConfig) -> Transform:
    """+ history_days (days since the first sale), units_lag_<k> for k in ``config.lags`` (null when
    that day is censored)."""
    def apply(df: DataFrame) -> DataFrame:
        return df.select("*", F.datediff("date", "first_sale_date").alias("history_days"),
                         *[F.lag(DEMAND, k).over(by_sku()).alias(f"units_lag_{k}") for k in config.lags])
    return apply


def with_rolling(config: DemandConfig) -> Transform:
    """+ units_<mean|std|min|max|sum>_<w> over the uncensored days among the ``w`` past days, for w
    in ``config.rolling_windows`` (std: sample std, null with fewer than 2 days)."""
    def apply(df: DataFrame) -> DataFrame:
        return df.select("*", *[_agg(s, w).alias(f"units_{s}_{w}")
                                for w in config.rolling_windows for s in STATS])
    return apply


def with_demand_class(window_days: int) -> Transform:
    """+ adi, cv2, demand_class over the uncensored days among the ``window_days`` past days (see the
    module docstring). Window sums are differences of running sums (``sum(t-w..t-1) = S(t) - S(t-w)``
    with ``S(t)`` the sum before day t), so the cost does not grow with the window."""
    def window_sum(value: Column) -> Column:
        running = F.sum(value).over(by_sku().rowsBetween(Window.unboundedPreceding, -1))
        return F.coalesce(running, F.lit(0.0)) - F.coalesce(F.lag(running, window_days).over(by_sku()), F.lit(0.0))

    demand = F.col(DEMAND).cast("double")
    sale = F.when(demand > 0, 1.0).otherwise(0.0)

    def apply(df: DataFrame) -> DataFrame:
        staged = df.select("*", window_sum(F.when(demand.isNotNull(), 1.0).otherwise(0.0)).alias("_days"),
                           window_sum(sale).alias("_sales"), window_sum(sale * demand).alias("_sum"),
                           window_sum(sale * demand * demand).alias("_sumsq"))
        sales = F.col("_sales")
        mean = F.col("_sum") / sales
        has_sale = sales > 0
        staged = staged.select("*", F.when(has_sale, F.col("_days") / sales).alias("adi"),
                               F.when(has_sale, F.greatest(F.col("_sumsq") / sales - mean * mean, F.lit(0.0))
                                      / (mean * mean)).alias("cv2"))
        regular, steady = F.col("adi") < ADI_CUTOFF, F.col("cv2") < CV2_CUTOFF
        demand_class = (F.when(F.col("adi").isNull(), F.lit(None).cast("string"))
                        .when(regular & steady, "smooth").when(regular, "erratic")
                        .when(steady, "intermittent").otherwise("lumpy"))
        return staged.withColumn("demand_class", demand_class).drop("_days", "_sales", "_sum", "_sumsq")
    return apply


def with_ewm(alpha: float, window: int) -> Transform:
    """+ units_ewm: exponentially weighted mean of the uncensored days among the last ``window`` past days,
    sum_k (1-alpha)^k u[t-1-k] / sum_k (1-alpha)^k over the k = 0..n-1 days there are (n <= window);
    pandas ``ewm(alpha, adjust=True)`` truncated to ``window`` days. Null with no past day."""
    decay = 1.0 - alpha

    def apply(df: DataFrame) -> DataFrame:
        history = F.collect_list(F.col(DEMAND).cast("double")).over(past(window))
        n = F.size(history)
        # Horner over oldest → newest: sum_i x_i * decay^(n-1-i)
        weighted = F.aggregate(history, F.lit(0.0), lambda acc, x: acc * decay + x)
        weights = (1.0 - F.pow(F.lit(decay), n)) / alpha
        return df.withColumn("units_ewm", F.when(n > 0, weighted / weights))
    return apply


def with_intermittency(config: DemandConfig) -> Transform:
    """+ days_since_last_sale (days back to the latest earlier day with units > 0, using
    ``prior_last_sale_date`` when the grid starts late; null if none), zero_share_<w> (share of the ``w``
    past days with no units), views_sum_7 / cart_adds_sum_7 (past 7 days; null without events)."""
    def apply(df: DataFrame) -> DataFrame:
        last_sale = F.max(F.when(F.col("units") > 0, F.col("date"))).over(
            by_sku().rowsBetween(Window.unboundedPreceding, -1))
        zero = F.when(F.col("units") == 0, 1.0).otherwise(0.0)
        return df.select(
            "*",
            F.datediff("date", F.coalesce(last_sale, "prior_last_sale_date")).alias("days_since_last_sale"),
            *[F.avg(zero).over(past(w)).alias(f"zero_share_{w}") for w in config.zero_share_windows],
            *[F.sum(c).over(past(ACTIVITY_WINDOW)).alias(f"{c}_sum_{ACTIVITY_WINDOW}") for c in ("views", "cart_adds")],
        )
    return apply


def with_price(config: DemandConfig) -> Transform:
    """+ price (the latest daily ``avg_price`` of the last ``promo_reference_days`` past days),
    price_mean_<p> (mean of the daily ``avg_price`` over the ``p = price_window`` past days with a
    price), price_rel_<p> = price / price_mean_<p>, promo_discount = 1 - price / (highest daily price
    of the last ``promo_reference_days`` past days), promo_flag = promo_discount >= threshold.

    A day's own selling price is not a feature: it exists only when the day has sales (a leak)."""
    p = config.price_window

    def apply(df: DataFrame) -> DataFrame:
        reference = F.max("avg_price").over(past(config.promo_reference_days))
        staged = df.select(
            "*",
            F.last("avg_price", ignorenulls=True).over(past(config.promo_reference_days)).alias("price"),
            F.avg("avg_price").over(past(p)).alias(f"price_mean_{p}"),
            reference.alias("_reference_price"),
        )
        discount = F.when(F.col("_reference_price") > 0, 1.0 - F.col("price") / F.col("_reference_price"))
        return (staged
                .withColumn(f"price_rel_{p}", F.when(F.col(f"price_mean_{p}") > 0,
                                                     F.col("price") / F.col(f"price_mean_{p}")))
                .withColumn("promo_discount", discount)
                .withColumn("promo_flag", F.coalesce(discount >= config.promo_discount_threshold, F.lit(False)))
                .drop("_reference_price"))
    return apply


def with_promotions(promotions: DataFrame) -> Transform:
    """Replace promo_discount / promo_flag by a promotions table (sku, start_date, end_date, discount):
    promo_discount = the largest discount of a promotion covering the day (0 when none),
    promo_flag = a promotion covers the day. Planned promotions are known in advance."""
    promos = promotions.select("sku", F.col("start_date").cast("date").alias("_start"),
                               F.col("end_date").cast("date").alias("_end"),
                               F.col("discount").cast("double").alias("_discount"))

    def apply(df: DataFrame) -> DataFrame:
        keys = df.select("sku", "date").distinct()
        covered = (keys.join(F.broadcast(promos), "sku")
                   .filter((F.col("date") >= F.col("_start")) & (F.col("date") <= F.col("_end")))
                   .groupBy("sku", "date").agg(F.max("_discount").alias("_discount")))
        return (df.drop("promo_discount", "promo_flag").join(covered, ["sku", "date"], "left")
                .withColumn("promo_discount", F.coalesce("_discount", F.lit(0.0)))
                .withColumn("promo_flag", F.col("_discount").isNotNull())
                .drop("_discount"))
    return apply


def with_stockout(config: DemandConfig) -> Transform:
    """+ likely_stockout: a day without sales but with views, whose run of zero days so far
    (r = ``days_since_last_sale``) is improbable for the SKU. Over the days of the
    ``stockout_rate_window`` past days that precede the run (mean units ``rate``, share of zero days
    ``z``, Laplace-smoothed: (zeros + 1) / (days + 2)), both the Poisson chance exp(-rate x r) and the
    empirical chance z^r must be below
    ``stockout_max_probability`` (the empirical one keeps intermittent sellers from being flagged
    for their usual gaps). A run that fills the whole window is not flagged (no evidence left), nor
    is any day when ``views`` is null (a shop without events)."""
    window = past(config.stockout_rate_window)
    run = F.col("days_since_last_sale")
    in_run = F.least(run - 1, F.count("units").over(window))      # the run's earlier days in the window
    before = F.count("units").over(window) - in_run
    rate = F.sum("units").over(window) / before
    zeros = F.sum(F.when(F.col("units") == 0, 1).otherwise(0)).over(window) - in_run
    zero_share = (zeros + 1) / (before + 2)                           # Laplace: a few days prove little
    chance = F.greatest(F.exp(-rate * run), F.pow(zero_share, run))

    def apply(df: DataFrame) -> DataFrame:
        flag = ((F.col("units") == 0) & (F.col("views") > 0) & (before > 0)
                & (chance < config.stockout_max_probability))
        return df.withColumn("likely_stockout", F.coalesce(flag, F.lit(False)))
    return apply


def with_calendar(holidays: list[str]) -> Transform:
    """+ day_of_week (1 = Monday .. 7), week_of_year (ISO), month, is_month_start, is_month_end,
    is_holiday, days_to_next_holiday (0 on a holiday; null with no later holiday in the list)."""
    days = sorted({dt.date.fromisoformat(d) for d in holidays})
    listed = F.array(*[F.lit(d) for d in days]) if days else F.array().cast("array<date>")

    def apply(df: DataFrame) -> DataFrame:
        date = F.col("date")
        ahead = F.filter(listed, lambda h: h >= date)
        return df.select(
            "*",
            (F.weekday(date) + 1).alias("day_of_week"),
            F.weekofyear(date).alias("week_of_year"),
            F.month(date).alias("month"),
            (F.dayofmonth(date) == 1).alias("is_month_start"),
            (date == F.last_day(date)).alias("is_month_end"),
            F.array_contains(listed, date).alias("is_holiday"),
            F.when(F.size(ahead) > 0, F.datediff(F.array_min(ahead), date)).alias("days_to_next_holiday"),
        )
    return apply


def with_targets(horizon: int, end_date: dt.date) -> Transform:
    """+ target_1..target_<horizon>: units on days t..t+h-1 when all h days are in the grid, on or
    before ``end_date`` and uncensored; null otherwise (the future is not known yet, the SKU was
    delisted, or a stockout hid the demand)."""
    def target(h: int) -> Column:
        frame = by_sku().rowsBetween(0, h - 1)
        known = ((F.count(DEMAND).over(frame) == h) & (F.date_add("date", h - 1) <= F.lit(end_date)))
        return F.when(known, F.sum("units").over(frame)).alias(f"target_{h}")

    def apply(df: DataFrame) -> DataFrame:
        return df.select("*", *[target(h) for h in range(1, horizon + 1)])
    return apply


def add_features(panel: DataFrame, config: DemandConfig, end_date: dt.date,
                 promotions: DataFrame | None = None) -> DataFrame:
    """Panel (:func:`shopai_spark.demand.panel.build_panel`) → panel columns + likely_stockout +
    :func:`feature_columns` + demand_class + :func:`target_columns` (``prior_last_sale_date``
    dropped). The stockout flag comes first: the demand features and targets leave its days out."""
    df = panel.transform(with_intermittency(config)).transform(with_price(config))
    if promotions is not None:
        df = df.transform(with_promotions(promotions))
    return (df.transform(with_stockout(config))
            .withColumn(DEMAND, F.when(~F.col("likely_stockout"), F.col("units")))
            .transform(with_history_and_lags(config))
            .transform(with_rolling(config))
            .transform(with_ewm(config.ewm_alpha, config.ewm_window))
            .transform(with_demand_class(config.class_window_days))
            .transform(with_calendar(config.holidays))
            .transform(with_targets(config.horizon, end_date))
            .drop("prior_last_sale_date", DEMAND))
