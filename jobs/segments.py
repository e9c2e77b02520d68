"""Segment customers with K-Means on RFM and behaviour features (gold.customer_segments, ...).

    spark-submit jobs/segments.py --conf conf/local.yaml [--set segments.mode=score ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("segments"))
