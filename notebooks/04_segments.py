# Databricks notebook source
# MAGIC %md
# MAGIC # Customer segments (K-Means on RFM and behaviour)
# MAGIC Builds one feature row per customer, chooses k by silhouette (or takes `segments.k`), fits
# MAGIC K-Means and writes `gold.customer_segments`, `gold.segment_profiles` and
# MAGIC `gold.segment_migrations`. Set `segments.mode` to `score` to assign customers with the
# MAGIC latest logged model without refitting.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["segments.mode", "segments.k", "segments.reference_date"]
declare_widgets(dbutils, PARAMETERS)

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("segments", config, spark)
print(summary.render())

# COMMAND ----------

from shopai_spark.segment.job import SEGMENT_MIGRATIONS, SEGMENT_PROFILES
from shopai_spark.runs import read_committed
from shopai_spark.tables import Lakehouse

lakehouse = Lakehouse(spark, config.lakehouse)
display(read_committed(lakehouse, SEGMENT_PROFILES).orderBy("segment_id"))

# COMMAND ----------

display(read_committed(lakehouse, SEGMENT_MIGRATIONS).orderBy("from_segment", "to_segment"))
