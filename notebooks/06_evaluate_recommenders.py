# Databricks notebook source
# MAGIC %md
# MAGIC # Comparing the recommenders
# MAGIC Scores popularity, item-based CF, association rules (FP-Growth on the training baskets) and
# MAGIC ALS on the same held-out interactions: each customer's last basket (a ratings source: its test
# MAGIC file), the same users, candidates and exclusions. Writes no table: the metrics
# MAGIC (`<recommender>_<metric>`), the comparison table and a bar chart are in the MLflow run.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["als.k", "als.rank", "fpgrowth.min_support", "fpgrowth.min_confidence"]
declare_widgets(dbutils, PARAMETERS)

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("evaluate_recommenders", config, spark)
print(summary.render())

# COMMAND ----------

import mlflow
import pandas as pd

display(pd.read_csv(mlflow.artifacts.download_artifacts(run_id=summary.run_id,
                                                        artifact_path="recommender_comparison.csv")))
