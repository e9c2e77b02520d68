"""Bench stages generate + ingest: synthetic raw files at a size, then validation into silver.

small: 20,000 users x 40 events (about 0.8 M events); large: 250,000 users x 40 events (about 10 M).
"""

from __future__ import annotations

from shopai_spark.app import run_job

SIZES = {
    "small": {"users": 20_000, "skus": 2_000, "events_per_user": 40, "days": 365},
    "large": {"users": 250_000, "skus": 20_000, "events_per_user": 40, "days": 365},
}


def run(bench) -> None:
    size = SIZES[bench.size]
    config = bench.config(*[f"generate.{k}={v}" for k, v in size.items()], "generate.dirt_share=0.01",
                          "generate.files_per_table=8", "spark.shuffle_partitions=16")
    with bench.stage("generate", **size) as extra:
        summary = run_job("generate_data", config, bench.spark)
        extra.update({f"rows.{k}": v for k, v in summary.tables.items()})
    with bench.stage("ingest", users=size["users"]) as extra:
        summary = run_job("ingest", config, bench.spark)
        extra.update({f"rows.{k}": v for k, v in summary.tables.items() if k.startswith("silver.events")})
