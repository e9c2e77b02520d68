"""Generate the synthetic shop: raw products/orders/events files and the planted ground truth.

    spark-submit jobs/generate_data.py --conf conf/local.yaml [--set generate.users=10000 ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("generate_data"))
