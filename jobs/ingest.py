"""Ingest raw shop exports into validated silver Delta tables (rejects → quarantine.rejected_rows).

    spark-submit jobs/ingest.py --conf conf/local.yaml [--set key=value ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("ingest"))
