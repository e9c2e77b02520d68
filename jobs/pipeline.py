"""Run generate → ingest → recommendations, rules, segments, demand features with one config.

    python jobs/pipeline.py --conf conf/local.yaml [--steps ingest,als] [--set key=value ...]
"""

from shopai_spark.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
