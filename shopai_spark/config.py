"""Typed configuration: dataclasses loaded from ``conf/*.yaml`` plus ``--set key=value`` overrides.

Every section is a frozen dataclass. :func:`read_config` + :func:`build` validate the whole tree at start-up: an
unknown key, a value of the wrong type or a missing required value raises :class:`ConfigError` whose
message names the dotted key (``als.rank``), so a typo never reaches Spark.

This module holds the loader and the sections every job shares (:class:`PlatformConfig`: ``spark``,
``lakehouse``, ``tracking``); it knows no domain. Each domain's section (``ingest``, ``als``, ...)
lives next to its code, and :mod:`shopai_spark.app` composes them into the application's config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from shopai_spark import secrets


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, doc: str) -> Any:
    """A config dataclass field whose meaning ``doc`` is kept in ``metadata["doc"]`` (the configuration
    reference in README.md is generated from it).

    Takes the field's ``default`` or a ``factory`` building it (a callable, for mutable defaults and
    sections), not both; neither makes the key required. Returns the :func:`dataclasses.field`.
    """
    if default is not dataclasses.MISSING and factory is not dataclasses.MISSING:
        raise TypeError("setting() takes a default or a factory, not both")
    return field(default=default, default_factory=factory, metadata={"doc": doc})


@dataclass(frozen=True)
class SparkConfig:
    """How to get a SparkSession.

    An active session (Databricks, notebook) is always reused. ``remote`` (like ``sc://host:15002``)
    set: a Spark Connect session on that server, which brings Delta. ``master`` (like ``local[2]``)
    set and ``remote`` null: a local session with Delta jars resolved by pip/Ivy; both null: let
    ``spark-submit --master`` decide. ``app_name`` names the application.
    ``shuffle_partitions`` sets spark.sql.shuffle.partitions. ``ui_enabled`` turns the local Spark UI
    on or off. ``driver_memory`` is the local driver's heap (all of Spark in local mode).
    ``checkpoint_dir`` becomes ``spark.checkpoint.dir`` of a session this project starts (ALS and the
    lineage cuts of :mod:`~shopai_spark.lineage` write there); a reused or Connect session keeps the
    server's own setting.
    ``log_level`` is Spark's log level (``spark.log.level``). ``conf`` holds any extra Spark settings.
    """

    remote: str | None = setting(None, doc="Spark Connect server (like ``sc://host:15002``); set: a Spark "
                                           "Connect session on that server, which brings Delta (an active "
                                           "session, Databricks or notebook, is always reused)")
    master: str | None = setting("local[2]", doc="master (like ``local[2]``) of a local session with Delta "
                                                 "jars resolved by pip/Ivy, when ``remote`` is null; both "
                                                 "null: let ``spark-submit --master`` decide")
    app_name: str = setting("shopai_spark", doc="name of the Spark application")
    shuffle_partitions: int = setting(8, doc="sets spark.sql.shuffle.partitions")
    ui_enabled: bool = setting(True, doc="turns the local Spark UI on or off")
    driver_memory: str = setting("4g", doc="the local driver's heap (all of Spark in local mode)")
    checkpoint_dir: str | None = setting(
        "checkpoints", doc="becomes ``spark.checkpoint.dir`` of a session this project starts (ALS and the "
                           "recommenders' lineage cuts write there); a reused or Connect session keeps the "
                           "server's own setting")
    log_level: str = setting("WARN", doc="Spark's log level (``spark.log.level``)")
    conf: dict[str, str] = setting(factory=dict, doc="any extra Spark settings (name → value)")

    def __post_init__(self) -> None:
        if self.shuffle_partitions < 1:
            raise ValueError(f"shuffle_partitions must be >= 1, got {self.shuffle_partitions}")


@dataclass(frozen=True)
class LakehouseConfig:
    """Where Delta tables live.

    ``root`` set: table ``<layer>/<name>`` is the path ``<root>/<layer>/<name>`` (local folder or URI).
    ``catalog`` set instead: table is ``<catalog>.<schema_prefix><layer>.<name>`` (Unity Catalog).
    """

    root: str | None = setting("lakehouse", doc="set: table ``<layer>/<name>`` is the path "
                                                "``<root>/<layer>/<name>`` (local folder or URI)")
    catalog: str | None = setting(None, doc="set instead of root: table ``<layer>/<name>`` is "
                                            "``<catalog>.<schema_prefix><layer>.<name>`` (Unity Catalog)")
    schema_prefix: str = setting("", doc="catalog mode: schema name prefix (`dev_` → dev_bronze, dev_silver, "
                                         "dev_gold, dev_ops)")
    abandoned_run_hours: float = setting(
        12.0, doc="a run whose driver ran on another machine and that has not ended this many hours after it "
                  "started is treated as killed: the job's next run restores its outputs (runs on this "
                  "machine are checked by their process id)")

    skip_unchanged_runs: bool = setting(
        True, doc="a job whose input tables (at the versions it would read), settings and outputs are as "
                  "its last committed run left them writes nothing and says so (false: recompute anyway)")

    def __post_init__(self) -> None:
        if not self.abandoned_run_hours > 0:
            raise ValueError(f"abandoned_run_hours must be > 0, got {self.abandoned_run_hours}")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow.

    ``tracking_uri``: the tracking store (``sqlite:///mlflow.db``, ``http://…``, ``databricks``).
    ``registry_uri``: the model registry (null = the tracking store). ``artifact_location``: where a
    new experiment stores artifacts (a local folder or URI; null = the server's default).
    ``experiment``: the experiment name. ``enabled``: false runs jobs without MLflow.
    """

    tracking_uri: str = setting(
        "sqlite:///mlflow.db", doc="the MLflow tracking store (``sqlite:///mlflow.db``, ``http://…``, "
                                   "``databricks``)")
    registry_uri: str | None = setting(None, doc="the model registry; null = the tracking store")
    artifact_location: str | None = setting(
        "mlruns", doc="where a new experiment stores artifacts (a local folder or URI); null = the server's "
                      "default")
    experiment: str = setting("shopai_spark", doc="the MLflow experiment name")
    enabled: bool = setting(True, doc="false runs jobs without MLflow")


@dataclass(frozen=True)
class PlatformConfig:
    """The settings every job shares: the session, the lakehouse and MLflow."""

    spark: SparkConfig = setting(factory=SparkConfig, doc="the session: how to get a SparkSession")
    lakehouse: LakehouseConfig = setting(
        factory=LakehouseConfig, doc="the lakehouse: where Delta tables live")
    tracking: TrackingConfig = setting(
        factory=TrackingConfig, doc="MLflow: tracking store, model registry and experiment")


# ----------------------------------------------------------------------------------------------
# loading


def read_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a YAML file (None → empty: built-in defaults) with ``key=value`` overrides
    applied; :func:`build` turns it into typed config.

    Override values are parsed as YAML scalars/flow collections (``als.rank=16``,
    ``als.grid={rank: [8, 16]}``, ``spark.master=null``). ``${NAME}`` in a value is the environment
    variable NAME (:mod:`~shopai_spark.secrets`). Raises ConfigError naming the bad key.
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
    try:
        return secrets.from_environment(data)
    except secrets.UnsetVariableError as exc:
        raise ConfigError(str(exc)) from None


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
        if not math.isfinite(value):      # NaN would pass every ">= 0" check after this
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
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
