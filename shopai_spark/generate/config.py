"""Configuration of the synthetic shop generator (``jobs/generate_data.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerateConfig:
    """Size and shape of the synthetic shop.

    ``users`` customers, ``skus`` products in ``categories`` categories and ``brands`` brands, order
    history over ``days`` days ending on ``end_date``, about ``events_per_user`` behaviour events per
    customer. ``dirt_share`` (0..1) is the share of raw rows made dirty (nulls, bad timestamps,
    negative quantities, unknown event types, duplicates); 0 writes clean files. Same ``seed`` →
    same files. ``raw_dir`` receives ``events/`` (JSON lines), ``orders/`` (CSV in an Online-Retail
    layout: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country)
    and ``products/`` (CSV); ground truth goes to bronze Delta tables ``truth_*``.
    """

    users: int = 2_000
    skus: int = 300
    categories: int = 12
    brands: int = 40
    days: int = 365
    end_date: str = "2024-06-30"
    events_per_user: int = 40
    bundles: int = 8
    bundle_rate: float = 0.25
    dirt_share: float = 0.0
    seed: int = 42
    raw_dir: str = "data/raw"
    files_per_table: int = 2

    def __post_init__(self) -> None:
        for name in ("users", "skus", "categories", "brands", "days", "events_per_user", "files_per_table"):
            if getattr(self, name) < 1:
                raise ValueError(f"generate.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dirt_share <= 0.5:
            raise ValueError(f"generate.dirt_share must be in [0, 0.5], got {self.dirt_share}")
        if not 0.0 <= self.bundle_rate <= 1.0:
            raise ValueError(f"generate.bundle_rate must be in [0, 1], got {self.bundle_rate}")
