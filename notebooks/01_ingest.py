# Databricks notebook source
# MAGIC %md
# MAGIC # Ingest raw exports into silver
# MAGIC Validates events, order lines and products; rejected rows land in `quarantine.rejected_rows`
# MAGIC with their reason. Re-running on the same files changes nothing.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["ingest.cancellation_prefix"]
declare_widgets(dbutils, PARAMETERS)

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("ingest", config, spark)
print(summary.render())

# COMMAND ----------

from pyspark.sql import functions as F

from shopai_spark.quality import QUARANTINE
from shopai_spark.tables import Lakehouse

quarantine = Lakehouse(spark, config.lakehouse).read(QUARANTINE)
display(quarantine.groupBy("source", "reason").count().orderBy(F.desc("count")))
