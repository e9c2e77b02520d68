"""Configuration of the synthetic shop generator (``jobs/generate_data.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shopai_spark.config import setting


@dataclass(frozen=True)
class GenerateConfig:
    """Size and shape of the synthetic shop.

    ``users`` customers, ``skus`` products in ``categories`` categories and ``brands`` brands, order
    history over ``days`` days ending on ``end_date``, about ``events_per_user`` behaviour events per
    customer. ``dirt_share`` (0..0.5) is the share of raw rows made dirty (nulls, bad timestamps,
    negative quantities, unknown event types, duplicates); 0 writes clean files. Same ``seed`` →
    same files. ``raw_dir`` receives ``events/`` (JSON lines), ``orders/`` (CSV in an Online-Retail
    layout: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country)
    and ``products/`` (CSV); ground truth goes to bronze Delta tables ``truth_*``.

    ``bundles`` planted co-purchase bundles of 2-3 SKUs; an order contains a whole bundle with
    probability ``bundle_rate``. Promotions multiply a SKU's demand by ``promo_lift``. A share
    ``cancel_rate`` of orders gets a cancellation invoice (``C<InvoiceNo>``, negative quantities) a
    few days later. ``files_per_table`` is the number of files written per raw table.
    """

    users: int = setting(2_000, doc="number of customers (>= 1)")
    skus: int = setting(300, doc="number of products (>= 1)")
    categories: int = setting(12, doc="number of product categories, 1..skus (SKU index i is in category "
                                      "i % categories)")
    brands: int = setting(40, doc="number of brands; each SKU gets one at random (>= 1)")
    days: int = setting(365, doc="length of the order history in days, ending on end_date (>= 1)")
    end_date: str = setting("2024-06-30", doc="last day of the order history (YYYY-MM-DD)")
    events_per_user: int = setting(40, doc="mean behaviour events per customer: order "
                                           "funnels + browsing (>= 1)")
    bundles: int = setting(8, doc="planted co-purchase bundles of 2-3 SKUs, 0..skus / 3 (0: none)")
    bundle_rate: float = setting(0.25, doc="probability (0..1) that an order also contains one whole bundle")
    dirt_share: float = setting(0.0, doc="share (0..0.5) of raw rows made dirty (nulls, bad timestamps, "
                                         "negative quantities, unknown event types, duplicates); 0 writes "
                                         "clean files")
    seed: int = setting(42, doc="random seed: same seed → same files")
    raw_dir: str = setting("data/raw", doc="folder receiving ``events/`` (JSON lines), ``orders/`` (CSV in "
                                           "an Online-Retail layout: InvoiceNo, StockCode, Description, "
                                           "Quantity, InvoiceDate, UnitPrice, CustomerID, Country) and "
                                           "``products/`` (CSV); ground truth goes to bronze Delta tables "
                                           "``truth_*``")
    files_per_table: int = setting(2, doc="number of files written per raw table (>= 1)")
    promo_lift: float = setting(2.0, doc="promotions multiply a SKU's demand by this (>= 1)")
    cancel_rate: float = setting(0.02, doc="share (0..0.2) of orders that get a cancellation invoice "
                                           "(``C<InvoiceNo>``, negative quantities) a few days later")

    def __post_init__(self) -> None:
        for name in ("users", "skus", "categories", "brands", "days", "events_per_user", "files_per_table"):
            if getattr(self, name) < 1:
                raise ValueError(f"generate.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dirt_share <= 0.5:
            raise ValueError(f"generate.dirt_share must be in [0, 0.5], got {self.dirt_share}")
        if not 0.0 <= self.bundle_rate <= 1.0:
            raise ValueError(f"generate.bundle_rate must be in [0, 1], got {self.bundle_rate}")
        if self.categories > self.skus:
            raise ValueError(f"generate.categories ({self.categories}) must be <= generate.skus ({self.skus})")
        if not 0 <= 3 * self.bundles <= self.skus:
            raise ValueError(f"generate.bundles must be in [0, skus / 3] (bundles have up to 3 distinct SKUs), "
                             f"got {self.bundles} for {self.skus} skus")
        if self.promo_lift < 1.0:
            raise ValueError(f"generate.promo_lift must be >= 1, got {self.promo_lift}")
        if not 0.0 <= self.cancel_rate <= 0.2:
            raise ValueError(f"generate.cancel_rate must be in [0, 0.2], got {self.cancel_rate}")
        try:
            dt.date.fromisoformat(self.end_date)
        except ValueError as exc:
            raise ValueError(f"generate.end_date must be YYYY-MM-DD, got {self.end_date!r}") from exc
