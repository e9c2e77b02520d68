"""Configuration of the association-rules job (``jobs/fpgrowth.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FpGrowthConfig:
    """FP-Growth market-basket mining thresholds."""

    min_support: float = 0.01
    min_confidence: float = 0.3
