"""Configuration of the association-rules job (``jobs/fpgrowth.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from shopai_spark.config import setting

# Thresholds are used as exact fractions of their decimal text (0.8 → 4/5); a bounded denominator
# keeps the integer comparisons well inside DECIMAL(38, 0).
MAX_THRESHOLD_DENOMINATOR = 10**12


def exact_fraction(value: float) -> Fraction:
    """The decimal number ``value`` as written (``0.1`` → 1/10, not the binary double)."""
    return Fraction(str(value))


@dataclass(frozen=True)
class FpGrowthConfig:
    """FP-Growth market-basket mining (see docs/basket.md).

    ``level``: mine SKUs, or categories (SKU → silver.products.category). Baskets are the distinct
    items of one order; baskets with fewer than ``min_basket_size`` or more than ``max_basket_size``
    distinct items are counted and left out. ``window_start``/``window_end`` (``YYYY-MM-DD``, start
    inclusive, end exclusive) or ``window_days`` (the last N days up to the latest order) restrict
    the orders. An itemset is frequent when its count >= ceil(min_support × baskets), computed
    exactly; a rule is kept when joint_count / antecedent_count >= min_confidence, compared in
    integers. ``max_itemsets`` is the guard's limit on the estimated number of frequent itemsets
    (100,000 by default: a shop acts on thousands of rules, and 100,000 itemsets already give
    hundreds of thousands of rules; raise it deliberately).
    ``fbt_top_k`` companions per item; ``top_rules`` rows in the MLflow CSV; ``plot_rules`` rules
    (at most) in the scatter plot; ``summary_rules`` rules printed in the job summary.
    """

    min_support: float = setting(0.01, doc="(0, 1]: an itemset is frequent when "
                                           "count >= ceil(min_support x baskets)")
    min_confidence: float = setting(0.3, doc="[0, 1]: a rule is kept when "
                                             "joint_count / antecedent_count >= this")
    num_partitions: int | None = setting(None, doc="FP-Growth numPartitions (>= 1); null = the input's "
                                                   "partitions")
    level: Literal["sku", "category"] = setting(
        "sku", doc="mine SKUs, or categories (SKU → silver.products.category)")
    min_basket_size: int = setting(1, doc="baskets with fewer distinct items are counted and left out (>= 1)")
    max_basket_size: int = setting(50, doc="baskets with more distinct items (B2B outliers) are counted and "
                                           "left out")
    window_start: str | None = setting(None, doc="start of the order window (YYYY-MM-DD, inclusive); "
                                                 "null = unbounded")
    window_end: str | None = setting(None, doc="end of the order window (YYYY-MM-DD, exclusive); "
                                               "null = unbounded")
    window_days: int | None = setting(None, doc="last N days up to the latest order (>= 1); excludes "
                                                "window_start/end")
    max_itemsets: int = setting(100_000, doc="guard: stop before mining when more frequent itemsets are "
                                             "estimated")
    fbt_top_k: int = setting(10, doc="companions per item in gold.frequently_bought_together (>= 1)")
    top_rules: int = setting(200, doc="best rules by lift in the MLflow artifact top_rules.csv (>= 1)")
    plot_rules: int = setting(5_000, doc="rules (a random sample, at most) in the support/confidence scatter "
                                         "plot")
    summary_rules: int = setting(5, doc="best rules by lift printed in the job summary (>= 1)")

    def __post_init__(self) -> None:
        if not 0.0 < self.min_support <= 1.0:
            raise ValueError(f"fpgrowth.min_support must be in (0, 1], got {self.min_support}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"fpgrowth.min_confidence must be in [0, 1], got {self.min_confidence}")
        for name in ("min_support", "min_confidence"):
            if exact_fraction(getattr(self, name)).denominator > MAX_THRESHOLD_DENOMINATOR:
                raise ValueError(f"fpgrowth.{name} may have at most 12 decimals, got {getattr(self, name)}")
        if self.num_partitions is not None and self.num_partitions < 1:
            raise ValueError(f"fpgrowth.num_partitions must be >= 1 or null, got {self.num_partitions}")
        if not 1 <= self.min_basket_size <= self.max_basket_size:
            raise ValueError("fpgrowth.min_basket_size/max_basket_size must satisfy 1 <= min <= max, "
                             f"got {self.min_basket_size}..{self.max_basket_size}")
        for name in ("window_start", "window_end"):
            value = getattr(self, name)
            if value is not None:
                try:
                    dt.date.fromisoformat(value)
                except ValueError as exc:
                    raise ValueError(f"fpgrowth.{name} must be YYYY-MM-DD, got {value!r}") from exc
        if self.window_start and self.window_end and self.window_start >= self.window_end:
            raise ValueError(f"fpgrowth.window_start must be before window_end, got {self.window_start} "
                             f"and {self.window_end}")
        if self.window_days is not None:
            if self.window_days < 1:
                raise ValueError(f"fpgrowth.window_days must be >= 1 or null, got {self.window_days}")
            if self.window_start or self.window_end:
                raise ValueError("fpgrowth.window_days cannot be combined with window_start/window_end")
        for name in ("max_itemsets", "fbt_top_k", "top_rules", "plot_rules", "summary_rules"):
            if getattr(self, name) < 1:
                raise ValueError(f"fpgrowth.{name} must be >= 1, got {getattr(self, name)}")
