"""Per-SKU forecasts of lead-time demand with Nixtla statsforecast, one pandas group per SKU.

For every forecast origin ``o`` the training series of a SKU is its uncensored daily units before
``o`` (``likely_stockout`` days are left out: they measured supply, not demand), at most the latest
``fit_window_days`` of them. With at least ``min_history_days`` such days each model forecasts the
next L = ``lead_time_days`` days and the lead-time forecast is their sum (clipped at 0):

* ``zero`` (baseline): 0;
* ``moving_average`` (baseline): statsforecast ``WindowAverage(moving_average_days)``;
* ``seasonal_naive``: ``SeasonalNaive(7)``; ``ets``: ``AutoETS(model="ANA", season_length=7)``
  (additive error and weekly season, no trend); ``croston_sba``: ``CrostonSBA()``; ``tsb``:
  ``TSB(alpha_d=0.1, alpha_p=0.1)``; ``imapa``: ``IMAPA()``; ``arima``: ``ARIMA(order=(1, 0, 1), method="CSS")``
  (fixed order: ``AutoARIMA``'s order search took 10-100x as long per series here; estimated by
  conditional sum of squares, a cheaper fit than statsforecast's default CSS-ML).

A model that raises or returns a non-finite value on a series gets the moving average instead and
``fit_failed = true`` (counted in the job's metrics). Each (sku, origin) row also carries
``history_days`` (uncensored days before ``o``), ``scale`` (the in-sample one-step seasonal-naive
MAE of the training series: mean |y_t - y_{t-7}|, Hyndman's MASE denominator), ``level`` (the
mean of the training series' last ``moving_average_days`` days) and ``undershoot`` (the expected
units by which the inventory position falls below the reorder point on the day it crosses it:
``E[y²] / (2 E[y]) − 1/2`` over the training series, the mean of the discrete renewal excess of the
selling days' units; 0 without a sale).

Parameters. ETS and ARIMA estimate parameters; they are estimated at the origins in ``fit_at`` (and
at a SKU's first origin with enough history) and kept at the other origins, where the model is
applied to the longer series with statsforecast's ``forward`` (the state follows the new days, the
parameters stay those estimated from earlier data: nothing leaks). That is statsforecast's
``cross_validation(refit=False)``; it cuts the backtest's fitting time several-fold. The other models
have no estimated parameters and are simply run on each origin's series.

With fewer than ``min_history_days`` days only the ``short_history`` row is written: the mean of
every uncensored day before ``o`` times L (the flagged fallback of a new SKU, never 0 for a SKU that
has sold).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand.config import SEASON_DAYS, STAT_MODELS, DemandConfig

SHORT_HISTORY = "short_history"
FORECAST_SCHEMA = ("sku string, origin date, model string, forecast double, fit_failed boolean, "
                   "history_days int, scale double, level double, undershoot double")


def _builders(config: DemandConfig) -> dict[str, Callable[[], object]]:
    """Model name → a function making a fresh statsforecast model (imported here: workers only)."""
    from statsforecast.models import ARIMA, IMAPA, TSB, AutoETS, CrostonSBA, SeasonalNaive, WindowAverage

    return {
        "moving_average": lambda: WindowAverage(window_size=config.moving_average_days),
        "seasonal_naive": lambda: SeasonalNaive(season_length=SEASON_DAYS),
        "ets": lambda: AutoETS(model="ANA", season_length=SEASON_DAYS),
        "croston_sba": CrostonSBA,
        "tsb": lambda: TSB(alpha_d=0.1, alpha_p=0.1),
        "imapa": IMAPA,
        "arima": lambda: ARIMA(order=(1, 0, 1), method="CSS"),
    }


class SeriesModel:
    """One model of one SKU across its origins: estimates parameters when told to (or never did),
    else applies the parameters estimated at an earlier origin to the new series (``forward``)."""

    def __init__(self, make_model: Callable[[], object]):
        self.make_model = make_model
        self.estimates_parameters = hasattr(make_model(), "forward")
        self.fitted = None

    def lead_time_forecast(self, y: np.ndarray, lead_time_days: int, refit: bool) -> float | None:
        """Sum of the next ``lead_time_days`` daily forecasts after series ``y`` (clipped at 0); None
        when the model fails or returns a non-finite value."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not self.estimates_parameters:
                    daily = self.make_model().forecast(y=y, h=lead_time_days)["mean"]
                else:
                    if refit or self.fitted is None:
                        self.fitted = self.make_model().fit(y)
                    daily = self.fitted.forward(y=y, h=lead_time_days)["mean"]
        except Exception:  # noqa: BLE001 - any numerical failure of one fit falls back, counted
            return None
        total = float(np.sum(daily))
        return max(total, 0.0) if np.isfinite(total) else None


