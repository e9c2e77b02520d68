"""MLflow figures of the forecast evaluation (matplotlib ``Figure`` objects, no pyplot state)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from shopai_spark.demand.config import BASELINES


def error_by_class(report_scores: pd.DataFrame, chosen: str = "chosen") -> Figure:
    """Bars: report-origin WAPE of the chosen models and of each baseline, per demand class."""
    table = (report_scores[report_scores["model"].isin([chosen, *BASELINES])]
             .pivot(index="class", columns="model", values="wape").reindex(columns=[chosen, *BASELINES]))
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("WAPE (report origins)")
    ax.set_title("Backtest error by demand class: chosen model vs baselines")
    return fig


def fan_chart(fan: pd.DataFrame, lead_time_days: int) -> Figure:
    """One panel per SKU: actual lead-time units per report origin, the forecast and the P50–P90 band."""
    skus = list(dict.fromkeys(fan["sku"]))
    fig = Figure(figsize=(10, 2.2 * max(1, (len(skus) + 1) // 2)))
    axes = fig.subplots(max(1, (len(skus) + 1) // 2), 2, squeeze=False).ravel()
    for ax, sku in zip(axes, skus, strict=False):
        rows = fan[fan["sku"] == sku]
        ax.fill_between(rows["origin"], rows["p50"], rows["p90"], alpha=0.3, label="P50–P90")
        ax.plot(rows["origin"], rows["forecast"], label="forecast")
        ax.plot(rows["origin"], rows["actual"], "o", label="actual")
        ax.set_title(f"{sku} ({rows['class'].iloc[0]})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Units over the next {lead_time_days} days at each report origin")
    fig.tight_layout()
    return fig


def service_levels(service: pd.DataFrame, target: float) -> Figure:
    """Bars: simulated cycle service level and fill rate per class, with the target as a line."""
    table = service.set_index("class")[["simulated_service_level", "simulated_fill_rate"]]
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    table.plot.bar(ax=ax, rot=0)
    ax.axhline(target, color="black", linestyle="--", label=f"target {target:.0%}")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("(s, Q) policy over the report period: achieved vs target")
    return fig
