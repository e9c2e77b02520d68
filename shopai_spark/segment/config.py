"""Configuration of the customer-segments job (``jobs/segments.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from shopai_spark.config import setting

# Per-customer features (see docs/segment.md for their definitions), in model order.
ALL_FEATURES = (
    "recency_days", "frequency", "monetary", "avg_order_value", "avg_basket_size",
    "views", "cart_adds", "conversion_rate", "category_diversity", "tenure_days",
)
# Behaviour features counted from silver.events: null for every customer when the shop has no events.
EVENT_FEATURES = ("views", "cart_adds", "conversion_rate")
# Default model inputs: recency, frequency, monetary and tenure. The other (behaviour) features are
# computed, profiled and written for every customer and can be added with ``segments.features``; on
# the generator's planted segments adding views made the silhouette rule choose k = 3 (ARI 0.48)
# instead of k = 5 (ARI 0.98) — measured in tests/test_segment_job.py's end-to-end setting.
MODEL_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days")
# Right-skewed counts and amounts: log1p before standardising.
LOG_FEATURES = frozenset({
    "recency_days", "frequency", "monetary", "avg_order_value", "avg_basket_size", "views", "cart_adds",
    "category_diversity",
})
# Exact minimum-cost matching of centroids is a bitmask DP over 2**k states.
MAX_K = 15


@dataclass(frozen=True)
class SegmentsConfig:
    """K-Means customer segmentation.

    ``mode``: ``fit`` (choose k, fit scaler + K-Means, log the model) or ``score`` (assign customers
    with the model at ``model_uri``, default: the latest finished fit run of this experiment).
    ``reference_date`` (``YYYY-MM-DD``; null → the day after the latest valid order) is the "as of"
    date of recency and tenure; activity on or after it is left out. ``k`` fixes the number of
    segments; null → evaluate ``k_min..k_max`` on at most ``selection_sample`` customers and take
    the smallest k whose silhouette is within ``silhouette_tolerance`` of the best one. Every K-Means
    fit is run ``n_init`` times (seeds ``seed``, ``seed + 1``, ...) and the lowest cost is kept: a
    single k-means|| start can end in a poor local optimum.
    """

    mode: Literal["fit", "score"] = setting("fit", doc="``fit`` (choose k, fit scaler + K-Means, log the "
                                                       "model) or ``score`` (assign customers with the model "
                                                       "at ``model_uri``, default: the latest finished fit "
                                                       "run of this experiment)")
    reference_date: str | None = setting(None, doc='the "as of" date of recency and tenure (``YYYY-MM-DD``); '
                                                   "activity on or after it is left out; null = the day "
                                                   "after the latest valid order")
    features: list[str] = setting(
        factory=lambda: list(MODEL_FEATURES),
        doc="K-Means inputs (fit mode), any of ALL_FEATURES")
    k: int | None = setting(None, doc="number of segments, 2..15; null = chosen from k_min..k_max by "
                                      "silhouette")
    k_min: int = setting(2, doc="smallest k tried when k is null (>= 2)")
    k_max: int = setting(8, doc="largest k tried when k is null (<= 15, at most the sampled customers - 1)")
    selection_sample: int = setting(20_000, doc="at most this many customers (a seeded sample) measure each "
                                                "k (>= 100)")
    silhouette_tolerance: float = setting(0.01, doc="[0, 1): the smallest k with silhouette >= best - this "
                                                    "is taken")
    seed: int = setting(42, doc="seed of the selection sample; the K-Means fits use seed, seed + 1, ...")
    max_iter: int = setting(100, doc="K-Means iteration limit per fit (maxIter, >= 1)")
    tol: float = setting(1e-4, doc="K-Means convergence: stop when the squared moves of the centres in a pass "
                                   "sum to at most this (standardised units, as scikit-learn's tol); the k "
                                   "search passes it to MLlib as its tol (>= 0)")
    init_steps: int = setting(2, doc="steps of the k-means|| initialisation (initSteps, >= 1)")
    n_init: int = setting(3, doc="K-Means fits per k (seeds seed, seed + 1, ...); the lowest cost is "
                                 "kept (>= 1)")
    model_uri: str | None = setting(None, doc="score mode: MLflow model URI; null = the latest finished fit "
                                              "run's model")

    def __post_init__(self) -> None:
        if self.reference_date is not None:
            try:
                dt.date.fromisoformat(self.reference_date)
            except ValueError as exc:
                raise ValueError(f"segments.reference_date must be YYYY-MM-DD, got {self.reference_date!r}") from exc
        unknown = [f for f in self.features if f not in ALL_FEATURES]
        if unknown or not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"segments.features must be distinct names from {', '.join(ALL_FEATURES)}; "
                             f"got {self.features}")
        if not 2 <= self.k_min <= self.k_max <= MAX_K:
            raise ValueError(f"segments.k_min/k_max must satisfy 2 <= k_min <= k_max <= {MAX_K}, "
                             f"got {self.k_min}..{self.k_max}")
        if self.k is not None and not 2 <= self.k <= MAX_K:
            raise ValueError(f"segments.k must be in 2..{MAX_K} or null, got {self.k}")
        if self.selection_sample < 100:
            raise ValueError(f"segments.selection_sample must be >= 100, got {self.selection_sample}")
        if not 0.0 <= self.silhouette_tolerance < 1.0:
            raise ValueError(f"segments.silhouette_tolerance must be in [0, 1), got {self.silhouette_tolerance}")
        for name in ("max_iter", "init_steps", "n_init"):
            if getattr(self, name) < 1:
                raise ValueError(f"segments.{name} must be >= 1, got {getattr(self, name)}")
        if self.tol < 0:
            raise ValueError(f"segments.tol must be >= 0, got {self.tol}")
