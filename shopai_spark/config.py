"""Typed configuration: dataclasses loaded from ``conf/*.yaml`` plus ``--set key=value`` overrides.

Every section is a frozen dataclass. :func:`load_config` validates the whole tree at start-up: an
unknown key, a value of the wrong type or a missing required value raises :class:`ConfigError` whose
message names the dotted key (``als.rank``), so a typo never reaches Spark.

Domain sections (``als``, ``fpgrowth``, ``segments``, ``demand``) live next to their code and are
composed here into :class:`AppConfig`.
"""

from __future__ import annotations

import codecs
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml

from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.demand.config import DemandConfig
from shopai_spark.generate.config import GenerateConfig
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.segment.config import SegmentsConfig


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class SparkConfig:
    """How to get a SparkSession.

    An active session (Databricks, notebook) is always reused. ``remote`` (like ``sc://host:15002``)
    set: a Spark Connect session on that server, which brings Delta. ``master`` (like ``local[2]``)
    set and ``remote`` null: a local session with Delta jars resolved by pip/Ivy; both null: let
    ``spark-submit --master`` decide. ``app_name`` names the application.
    ``shuffle_partitions`` sets spark.sql.shuffle.partitions. ``ui_enabled`` turns the local Spark UI
    on or off. ``driver_memory`` is the local driver's heap (all of Spark in local mode).
    ``checkpoint_dir`` becomes ``spark.checkpoint.dir`` of a session this project starts (ALS
    truncates its lineage there); a reused or Connect session keeps the server's own setting.
    ``log_level`` is Spark's log level (``spark.log.level``). ``conf`` holds any extra Spark settings.
    """

    remote: str | None = None
    master: str | None = "local[2]"
    app_name: str = "shopai_spark"
    shuffle_partitions: int = 8
    ui_enabled: bool = True
    driver_memory: str = "4g"
    checkpoint_dir: str | None = "checkpoints"
    log_level: str = "WARN"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LakehouseConfig:
    """Where Delta tables live.

    ``root`` set: table ``<layer>/<name>`` is the path ``<root>/<layer>/<name>`` (local folder or URI).
    ``catalog`` set instead: table is ``<catalog>.<schema_prefix><layer>.<name>`` (Unity Catalog).
    """

    root: str | None = "lakehouse"
    catalog: str | None = None
    schema_prefix: str = ""  # catalog mode: schema name prefix (`dev_` → dev_bronze, dev_silver, dev_gold)


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow.

    ``tracking_uri``: the tracking store (``sqlite:///mlflow.db``, ``http://…``, ``databricks``).
    ``registry_uri``: the model registry (null = the tracking store). ``artifact_location``: where a
    new experiment stores artifacts (a local folder or URI; null = the server's default).
    ``experiment``: the experiment name. ``enabled``: false runs jobs without MLflow.
    """

    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    artifact_location: str | None = "mlruns"
    experiment: str = "shopai_spark"
    enabled: bool = True


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

    path: str  # file, folder or glob of the export (required)
    format: Literal["csv", "json", "xlsx", "parquet"] = "csv"  # csv (header row), json (JSON lines), xlsx, parquet
    columns: dict[str, str] = field(default_factory=dict)  # canonical name → export column name; canonical
                                                           # names not listed are read under their own name
    timestamp_format: str | None = None  # Spark datetime pattern of event_ts / order_ts; ISO-8601 also accepted
    csv_delimiter: str = ","  # field separator (csv only)
    quote: str = '"'  # quote character (csv only)
    escape: str | None = None  # escape character inside quotes (csv); null = doubled quotes (RFC 4180)
    multiline: bool = True  # quoted csv fields may span lines
    encoding: str = "UTF-8"  # character encoding (csv and json)
    unwrap_quoted_lines: bool = True  # a csv line wrapped whole in quotes is read as the line inside
    sheet: str | None = None  # xlsx: worksheet name; null = the first sheet
    normalize_ids: list[str] = field(default_factory=list)  # canonical id columns: 17850.0 → 17850

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

    events: SourceConfig | None = field(default_factory=lambda: SourceConfig(path="data/raw/events", format="json"))
    orders: SourceConfig | None = field(default_factory=lambda: SourceConfig(path="data/raw/orders", format="csv"))
    products: SourceConfig | None = field(default_factory=lambda: SourceConfig(path="data/raw/products", format="csv"))
    cancellation_prefix: str = "C"
    order_ts_tolerance_minutes: float = 5.0  # lines of one order may differ in time by this much
    min_ts: str = "2000-01-01"
    max_future_days: int = 1

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


@dataclass(frozen=True)
class AppConfig:
    """The whole configuration of every job."""

    spark: SparkConfig = field(default_factory=SparkConfig)
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    fpgrowth: FpGrowthConfig = field(default_factory=FpGrowthConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    demand: DemandConfig = field(default_factory=DemandConfig)


# ----------------------------------------------------------------------------------------------
# loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> AppConfig:
    """Read a YAML file (None → built-in defaults), apply ``key=value`` overrides, validate.

    Override values are parsed as YAML scalars/flow collections (``als.rank=16``,
    ``als.ranks=[8,16]``, ``spark.master=null``). Raises ConfigError naming the bad key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. als.rank=32)")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return build(AppConfig, data)


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' (known keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{key}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ checks
        raise ConfigError(f"{prefix or '<root>'}: {exc}") from exc


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if value is None:
        raise ConfigError(f"{key}: must not be null")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = args or (Any, Any)
        return {_coerce(k_tp, k, key): _coerce(v_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool | dict | list):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported config type {tp}")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted key → string value for every leaf of a config dataclass (for MLflow params)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        elif isinstance(value, dict) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            for k, v in value.items():
                out.update(flatten(v, f"{key}.{k}."))
        else:
            out[key] = str(value)
    return out