def seasonal_naive_scale(y: np.ndarray) -> float | None:
    """In-sample one-step seasonal-naive MAE, mean |y_t - y_{t-7}|; None with fewer than 8 days."""
    if len(y) <= SEASON_DAYS:
        return None
    return float(np.mean(np.abs(y[SEASON_DAYS:] - y[:-SEASON_DAYS])))


def expected_undershoot(y: np.ndarray) -> float:
    """E[y²] / (2 E[y]) − 1/2 (at least 0), 0 when ``y`` has no sale (see the module docstring)."""
    total = float(np.sum(y))
    return max(float(np.sum(y * y)) / (2.0 * total) - 0.5, 0.0) if total > 0 else 0.0


def forecast_series(sku: str, history: pd.DataFrame, origins: list[dt.date], config: DemandConfig,
                    fit_at: frozenset[dt.date] = frozenset()) -> pd.DataFrame:
    """One SKU's panel rows (date, units, likely_stockout; any order) → :data:`FORECAST_SCHEMA` rows,
    one per origin and model; parameters estimated at the origins in ``fit_at`` (see the module
    docstring)."""
    history = history.sort_values("date")
    uncensored = history[~history["likely_stockout"].astype(bool) & history["units"].notna()]
    dates = pd.to_datetime(uncensored["date"]).dt.date.to_numpy()
    units = uncensored["units"].to_numpy(dtype=float)
    models = [m for m in config.models if m in ("moving_average", *STAT_MODELS)]
    builders = _builders(config)
    series_models = {name: SeriesModel(builders[name]) for name in models}
    lead = config.lead_time_days
    rows = []
    for origin in sorted(origins):
        past = units[dates < origin]
        n = len(past)
        if n == 0:
            continue
        base = {"sku": sku, "origin": origin, "history_days": n}
        if n < config.min_history_days:
            rows.append({**base, "model": SHORT_HISTORY, "forecast": float(past.mean() * lead), "fit_failed": False,
                         "scale": seasonal_naive_scale(past), "level": float(past.mean()),
                         "undershoot": expected_undershoot(past)})
            continue
        y = past[-config.fit_window_days:]
        base.update(scale=seasonal_naive_scale(y), level=float(y[-config.moving_average_days:].mean()),
                    undershoot=expected_undershoot(y))
        average = base["level"] * lead
        rows.append({**base, "model": "zero", "forecast": 0.0, "fit_failed": False})
        for name in models:
            value = series_models[name].lead_time_forecast(y, lead, refit=origin in fit_at)
            rows.append({**base, "model": name, "forecast": average if value is None else value,
                         "fit_failed": value is None})
    columns = ["sku", "origin", "model", "forecast", "fit_failed", "history_days", "scale", "level", "undershoot"]
    return pd.DataFrame(rows, columns=columns)


def statistical_forecasts(panel: DataFrame, origins: list[dt.date], config: DemandConfig,
                          fit_at: frozenset[dt.date] = frozenset()) -> DataFrame:
    """Panel rows (sku, date, units, likely_stockout) → :data:`FORECAST_SCHEMA`: every SKU's
    forecasts at every origin, parameters estimated at ``fit_at`` (``groupBy("sku").applyInPandas``,
    one group per SKU; nothing on the driver)."""
    series = panel.select("sku", "date", F.col("units").cast("double").alias("units"), "likely_stockout")

    def per_sku(key, pdf):  # no type hints: Spark would try to read an eval type from them
        return forecast_series(key[0], pdf, origins, config, fit_at)

    return series.groupBy("sku").applyInPandas(per_sku, schema=FORECAST_SCHEMA)
