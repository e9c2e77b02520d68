"""Recommender comparison: popularity, item-based CF, association rules and ALS on one hold-out → MLflow.

    spark-submit jobs/evaluate_recommenders.py --conf conf/local.yaml [--set als.source=udata ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("evaluate_recommenders"))
