"""Configuration of the recommendations job (``jobs/als.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shopai_spark.config import setting

GRID_KEYS = ("rank", "reg_param", "alpha", "max_iter")
RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate", "coverage")
ERROR_METRICS = ("rmse", "mae")
INT_RANGE = 2**31 - 1


@dataclass(frozen=True)
class AlsConfig:
    """ALS recommendations: input, feedback mode, split, model/grid, evaluation and outputs.

    Input (``source``): ``events`` (silver.events weighted by ``event_weights``), ``orders``
    (silver.order_items of customers' orders, net of silver.returns, weighted by ``order_weight`` x
    ``order_quantity_weight``), ``events+orders`` (both, summed per user and item), all three decayed
    with ``half_life_days``; ``ratings_table`` (a Delta table ``ratings_table`` = ``layer.name`` with
    user_id, item_id, rating[, ts]) or ``udata`` (a MovieLens ``u.data`` file at ``ratings_path``).
    ``test_path`` (u.data format) gives a fixed test set instead of ``split``. Guest orders (null
    user_id) are left out and counted.

    ``mode``: ``implicit`` (confidence weights, ALS implicitPrefs) or ``explicit`` (ratings). A
    ratings source answers two questions with two settings: what becomes training feedback in
    implicit mode (``feedback_min_rating``, weighted by ``feedback_weight``) and which held-out
    ratings count as relevant in the ranking metrics (``relevant_min_rating``, both modes). Every
    rated item, whatever its rating, is excluded from that user's recommendations.

    ``serving``: ``retrain`` runs all of the above; ``fold_in`` serves only the customers the last
    retrain's lists do not cover, folded into its model (:mod:`~shopai_spark.recommend.serving`).

    ``grid``: lists of values per key of GRID_KEYS (missing key → the single value above); every
    combination is a trial (MLflow child run) scored on a validation split carved out of the
    training rows; the best on ``tune_metric`` there wins and is scored once on the test rows.
    """

    mode: Literal["implicit", "explicit"] = setting(
        "implicit", doc="``implicit`` (confidence weights, ALS implicitPrefs) or ``explicit`` (ratings)")
    source: Literal["events", "orders", "events+orders", "ratings_table", "udata"] = setting(
        "events", doc="events (silver.events), orders (silver.order_items of customers' orders, net of "
                      "returns), events+orders (both, summed per user and sku), ratings_table or udata (a "
                      "MovieLens u.data file)")
    ratings_table: str = setting("silver.ratings", doc="source=ratings_table: Delta table `layer.name` with "
                                                       "user_id, item_id, rating[, ts]")
    ratings_path: str | None = setting(None, doc="source=udata (required there): path of the u.data file")
    test_path: str | None = setting(None, doc="ratings sources: a u.data file used as the test set; "
                                              "null = `split`")
    feedback_min_rating: float | None = setting(
        None, doc="ratings sources, implicit mode: ratings >= this become training feedback (the others "
                  "are still excluded from the user's recommendations); null = every rating")
    feedback_weight: Literal["binary", "rating"] = setting(
        "binary", doc="ratings sources, implicit mode: weight of a training rating: binary (1) or rating "
                      "(its value)")
    relevant_min_rating: float = setting(
        4.0, doc="ratings sources: a held-out rating >= this is a relevant item of the ranking metrics (both "
                 "modes); shop sources: every held-out interaction is relevant")
    event_weights: dict[str, float] = setting(
        factory=lambda: {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
        doc="events, events+orders: weight per event_type (>= 0, one > 0), summed per user and item; other "
            "types are quarantined")
    order_weight: float = setting(5.0, doc="orders, events+orders: weight of one bought unit (> 0; on the "
                                           "scale of event_weights), times order_quantity_weight and the "
                                           "decay")
    order_quantity_weight: Literal["log", "linear", "binary"] = setting(
        "log", doc="orders, events+orders: net units bought per user and sku → weight: log (1 + ln units: "
                   "480 units weigh 7.2, not 480), linear (units) or binary (1)")
    subtract_returns: bool = setting(True, doc="orders, events+orders: subtract silver.returns per user and "
                                               "sku (net units <= 0: the pair is dropped)")
    half_life_days: float | None = setting(None, doc="events and orders: weights x 0.5 ** (age_days / this), "
                                                     "age of each event / of the latest order of the sku; "
                                                     "null = no decay")
    reference_ts: str | None = setting(None, doc='decay: "now" the age is measured from (ISO); null = the '
                                                 "latest event or order of the source")
    # split
    split: Literal["time", "leave_last_k", "random"] = setting(
        "leave_last_k", doc="time (by ts), leave_last_k (each user's last leave_k) or random (hash)")
    test_fraction: float = setting(0.2, doc="(0, 1): test share of the random split and of the time split "
                                            "without cut-off")
    split_cutoff: str | None = setting(None, doc="time split: ts >= this (ISO) is test; null = from "
                                                 "test_fraction")
    leave_k: int = setting(1, doc="leave_last_k: latest interactions held out per user (users "
                                  "with <= leave_k: all train)")
    # model
    rank: int = setting(10, doc="latent factors per user and item (>= 1)")
    reg_param: float = setting(0.15, doc="regularisation (ALS regParam, >= 0)")
    alpha: float = setting(10.0, doc="implicit mode: confidence scale of the weights (ALS alpha, >= 0)")
    max_iter: int = setting(15, doc="ALS iterations (maxIter, >= 1)")
    checkpoint_interval: int = setting(5, doc="checkpoint the lineage every N iterations (into "
                                              "spark.checkpoint_dir)")
    num_blocks: int = setting(4, doc="ALS numUserBlocks and numItemBlocks (>= 1)")
    grid: dict[str, list[float]] = setting(
        factory=dict, doc="values to try for rank, reg_param, alpha, max_iter; every combination is a trial "
                          "scored on a validation split of the training rows")
    tune_metric: str | None = setting(None, doc="picks the best trial on validation; implicit: precision_at_k, "
                                                "recall_at_k, ndcg_at_k, map_at_k, hit_rate, coverage; "
                                                "explicit: rmse, mae; null: ndcg_at_k/rmse")
    refit_full: bool = setting(True, doc="refit the chosen parameters on all interactions; false = keep "
                                         "their fit on the training rows (the one scored on test)")
    # evaluation and outputs
    k: int = setting(10, doc="cut-off of the ranking metrics (precision/recall/NDCG/MAP@k, hit rate, "
                             "coverage)")
    top_n: int = setting(10, doc="recommendations per user in gold.user_recommendations")
    similar_m: int = setting(10, doc="similar items per item in gold.similar_items")
    exclude: Literal["purchased", "interacted", "none"] = setting(
        "purchased", doc="never recommended to a user: purchased (a purchase event, an order line of "
                         "silver.order_items even if returned, or rated), interacted (also any event) or "
                         "none")
    item_cf_neighbours: int = setting(50, doc="item-based CF: most similar items kept per item (>= 1)")
    item_cf_shrinkage: float = setting(10.0, doc="item-based CF: cosine x co / (co + this), co = users of both "
                                                 "items (>= 0; 0 = plain cosine)")
    item_cf_max_user_items: int = setting(500, doc="item-based CF: items per user in the co-occurrence count (a "
                                                   "fixed hash sample above it; bounds a heavy user's cost)")
    serving: Literal["retrain", "fold_in"] = setting(
        "retrain", doc="retrain (fit, evaluate and serve every user) or fold_in (no refit: fold the customers "
                       "who arrived since the last retrain into its model and add their lists, flagged "
                       "folded_in; everyone else's rows stay as they are)")
    serve_from: list[str] = setting(
        factory=lambda: ["als", "item_cf"],
        doc="recommenders that may be served (als, item_cf): the best of them and popularity on validation "
            "wins, a tie going to the simpler one; all three are scored either way")
    similar_items_from: Literal["factors", "item_cf"] = setting(
        "factors", doc="gold.similar_items from the ranking model's factors (cosine) or from item-based CF "
                       "(co-occurrence)")
    block_size: int = setting(1024, doc="users (or items) scored per numpy matrix product in the fast top-N")
    registered_model: str | None = setting(
        "shopai_als", doc="MLflow registered model name; null = log, don't register")
    seed: int = setting(42, doc="seed of ALS and of the random split")

    def __post_init__(self) -> None:
        for name, value in self.event_weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"als.event_weights.{name} must be a finite number >= 0, got {value}")
        if not any(v > 0 for v in self.event_weights.values()):
            raise ValueError("als.event_weights needs at least one weight > 0")
        if not math.isfinite(self.order_weight) or self.order_weight <= 0:
            raise ValueError(f"als.order_weight must be a finite number > 0, got {self.order_weight}")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ValueError(f"als.half_life_days must be > 0 or null, got {self.half_life_days}")
        if self.source == "udata" and not self.ratings_path:
            raise ValueError("als.ratings_path must be set when als.source is 'udata'")
        if len(self.ratings_table.split(".")) != 2:
            raise ValueError(f"als.ratings_table must look like layer.name, got {self.ratings_table!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"als.test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("leave_k", "rank", "max_iter", "checkpoint_interval", "num_blocks", "k", "top_n", "similar_m",
                     "block_size", "item_cf_neighbours", "item_cf_max_user_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"als.{name} must be >= 1, got {getattr(self, name)}")
        if self.reg_param < 0 or self.alpha < 0:
            raise ValueError("als.reg_param and als.alpha must be >= 0")
        unknown = sorted(set(self.serve_from) - {"als", "item_cf"})
        if unknown:
            raise ValueError(f"als.serve_from: {unknown[0]!r} is not a recommender; use als and/or item_cf")
        if not self.item_cf_shrinkage >= 0:
            raise ValueError(f"als.item_cf_shrinkage must be >= 0, got {self.item_cf_shrinkage}")
        unknown = sorted(set(self.grid) - set(GRID_KEYS))
        if unknown:
            raise ValueError(f"als.grid.{unknown[0]} is not a grid key; use {', '.join(GRID_KEYS)}")
        for name, values in self.grid.items():
            if not values:
                raise ValueError(f"als.grid.{name} must be a non-empty list")
            if name in ("rank", "max_iter") and any(v < 1 or v != int(v) for v in values):
                raise ValueError(f"als.grid.{name} must hold integers >= 1, got {values}")
            if any(v < 0 for v in values):
                raise ValueError(f"als.grid.{name} must hold values >= 0, got {values}")
        allowed = ERROR_METRICS if self.mode == "explicit" else RANKING_METRICS
        if self.tune_metric is not None and self.tune_metric not in allowed:
            raise ValueError(f"als.tune_metric must be one of {', '.join(allowed)} in {self.mode} mode, "
                             f"got {self.tune_metric!r}")

    @property
    def selection_metric(self) -> str:
        """Metric the grid selects on: ``tune_metric`` or rmse (explicit) / ndcg_at_k (implicit)."""
        return self.tune_metric or ("rmse" if self.mode == "explicit" else "ndcg_at_k")

    @property
    def ranking_metric(self) -> str:
        """Metric a model must not lose on to popularity (validation) to be served: ``tune_metric``
        when it is a ranking metric, else ndcg_at_k."""
        return self.tune_metric if self.tune_metric in RANKING_METRICS else "ndcg_at_k"

    @property
    def minimize(self) -> bool:
        return self.selection_metric in ERROR_METRICS
