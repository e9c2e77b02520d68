"""Demand features job: silver orders/items/events → gold.sku_demand_features (+ forecast, inventory).

Steps: clean order lines (bad lines counted, see :mod:`~shopai_spark.demand.panel`), daily sales and
activity, SKU lives, calendar-complete panel, features and targets; then (``demand.forecast``) the
rolling-origin backtest of the per-SKU statsforecast models, the global GBT and the baselines (a
model per demand class, conformal quantiles, simulated service level: see
:mod:`~shopai_spark.demand.evaluation`) and gold.inventory_signals. Everything is computed before anything is written; the two tables change as one unit (the run
ledger, :mod:`shopai_spark.runs`).

``demand.mode = full`` rewrites gold.sku_demand_features (partitioned by ``month``).
``incremental`` recomputes the days from ``end_date - incremental_days + 1`` (reading
``lookback_days`` more days of history for the windows) and replaces exactly those rows with
``replaceWhere``, from earlier when the stored table ends more than ``incremental_days - horizon``
days before the end date (no day is left out); it falls back to full when the table does not
exist yet or is empty.

silver.orders and silver.order_items are required; every order counts, guest checkouts (null
``user_id``) included. silver.events is optional: a shop with an order export only gets null
``views`` / ``cart_adds`` and activity features and no ``likely_stockout`` flag (see
:mod:`~shopai_spark.demand.panel`), noted in the log and the summary.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand import charts
from shopai_spark.demand import features as feats
from shopai_spark.demand import panel as pnl
from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.evaluation import ForecastEvaluation, evaluate
from shopai_spark.errors import EmptyInputError
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS
from shopai_spark.tables import RowsFrom, TableRef, TableWrite, with_run_metadata

log = logging.getLogger(__name__)

SKU_DEMAND_FEATURES = TableRef("gold", "sku_demand_features")
INVENTORY_SIGNALS = TableRef("gold", "inventory_signals")
OUTPUTS = (SKU_DEMAND_FEATURES, INVENTORY_SIGNALS)
PARTITION = "month_start"
DEMO_DAYS = 3
SUMMARY_METRICS = ("backtest_wape_all", "zero_wape_all", "moving_average_wape_all", "p90_coverage_all",
                   "simulated_service_level_all")


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def resolve_end_date(config: DemandConfig, lines: DataFrame) -> dt.date:
    """``demand.end_date``, or the latest order day on or after ``start_date``."""
    if config.end_date:
        return dt.date.fromisoformat(config.end_date)
    start = _date(config.start_date)
    dated = lines.filter(F.col("date").isNotNull() & (F.col("quantity") > 0))
    if start:
        dated = dated.filter(F.col("date") >= F.lit(start))
    latest = dated.agg(F.max("date")).first()[0]
    if latest is None:
        raise EmptyInputError("demand: silver.order_items has no valid order line in range; nothing was written")
    return latest


def promotions_ref(config: DemandConfig) -> TableRef | None:
    return TableRef(*config.promotions_table.split(".")) if config.promotions_table else None


def incremental_start(ctx: JobContext, end_date: dt.date) -> dt.date | None:
    """First recomputed day in incremental mode; None for a full rebuild.

    ``end_date - incremental_days + 1``, moved earlier when the stored table's last day ``s`` is
    older: every row from ``s - horizon + 2`` on had a target that was still unknown, and every day
    after ``s`` is new, so none is missing however long ago the last run was."""
    config = ctx.config
    if config.mode != "incremental":
        return None
    stored_end = (ctx.lakehouse.read(SKU_DEMAND_FEATURES).agg(F.max("date")).first()[0]
                  if ctx.lakehouse.exists(SKU_DEMAND_FEATURES) else None)
    if stored_end is None:
        log.warning("demand: %s does not exist or is empty; incremental run falls back to a full rebuild",
                    SKU_DEMAND_FEATURES)
        return None
    planned = end_date - dt.timedelta(days=config.incremental_days - 1)
    needed = stored_end - dt.timedelta(days=config.horizon - 2)
    if needed < planned:
        log.warning("demand: the stored table ends %s; recomputing from %s (not %s) so that no day is missing",
                    stored_end, needed, planned)
    return min(planned, needed)


def build_features(ctx: JobContext, lines: DataFrame, events: DataFrame | None, end_date: dt.date,
                   from_date: dt.date | None) -> tuple[DataFrame, DataFrame]:
    """(feature rows from ``from_date`` (or the start) to the end date + forecast-origin rows of the next
    day, sales per SKU day). Input: :func:`~shopai_spark.demand.panel.order_lines` and silver.events
    (None when the shop has none). Output columns: :func:`~shopai_spark.demand.features.output_columns`."""
    config = ctx.config
    start = _date(config.start_date)
    sales = pnl.daily_sales(pnl.valid_lines(lines, start, end_date)).persist(StorageLevel.MEMORY_AND_DISK)
    activity = None if events is None else pnl.daily_activity(events, start, end_date).persist(
        StorageLevel.MEMORY_AND_DISK)
    bounds = pnl.sku_bounds(sales, activity, end_date, config.delist_after_days)
    grid_from = from_date - dt.timedelta(days=config.lookback_days) if from_date else None
    origin_day = end_date + dt.timedelta(days=1)
    panel = pnl.build_panel(sales, activity, bounds, from_date=grid_from, extra_day=origin_day)
    ref = promotions_ref(config)
    promotions = ctx.read(ref) if ref else None
    featured = feats.add_features(panel, config, end_date, promotions).select(*feats.output_columns(config))
    if from_date:
        featured = featured.filter(F.col("date") >= F.lit(from_date))
    return featured, sales


def input_counts(sales: DataFrame, features: DataFrame) -> dict[str, int]:
    """SKUs in the panel, SKUs without any priced sale, panel rows and likely-stockout days."""
    skus = sales.groupBy("sku").agg(F.sum("priced_units").alias("priced")).agg(
        F.count("*").alias("skus"), F.sum(F.when(F.col("priced") == 0, 1).otherwise(0)).alias("no_price")).first()
    rows = features.agg(F.count("*").alias("rows"), F.sum(F.col("likely_stockout").cast("long")).alias("out")).first()
    return {"skus": int(skus["skus"]), "skus_without_price": int(skus["no_price"] or 0),
            "panel_rows": int(rows["rows"]), "likely_stockout_days": int(rows["out"] or 0)}


def training_frame(ctx: JobContext, features: DataFrame, from_date: dt.date | None) -> DataFrame:
    """Rows the forecaster sees: this run's rows, plus (incremental) the stored rows before ``from_date``."""
    if from_date is None:
        return features
    stored = (ctx.lakehouse.read(SKU_DEMAND_FEATURES).filter(F.col("date") < F.lit(from_date))
              .select(*features.columns))
    return stored.unionByName(features)


