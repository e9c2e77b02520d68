"""shopai_spark: distributed batch jobs for an online shop on Spark, Delta Lake and MLflow."""
