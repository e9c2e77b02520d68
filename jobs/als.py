"""Recommendations: ALS on implicit (silver.events) or explicit (ratings) feedback → gold tables.

    spark-submit jobs/als.py --conf conf/local.yaml [--set als.mode=explicit ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("als"))