def busy_sku_lines(config: DemandConfig, table: DataFrame, signals: DataFrame | None,
                   end_date: dt.date) -> list[str]:
    """Summary lines: the last days of the panel for ``demo_sku`` (default: most units in the last 28
    days) and its inventory signal."""
    sku = config.demo_sku or (table.filter(F.col("date") > F.lit(end_date - dt.timedelta(days=28)))
                              .groupBy("sku").agg(F.sum("units").alias("u")).orderBy(F.desc("u"), "sku")
                              .first()["sku"])
    columns = ["date", "units", "views", "price", "promo_flag", f"units_mean_{max(config.rolling_windows)}",
               "likely_stockout", "demand_class", "target_1"]
    last = (table.filter(F.col("sku") == sku).orderBy(F.desc("date")).limit(DEMO_DAYS).select(*columns)
            .toPandas().sort_values("date"))
    lines = [f"  busy SKU {sku}: last {len(last)} days of the panel", *("    " + s for s in
                                                                        last.to_string(index=False).splitlines())]
    if signals is not None:
        row = signals.filter(F.col("sku") == sku).first()
        if row is not None:
            lines.append(f"    inventory ({row['forecast_model']}, {row['demand_class']}, lead time "
                         f"{row['lead_time_days']} d, service {row['service_level']:.0%}): forecast "
                         f"{row['forecast_lead_time_units']:.1f} units (P50 {row['lead_time_p50_units']:.1f}, "
                         f"P90 {row['lead_time_p90_units']:.1f}), reorder point {row['reorder_point_units']:.1f}, "
                         f"safety stock {row['safety_stock_units']:.1f}")
    return lines


