"""Per-SKU statsforecast forecasts: the same numbers as the library called directly on the same
series, censored days left out, the short-history fallback, Hyndman's scale; and the Spark wrapper."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from statsforecast.models import ARIMA, IMAPA, TSB, AutoETS, CrostonSBA, SeasonalNaive, WindowAverage

from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.models import (
    SHORT_HISTORY,
    expected_undershoot,
    forecast_series,
    statistical_forecasts,
)

START = dt.date(2024, 1, 1)
CONFIG = DemandConfig(lead_time_days=3, horizon=3, min_history_days=20, fit_window_days=60, moving_average_days=14)


def history(units: list[float], censored: set[int] = frozenset()) -> pd.DataFrame:
    return pd.DataFrame({"date": [START + dt.timedelta(days=i) for i in range(len(units))],
                         "units": units, "likely_stockout": [i in censored for i in range(len(units))]})


def intermittent(n: int, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(((rng.random(n) < 0.3) * rng.integers(1, 6, n)).astype(float))


def test_every_model_equals_the_library_on_the_uncensored_days():
    units = intermittent(90)
    censored = {40, 41, 42}
    for i in censored:
        units[i] = 0.0
    origin = START + dt.timedelta(days=80)
    got = forecast_series("s", history(units, censored), [origin], CONFIG).set_index("model")
    y = np.array([u for i, u in enumerate(units[:80]) if i not in censored])[-60:]
    direct = {"moving_average": WindowAverage(14), "seasonal_naive": SeasonalNaive(7),
              "ets": AutoETS(model="ANA", season_length=7), "croston_sba": CrostonSBA(),
              "tsb": TSB(alpha_d=0.1, alpha_p=0.1), "imapa": IMAPA(), "arima": ARIMA(order=(1, 0, 1), method="CSS")}
    for name, model in direct.items():
        want = max(float(model.forecast(y=y, h=3)["mean"].sum()), 0.0)
        assert got.loc[name, "forecast"] == pytest.approx(want, rel=1e-9, abs=1e-12), name
        assert not got.loc[name, "fit_failed"]
    assert got.loc["zero", "forecast"] == 0.0
    assert (got["history_days"] == 77).all()                        # 80 days before the origin, 3 censored
    assert got["scale"].iloc[0] == pytest.approx(np.mean(np.abs(y[7:] - y[:-7])))
    assert got["level"].iloc[0] == pytest.approx(y[-14:].mean())


def test_origin_sees_only_earlier_days():
    units = intermittent(60)
    origin = START + dt.timedelta(days=50)
    changed = units[:50] + [99.0] * 10
    a = forecast_series("s", history(units), [origin], CONFIG).sort_values("model").reset_index(drop=True)
    b = forecast_series("s", history(changed), [origin], CONFIG).sort_values("model").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_parameters_estimated_at_fit_origins_and_carried_forward_to_later_ones():
    units = intermittent(90)
    first, later = START + dt.timedelta(days=70), START + dt.timedelta(days=80)
    got = forecast_series("s", history(units), [later, first], CONFIG, fit_at=frozenset({first}))
    at_later = got[got["origin"] == later].set_index("model")["forecast"]
    y_first, y_later = np.array(units[:70])[-60:], np.array(units[:80])[-60:]
    for name, make in (("ets", lambda: AutoETS(model="ANA", season_length=7)), ("arima", lambda: ARIMA(order=(1, 0, 1), method="CSS"))):
        carried = max(float(make().fit(y_first).forward(y=y_later, h=3)["mean"].sum()), 0.0)
        refitted = max(float(make().forecast(y=y_later, h=3)["mean"].sum()), 0.0)
        assert at_later[name] == pytest.approx(carried, rel=1e-9, abs=1e-12), name
        assert carried != pytest.approx(refitted, rel=1e-6), name      # the two ways differ: the test can fail
    assert at_later["croston_sba"] == pytest.approx(CrostonSBA().forecast(y=y_later, h=3)["mean"].sum())
    refit = forecast_series("s", history(units), [first, later], CONFIG, fit_at=frozenset({first, later}))
    assert refit[(refit["origin"] == later) & (refit["model"] == "arima")]["forecast"].iloc[0] == pytest.approx(
        max(float(ARIMA(order=(1, 0, 1), method="CSS").forecast(y=y_later, h=3)["mean"].sum()), 0.0), rel=1e-9)


def test_carried_parameters_see_only_earlier_days():
    units = intermittent(90)
    first, later = START + dt.timedelta(days=60), START + dt.timedelta(days=70)
    changed = units[:70] + [99.0] * 20
    a, b = (forecast_series("s", history(u), [first, later], CONFIG, fit_at=frozenset({first}))
            .sort_values(["origin", "model"]).reset_index(drop=True) for u in (units, changed))
    pd.testing.assert_frame_equal(a, b)


def test_expected_undershoot_matches_a_position_run_down_by_the_series():
    rng = np.random.default_rng(4)
    y = (rng.random(200_000) < 0.3) * rng.geometric(0.2, 200_000)      # lumpy daily units
    reorder_point, position, undershoots = 50, 80, []
    for units in y:                                                    # order up when the position crosses
        position -= units
        if position <= reorder_point:
            undershoots.append(reorder_point - position)
            position += 30
    assert expected_undershoot(y.astype(float)) == pytest.approx(np.mean(undershoots), rel=0.03)
    assert expected_undershoot(np.zeros(5)) == 0.0 and expected_undershoot(np.ones(5)) == 0.0


def test_short_history_gets_a_flagged_mean_never_zero():
    units = [0.0, 3.0, 0.0, 0.0, 1.0] + [0.0] * 5
    got = forecast_series("new", history(units), [START + dt.timedelta(days=10)], CONFIG)
    assert list(got["model"]) == [SHORT_HISTORY]
    assert got["forecast"].iloc[0] == pytest.approx(np.mean(units) * 3) and got["forecast"].iloc[0] > 0
    assert forecast_series("new", history(units), [START], CONFIG).empty     # nothing before the first day


def test_spark_wrapper_runs_one_group_per_sku(spark):
    rows = [(sku, START + dt.timedelta(days=i), float(u), False)
            for sku, seed in (("a", 1), ("b", 2)) for i, u in enumerate(intermittent(40, seed))]
    panel = spark.createDataFrame(rows, "sku STRING, date DATE, units DOUBLE, likely_stockout BOOLEAN")
    origins = [START + dt.timedelta(days=30), START + dt.timedelta(days=35)]
    got = statistical_forecasts(panel, origins, CONFIG).toPandas()
    assert set(got["sku"]) == {"a", "b"} and set(got["origin"]) == set(origins)
    assert len(got) == 2 * 2 * (1 + 7)                                # zero + moving average + 6 models
    local = forecast_series("a", pd.DataFrame([r[1:] for r in rows if r[0] == "a"],
                                              columns=["date", "units", "likely_stockout"]), origins, CONFIG)
    merged = got[got["sku"] == "a"].merge(local, on=["origin", "model"], suffixes=("", "_local"))
    np.testing.assert_allclose(merged["forecast"], merged["forecast_local"])
