"""The Spark session, built from configuration: `local[*]` by default, a cluster master otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import PrecisConfig

LOG4J = Path(__file__).with_name("log4j2.properties")

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def delta_jars_available(spark: "SparkSession") -> bool:
    """True when delta-spark's JVM classes are on the classpath (a cluster that ships its jars)."""
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except Exception:
        return False


def get_spark(cfg: PrecisConfig) -> "SparkSession":
    """Create (or reuse) the session. Workers run this very interpreter, so they see our packages."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # onnxruntime phones home unless told not to; Spark workers inherit this.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    from pyspark.sql import SparkSession

    sc = cfg.spark
    builder = (
        SparkSession.builder.master(sc.master)
        .appName(sc.app_name)
        .config("spark.sql.shuffle.partitions", str(sc.shuffle_partitions))
        .config("spark.driver.memory", sc.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
        .config("spark.executorEnv.ORT_DISABLE_TELEMETRY", "1")
        # Partition folders are written as ds=YYYY-MM-DD; keep `ds` a string when Spark reads them.
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J}")
    )
    if cfg.lake.engine == "spark-delta":
        builder = builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension").config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    for key, value in sc.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(sc.log_level)
    return spark