def signal_counts(signals: DataFrame | None) -> dict[str, int]:
    """SKUs with an inventory signal and those of them on a fallback."""
    if signals is None:
        return {"skus": 0, "fallbacks": 0}
    return {"skus": signals.count(), "fallbacks": signals.filter(F.col("fallback_reason").isNotNull()).count()}


def forecast_and_signals(ctx: JobContext, featured: DataFrame, from_date: dt.date | None,
                         end_date: dt.date) -> ForecastEvaluation | None:
    """The rolling-origin backtest and, with the models it chose, the inventory signals as of
    ``end_date`` (cached); None when the history is too short for the selection and report origins."""
    frame = training_frame(ctx, featured, from_date).persist(StorageLevel.MEMORY_AND_DISK)
    result = evaluate(frame, end_date, ctx.config)
    frame.unpersist()
    return result


def write_gold(ctx: JobContext, table: DataFrame, signals: DataFrame | None, from_date: dt.date | None,
               panel_rows: int) -> dict[str, int]:
    """Overwrite gold.sku_demand_features (from ``from_date`` on, when incremental) and
    gold.inventory_signals together (all or nothing); returns rows per table."""
    gold = with_run_metadata(table.withColumn(PARTITION, F.trunc("date", "month")), ctx.run.run_id)
    replace = RowsFrom("date", from_date) if from_date else None
    tables = {str(SKU_DEMAND_FEATURES): panel_rows}
    writes = [TableWrite(gold.repartition(PARTITION), SKU_DEMAND_FEATURES, [PARTITION], replace)]
    if signals is not None:
        writes.append(TableWrite(with_run_metadata(signals, ctx.run.run_id), INVENTORY_SIGNALS))
        tables[str(INVENTORY_SIGNALS)] = signals.count()
    ctx.lakehouse.overwrite_all(writes)
    return tables


def log_forecast(ctx: JobContext, result: ForecastEvaluation | None) -> list[str]:
    """Log the backtest tables, chosen models and charts; return the summary lines."""
    config = ctx.config
    if result is None:
        return ["  forecast skipped: not enough history for the backtest's selection and report origins"] \
            if config.forecast else []
    ctx.run.log_params({f"demand.chosen_model_{name}": model for name, model in result.choice.items()})
    ctx.run.log_table(result.selection_scores, "backtest_selection_scores")
    ctx.run.log_table(result.report_scores, "backtest_report_scores")
    ctx.run.log_table(result.report_quantiles, "backtest_quantiles")
    ctx.run.log_table(result.service, "simulated_service")
    ctx.run.log_figure(charts.error_by_class(result.report_scores), "backtest_error_by_class")
    if not result.fan.empty:
        ctx.run.log_figure(charts.fan_chart(result.fan, config.lead_time_days), "fan_chart")
    if not result.service.empty:
        ctx.run.log_figure(charts.service_levels(result.service, config.service_level), "service_level")
    return summary_lines(result, config)


