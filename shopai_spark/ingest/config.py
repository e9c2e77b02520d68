"""Configuration of the ingest job: the raw sources and the validation knobs (``ingest:`` section)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import date
from typing import Literal

from shopai_spark.config import setting
from shopai_spark.pseudonyms import key_from_environment


@dataclass(frozen=True)
class SourceConfig:
    """One raw source of the ingest job.

    ``path``: file, folder or glob. ``format``: csv, json (JSON lines), xlsx (Excel; each file is
    parsed whole by one task, so a file is bounded by Excel's 1,048,576 rows) or parquet. ``columns``
    maps canonical name → the export's column name; canonical names not listed are read under their
    own name, and a column that is nullable in silver may be absent. ``timestamp_format``: a Spark
    datetime pattern (ISO-8601 is always accepted too). CSV: ``csv_delimiter``, ``quote``,
    ``escape`` (null = a quote inside a quoted field is doubled, RFC 4180), ``multiline`` (quoted
    fields may span lines), ``encoding`` (a UTF-8 byte-order mark is skipped) and
    ``unwrap_quoted_lines`` (a whole line wrapped in quotes is read as the line inside). ``sheet``:
    the Excel worksheet (null = the first). ``normalize_ids``: canonical id columns whose integral
    numbers lose a zero fraction (``17850.0`` → ``17850``).
    """

    path: str = setting(doc="file, folder or glob of the export (required)")
    format: Literal["csv", "json", "xlsx", "parquet"] = setting(
        "csv", doc="csv (header row), json (JSON lines), xlsx, parquet")
    columns: dict[str, str] = setting(factory=dict, doc="canonical name → export column name; canonical "
                                                        "names not listed are read under their own name")
    timestamp_format: str | None = setting(None, doc="Spark datetime pattern of event_ts / order_ts; "
                                                     "ISO-8601 also accepted")
    csv_delimiter: str = setting(",", doc="field separator (csv only)")
    quote: str = setting('"', doc="quote character (csv only)")
    escape: str | None = setting(None, doc="escape character inside quotes (csv); null = doubled quotes "
                                           "(RFC 4180)")
    multiline: bool = setting(True, doc="quoted csv fields may span lines")
    encoding: str = setting("UTF-8", doc="character encoding (csv and json)")
    unwrap_quoted_lines: bool = setting(True, doc="a csv line wrapped whole in quotes is read as the line "
                                                  "inside")
    sheet: str | None = setting(None, doc="xlsx: worksheet name; null = the first sheet")
    normalize_ids: list[str] = setting(factory=list, doc="canonical id columns: 17850.0 → 17850")

    def __post_init__(self) -> None:
        for name in ("csv_delimiter", "quote"):
            if len(getattr(self, name)) != 1:
                raise ValueError(f"{name} must be one character, got {getattr(self, name)!r}")
        if self.escape is not None and len(self.escape) != 1:
            raise ValueError(f"escape must be one character or null, got {self.escape!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding {self.encoding!r} is not a known character encoding") from None


@dataclass(frozen=True)
class IngestConfig:
    """Raw sources and validation knobs of the ingest job (rules: docs/ingest.md).

    ``events``, ``orders``, ``products``: the raw sources; a source set to null is skipped (a shop
    with only an order export sets events and products to null; products are then derived from the
    order lines). ``cancellation_prefix``: an order line whose ``order_id`` starts with it is a
    cancellation/return and, with a negative quantity, goes to silver.returns (quantity made
    positive), never into silver.order_items. ``order_ts_tolerance_minutes``: the lines of one order
    may differ in timestamp by up to this much (the order takes the earliest); a wider spread is
    quarantined. ``min_ts``: earlier timestamps are quarantined. ``max_future_days``: timestamps more
    than this many days after now are quarantined.
    """

    events: SourceConfig | None = setting(
        factory=lambda: SourceConfig(path="data/raw/events", format="json"),
        doc="raw source of the behaviour events; null = skipped")
    orders: SourceConfig | None = setting(
        factory=lambda: SourceConfig(path="data/raw/orders", format="csv"),
        doc="raw source of the order lines; null = skipped")
    products: SourceConfig | None = setting(
        factory=lambda: SourceConfig(path="data/raw/products", format="csv"),
        doc="raw source of the products; null = skipped (products are then derived from the order lines)")
    cancellation_prefix: str = setting("C", doc="an order line whose ``order_id`` starts with it is a "
                                                "cancellation/return and, with a negative quantity, goes to "
                                                "silver.returns (quantity made positive), never into "
                                                "silver.order_items")
    order_ts_tolerance_minutes: float = setting(5.0, doc="lines of one order may differ in time by this much")
    min_ts: str = setting("2000-01-01", doc="earlier timestamps are quarantined (YYYY-MM-DD)")
    max_future_days: int = setting(1, doc="timestamps more than this many days after now are "
                                          "quarantined (>= 0)")
    immutable_order_fields: list[str] = setting(
        factory=lambda: ["user_id", "country"],
        doc="header fields of a stored order (user_id, country) that a later delivery may not change: a "
            "line of a stored order with another value is quarantined as conflicting_redelivery, the stored "
            "order kept")
    allow_updates: bool = setting(False, doc="an explicit correction run: re-delivered orders replace the "
                                             "stored values of immutable_order_fields instead of being "
                                             "quarantined")
    pseudonymize_key_env: str | None = setting(
        None, doc="name of an environment variable holding a secret key (>= 16 characters); set: every "
                  "customer id is replaced at ingest by its keyed pseudonym (``P-`` + 32 hex digits of "
                  "HMAC-SHA-256), the same for the same customer in every run, also inside quarantined raw "
                  "records; the key is never read from the config file nor logged")

    def __post_init__(self) -> None:
        if self.events is None and self.orders is None and self.products is None:
            raise ValueError("ingest needs at least one of events, orders, products")
        if not self.order_ts_tolerance_minutes >= 0:
            raise ValueError(f"order_ts_tolerance_minutes must be >= 0, got {self.order_ts_tolerance_minutes}")
        try:
            date.fromisoformat(self.min_ts)
        except ValueError:
            raise ValueError(f"min_ts must be a date YYYY-MM-DD, got {self.min_ts!r}") from None
        if self.max_future_days < 0:
            raise ValueError(f"max_future_days must be >= 0, got {self.max_future_days}")
        unknown = sorted(set(self.immutable_order_fields) - {"user_id", "country"})
        if unknown:
            raise ValueError(f"immutable_order_fields may hold user_id and country, got {unknown}")
        if self.pseudonymize_key_env is not None:
            key_from_environment(self.pseudonymize_key_env)      # fails now, before Spark starts
