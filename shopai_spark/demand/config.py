"""Configuration of the per-SKU demand features job (``jobs/demand_features.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemandConfig:
    """Daily per-SKU panel: lags, rolling windows, targets."""

    lags: list[int] = field(default_factory=lambda: [1, 7, 14, 28])
    rolling_windows: list[int] = field(default_factory=lambda: [7, 28, 91])
    horizon: int = 7