def summary_lines(result: ForecastEvaluation, config: DemandConfig) -> list[str]:
    """Per class: the chosen model, report-origin WAPE against the baselines, P90 coverage and the
    simulated service level against the target."""
    origins = result.origins
    lines = [f"  backtest of units over {config.lead_time_days} days: models chosen on origins "
             f"{origins.selection[0]}..{origins.selection[-1]}, reported on {origins.report[0]}..{origins.report[-1]}"]
    metrics = result.metrics
    classes = [c for c in ("smooth", "erratic", "intermittent", "lumpy", "none", "all")
               if f"backtest_wape_{c}" in metrics]

    def show(key: str, name: str) -> str:
        value = metrics.get(f"{key}_{name}")
        return "n/a" if value is None else f"{value:.3f}"

    for name in classes:
        lines.append(f"    {name:<12} {result.choice.get(name, result.choice['all']):<14} WAPE {show('backtest_wape', name)}"
                     f" (zero {show('zero_wape', name)}, moving average {show('moving_average_wape', name)}),"
                     f" P90 coverage {show('p90_coverage', name)}, service level {show('simulated_service_level', name)}"
                     f" (target {config.service_level:.2f})")
    chosen_wape = result.selection_scores.set_index(["class", "model"])["wape"]
    lost = [c for c in classes if (c, result.choice.get(c, result.choice["all"])) in chosen_wape.index
            and (c, "zero") in chosen_wape.index
            and chosen_wape[(c, result.choice.get(c, result.choice["all"]))] > chosen_wape[(c, "zero")]]
    later = [c for c in classes if metrics[f"backtest_wape_{c}"] > metrics.get(f"zero_wape_{c}", float("inf"))]
    lines.append("    chosen models vs the zero forecast: "
                 + (f"worse on the selection origins in {', '.join(lost)} (too few SKUs for a class choice)"
                    if lost else "none worse on the selection origins")
                 + (f"; worse on the report origins in {', '.join(later)}" if later else
                    "; none worse on the report origins"))
    return lines


def run(ctx: JobContext) -> JobSummary:
    """Features (full or incremental), forecasts and inventory signals (see module docstring)."""
    config = ctx.config
    used = ctx.require_inputs([ORDERS.ref, ORDER_ITEMS.ref, *([promotions_ref(config)] if config.promotions_table
                                                               else [])], optional=[EVENTS.ref])
    events = ctx.read(EVENTS.ref) if EVENTS.ref in used else None
    notes = [] if events is not None else [f"no {EVENTS.ref}: views, cart_adds and their features left empty, "
                                           "likely_stockout never flagged"]
    with ctx.step("order lines") as counts:
        lines = pnl.order_lines(ctx.read(ORDERS.ref), ctx.read(ORDER_ITEMS.ref)).persist(
            StorageLevel.MEMORY_AND_DISK)
        end_date = resolve_end_date(config, lines)
        issues = pnl.line_issue_counts(lines, _date(config.start_date), end_date)
        counts.update(end_date=str(end_date), **issues)
    from_date = incremental_start(ctx, end_date)
    mode = "incremental" if from_date else "full"
    ctx.run.log_params({"demand.resolved_end_date": str(end_date), "demand.resolved_mode": mode,
                        "demand.recompute_from": str(from_date)})
    with ctx.step(f"features ({mode})") as counts:
        featured, sales = build_features(ctx, lines, events, end_date, from_date)
        featured = featured.persist(StorageLevel.MEMORY_AND_DISK)
        table = featured.filter(F.col("date") <= F.lit(end_date))
        stats = input_counts(sales, table)
        counts.update(stats)
    if stats["panel_rows"] == 0:
        raise EmptyInputError(f"demand: no panel rows for {mode} run ending {end_date}; nothing was written")
    result = signals = None
    if config.forecast:
        with ctx.step("forecast + inventory") as counts:
            result = forecast_and_signals(ctx, featured, from_date, end_date)
            signals = result.signals if result else None
            counts.update(signal_counts(signals))
    with ctx.step("write"):
        tables = write_gold(ctx, table, signals, from_date, stats["panel_rows"])
    metrics = {**{f"lines_{k}": float(v) for k, v in issues.items()}, **{k: float(v) for k, v in stats.items()},
               **({k: v for k, v in result.metrics.items() if v is not None} if result else {})}
    ctx.run.log_metrics(metrics)
    lines_out = [f"  mode {mode}, end date {end_date}" + (f", recomputed from {from_date}" if from_date else ""),
                 *(f"  {note}" for note in notes), *log_forecast(ctx, result),
                 *busy_sku_lines(config, table, signals, end_date)]
    for cached in (featured, sales, lines):
        cached.unpersist()
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id, tables=tables,
                      metrics={k: v for k, v in metrics.items() if k in SUMMARY_METRICS}, lines=lines_out)
