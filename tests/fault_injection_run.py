"""Run the ingest job with a task that fails on its first attempt (used by test_fault_tolerance).

    python tests/fault_injection_run.py <master> <ingest job args...>

The raw reader is wrapped so every task of partition 0 raises on attempt 0; with a ``local[N,F]``
master Spark retries it and the job must succeed, with ``local[N]`` it must fail.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from pyspark import TaskContext
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

import shopai_spark.ingest.job as ingest_job
from shopai_spark.app import main


@F.udf(BooleanType())
def passes_after_first_attempt(_value: str) -> bool:
    context = TaskContext.get()
    if context.partitionId() == 0 and context.attemptNumber() == 0:
        raise RuntimeError("injected failure on the first attempt of partition 0")
    return True


def read_source_failing_once(spark, name, source):
    raw = real_read_source(spark, name, source)
    return replace(raw, records=raw.records.filter(passes_after_first_attempt(F.col("record"))))


if __name__ == "__main__":
    master, *args = sys.argv[1:]
    real_read_source = ingest_job.read_source
    ingest_job.read_source = read_source_failing_once
    raise SystemExit(main("ingest", [*args, "--set", f"spark.master={master}"]))
