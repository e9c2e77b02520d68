# Databricks notebook source
# MAGIC %md
# MAGIC # Association rules (FP-Growth)
# MAGIC Mines the order baskets of silver.order_items and writes `gold.frequent_itemsets`,
# MAGIC `gold.association_rules` (support, confidence, lift, leverage, conviction) and
# MAGIC `gold.frequently_bought_together`. A support so low that the search would explode stops
# MAGIC before mining, with a workable support in the message.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["fpgrowth.level", "fpgrowth.min_support", "fpgrowth.min_confidence", "fpgrowth.max_basket_size"]
declare_widgets(dbutils, PARAMETERS)

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("fpgrowth", config, spark)
print(summary.render())

# COMMAND ----------

from pyspark.sql import functions as F

from shopai_spark.basket.job import ASSOCIATION_RULES, FREQUENTLY_BOUGHT_TOGETHER
from shopai_spark.runs import read_committed
from shopai_spark.tables import Lakehouse

lakehouse = Lakehouse(spark, config.lakehouse)
display(read_committed(lakehouse, ASSOCIATION_RULES)
        .select("antecedent_names", "consequent_names", "support", "confidence", "lift", "leverage", "conviction")
        .orderBy(F.desc("lift"), F.desc("support")).limit(20))

# COMMAND ----------

display(read_committed(lakehouse, FREQUENTLY_BOUGHT_TOGETHER).filter("rank <= 3").orderBy("sku", "rank").limit(30))
