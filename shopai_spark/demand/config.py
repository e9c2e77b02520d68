"""Configuration of the per-SKU demand features job (``jobs/demand_features.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from shopai_spark.config import setting

# Holidays of the default config: New Year, Christmas and Boxing Day 2022..2026 (replace with the
# shop's own calendar in conf/*.yaml).
DEFAULT_HOLIDAYS = tuple(f"{y}-{md}" for y in range(2022, 2027) for md in ("01-01", "12-25", "12-26"))
# Season length of the seasonal models (weekly pattern).
SEASON_DAYS = 7
# Forecast models by name: the two baselines, the per-SKU statsforecast models and the global GBT.
BASELINES = ("zero", "moving_average")
STAT_MODELS = ("seasonal_naive", "ets", "croston_sba", "tsb", "imapa", "arima")
GLOBAL_MODELS = ("gbt",)
MODELS = (*BASELINES, *STAT_MODELS, *GLOBAL_MODELS)


def _check_date(key: str, value: str | None) -> None:
    if value is None:
        return
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"demand.{key} must be YYYY-MM-DD, got {value!r}") from exc


@dataclass(frozen=True)
class DemandConfig:
    """Daily per-SKU panel, leak-free features, targets, baseline forecast and inventory signals.

    Panel: every SKU x day from its first sale to ``end_date`` (null → the latest order date), ended
    earlier ``delist_after_days`` days after the SKU's last sale or event (delisted). Orders before
    ``start_date`` (null → no lower bound) or after ``end_date`` are left out and counted.

    Features at a row's date use only earlier days: ``lags`` of units, mean/std/min/max/sum over
    ``rolling_windows`` past days, an exponentially weighted mean (``ewm_alpha``, truncated to the
    last ``ewm_window`` days), share of zero days over ``zero_share_windows``, price and promotion
    (``price_window``; promo when the last known price <= (1 - ``promo_discount_threshold``) x the
    highest daily price of the last ``promo_reference_days`` days, or from ``promotions_table``
    (``layer.name`` with sku, start_date, end_date, discount) when set), calendar with ``holidays``.
    Targets ``target_1..target_<horizon>``: units on the row's date and the following days.

    ``likely_stockout``: a zero day with views whose zero run is improbable (Poisson probability
    below ``stockout_max_probability``) at the SKU's past ``stockout_rate_window``-day mean rate.

    ``mode: incremental`` recomputes the last ``incremental_days`` days only (plus the look-back the
    windows need) and replaces exactly those rows; ``full`` rebuilds the table.

    Demand class per row (Syntetos–Boylan ADI / CV² over the ``class_window_days`` past days).

    Forecast: every model of ``models`` predicts the units of the ``lead_time_days`` days from a
    forecast origin. Rolling-origin backtest: ``backtest_origins`` origins ``origin_step_days`` apart,
    the last one the latest whose lead time has ended; the model of each demand class is chosen on the
    first ``selection_origins`` and reported on the later ones. Quantiles (P50, P90, ``service_level``)
    are conformal, from the scaled backtest errors of the chosen model of the class; the reorder point
    is the ``service_level`` quantile of lead-time demand.
    """

    mode: Literal["full", "incremental"] = setting(
        "full", doc="full: rebuild the table; incremental: recompute the last incremental_days days and "
                    "replace those rows")
    start_date: str | None = setting(None, doc="first order day (YYYY-MM-DD); earlier orders are left out "
                                               "and counted; null = no lower bound")
    end_date: str | None = setting(None, doc="last panel day (YYYY-MM-DD); null = the latest order day; "
                                             "later orders are left out and counted")
    incremental_days: int = setting(35, doc="incremental mode: days recomputed up to "
                                            "end_date (> horizon; >= days since the last run + horizon - 1)")
    delist_after_days: int = setting(91, doc="a SKU's panel ends this many days after its last sale or event "
                                             "(delisted)")
    lags: list[int] = setting(factory=lambda: [1, 7, 14, 28], doc="k: units_lag_<k>, units k days earlier")
    rolling_windows: list[int] = setting(
        factory=lambda: [7, 28, 91], doc="units mean/std/min/max/sum over each w past days")
    ewm_alpha: float = setting(0.3, doc="(0, 1): smoothing factor of units_ewm (exponentially weighted mean "
                                        "of units)")
    ewm_window: int = setting(28, doc="units_ewm is truncated to this many past days")
    zero_share_windows: list[int] = setting(
        factory=lambda: [28, 91], doc="w: zero_share_<w>, share of the w past days without units")
    price_window: int = setting(28, doc="p: price_mean_<p>, the mean daily price of the p past days, and "
                                        "price_rel_<p>")
    promo_reference_days: int = setting(91, doc="past days giving price (the latest) and the reference "
                                                "(highest) price")
    promo_discount_threshold: float = setting(0.1, doc="(0, 1): promo_flag when 1 - price / reference "
                                                       "price >= this")
    promotions_table: str | None = setting(None, doc="`layer.name` (sku, start_date, end_date, discount) "
                                                     "setting promo_discount / promo_flag; null = inferred "
                                                     "from prices")
    holidays: list[str] = setting(
        factory=lambda: list(DEFAULT_HOLIDAYS),
        doc="holidays (YYYY-MM-DD) for is_holiday and days_to_next_holiday")
    stockout_rate_window: int = setting(28, doc="likely_stockout: past days from which a zero run's "
                                                "probability is judged")
    stockout_max_probability: float = setting(0.01, doc="(0, 1): likely_stockout when the zero run's Poisson "
                                                        "and empirical chances are both below this")
    horizon: int = setting(7, doc="target_1..target_<horizon>: target_h = units on the row's day and the "
                                  "h - 1 days after")
    forecast: bool = setting(True, doc="run the rolling-origin backtest of the forecast models and write "
                                       "gold.inventory_signals")
    lead_time_days: int = setting(7, doc="L, <= horizon: forecasts predict target_L; also the inventory lead "
                                         "time")
    class_window_days: int = setting(364, doc="demand_class, adi and cv2 are measured over this many past days")
    models: list[str] = setting(
        factory=lambda: list(MODELS),
        doc="forecast models compared in the backtest: zero and moving_average (baselines, always "
            "included), seasonal_naive, ets, croston_sba, tsb, imapa, arima (statsforecast, per SKU) and gbt "
            "(global Spark GBT)")
    moving_average_days: int = setting(28, doc="the moving_average baseline: mean of the last this many "
                                               "uncensored days")
    fit_window_days: int = setting(182, doc="per-SKU models are fitted on at most this many latest uncensored "
                                            "days before the origin")
    min_history_days: int = setting(28, doc="uncensored days before an origin a SKU needs for per-SKU models; "
                                            "fewer: flagged short_history fallback (mean of its days)")
    backtest_origins: int = setting(8, doc="forecast origins of the rolling-origin backtest (>= 2)")
    selection_origins: int = setting(4, doc="the first this many origins choose the model of each demand "
                                            "class; the later ones are reported (1 .. backtest_origins - 1)")
    origin_step_days: int = setting(7, doc="days between backtest origins (>= lead_time_days, so that no "
                                           "chosen-on target overlaps a reported origin's training data)")
    refit_every_origin: bool = setting(False, doc="estimate the ETS and ARIMA parameters again at every "
                                                  "backtest origin (several times the fitting time); false: at the "
                                                  "first origin, then apply them to the longer series (state "
                                                  "updated, as statsforecast's refit=False); always at serving")
    min_class_skus: int = setting(10, doc="a demand class with fewer SKUs in the selection rows uses the "
                                          "model chosen on all SKUs")
    service_level: float = setting(0.95, doc="(0, 1): target cycle service level; reorder point = this "
                                             "quantile of lead-time demand")
    gbt_max_iter: int = setting(30, doc="GBTRegressor trees (maxIter, >= 1)")
    gbt_max_depth: int = setting(5, doc="GBTRegressor tree depth (maxDepth, >= 1)")
    max_train_rows: int = setting(500_000, doc="GBT training rows are sampled down to about this many")
    seed: int = setting(42, doc="seed of the GBT and of its training sample")
    demo_sku: str | None = setting(None, doc="SKU shown in the job summary; null = most units in the last 28 "
                                             "days")

    def __post_init__(self) -> None:
        _check_date("start_date", self.start_date)
        _check_date("end_date", self.end_date)
        for i, day in enumerate(self.holidays):
            _check_date(f"holidays[{i}]", day)
        for name in ("lags", "rolling_windows", "zero_share_windows"):
            values = getattr(self, name)
            if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
                raise ValueError(f"demand.{name} must be distinct integers >= 1, got {values}")
        for name in ("ewm_window", "price_window", "promo_reference_days", "stockout_rate_window", "horizon",
                     "lead_time_days", "delist_after_days", "gbt_max_iter", "gbt_max_depth", "max_train_rows",
                     "class_window_days", "moving_average_days", "fit_window_days", "min_history_days",
                     "origin_step_days", "min_class_skus"):
            if getattr(self, name) < 1:
                raise ValueError(f"demand.{name} must be >= 1, got {getattr(self, name)}")
        if self.incremental_days <= self.horizon:
            raise ValueError(f"demand.incremental_days must be > demand.horizon ({self.horizon}) so that targets "
                             f"that became known are recomputed, got {self.incremental_days}")
        if self.lead_time_days > self.horizon:
            raise ValueError(f"demand.lead_time_days must be <= demand.horizon ({self.horizon}), "
                             f"got {self.lead_time_days}")
        for name in ("ewm_alpha", "promo_discount_threshold", "stockout_max_probability", "service_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"demand.{name} must be in (0, 1), got {getattr(self, name)}")
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown or not set(BASELINES) <= set(self.models):
            raise ValueError(f"demand.models must hold {', '.join(BASELINES)} (the baselines) and only models of "
                             f"{', '.join(MODELS)}; got {self.models}")
        if self.backtest_origins < 2 or not 1 <= self.selection_origins < self.backtest_origins:
            raise ValueError(f"demand.backtest_origins must be >= 2 and demand.selection_origins in 1.."
                             f"{self.backtest_origins - 1}, got {self.backtest_origins} and {self.selection_origins}")
        if self.origin_step_days < self.lead_time_days:
            raise ValueError(f"demand.origin_step_days must be >= demand.lead_time_days ({self.lead_time_days}), "
                             f"got {self.origin_step_days}")
        if self.promotions_table is not None and self.promotions_table.count(".") != 1:
            raise ValueError(f"demand.promotions_table must look like layer.name, got {self.promotions_table!r}")
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError(f"demand.start_date {self.start_date} is after demand.end_date {self.end_date}")

    @property
    def lookback_days(self) -> int:
        """Days of history a feature at a date can read: the longest window or lag."""
        return max(*self.lags, *self.rolling_windows, *self.zero_share_windows, self.ewm_window,
                   self.price_window, self.promo_reference_days, self.stockout_rate_window, self.class_window_days,
                   SEASON_DAYS)
