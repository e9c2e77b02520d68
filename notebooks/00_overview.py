# Databricks notebook source
# MAGIC %md
# MAGIC # shopai_spark — overview
# MAGIC Runs the whole pipeline (generate → ingest → recommendations, rules, segments, demand) with one
# MAGIC config, then shows the silver and gold tables. Set `conf` to `../conf/databricks.yaml` on
# MAGIC Databricks (Unity Catalog tables, workspace MLflow); add `--set`-style overrides separated by `;`.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["generate.users", "generate.skus", "generate.days"]
declare_widgets(dbutils, PARAMETERS)
dbutils.widgets.text("steps", "", "Steps (comma separated, empty = all)")

# COMMAND ----------

from shopai_spark.pipeline import run_pipeline

config = config_from_widgets(dbutils, PARAMETERS)
steps = [s for s in dbutils.widgets.get("steps").split(",") if s] or None
summaries = run_pipeline(config, steps, spark)

# COMMAND ----------

from shopai_spark.pipeline import summaries_frame

display(summaries_frame(spark, summaries))
