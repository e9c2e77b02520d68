"""Market-basket analysis with FP-Growth (gold.frequent_itemsets, gold.association_rules,
gold.frequently_bought_together).

    spark-submit jobs/fpgrowth.py --conf conf/local.yaml [--set fpgrowth.min_support=0.005 ...]
"""

from shopai_spark.app import main

if __name__ == "__main__":
    raise SystemExit(main("fpgrowth"))
