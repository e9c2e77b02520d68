"""Per-SKU demand features, a baseline forecast and inventory signals (see docs/demand.md).

    spark-submit jobs/demand_features.py --conf conf/local.yaml [--set demand.mode=incremental ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("demand_features"))
