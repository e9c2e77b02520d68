# Databricks notebook source
# MAGIC %md
# MAGIC # Recommendations (ALS)
# MAGIC Trains ALS on silver.events (implicit) or a ratings table (explicit), compares it with the
# MAGIC popularity baseline on the configured split, and writes `gold.user_recommendations` and
# MAGIC `gold.similar_items`. Metrics, the grid's child runs and the model are in MLflow.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["als.mode", "als.rank", "als.reg_param", "als.top_n"]
declare_widgets(dbutils, PARAMETERS)
dbutils.widgets.text("user_id", "", "Show this user's recommendations (empty = the first user)")

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("als", config, spark)
print(summary.render())

# COMMAND ----------

from pyspark.sql import functions as F

from shopai_spark.recommend.job import SIMILAR_ITEMS, USER_RECOMMENDATIONS
from shopai_spark.runs import read_committed
from shopai_spark.tables import Lakehouse

lakehouse = Lakehouse(spark, config.lakehouse)
recommendations = read_committed(lakehouse, USER_RECOMMENDATIONS)
user_id = dbutils.widgets.get("user_id") or recommendations.agg(F.min("user_id")).first()[0]
display(recommendations.filter(F.col("user_id") == user_id).orderBy("rank"))

# COMMAND ----------

top_sku = recommendations.filter((F.col("user_id") == user_id) & (F.col("rank") == 1)).first()["sku"]
display(read_committed(lakehouse, SIMILAR_ITEMS).filter(F.col("sku") == top_sku).orderBy("rank"))
