"""Configuration of the customer-segments job (``jobs/segments.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentsConfig:
    """K-Means customer segmentation."""

    k_min: int = 2
    k_max: int = 8
    seed: int = 42
