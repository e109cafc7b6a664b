"""The Spark session, built from configuration: `local[*]` by default, a cluster master otherwise."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import PrecisConfig

LOG4J = Path(__file__).with_name("log4j2.properties")
# Lines the JVM itself prints on stderr at start-up, outside log4j's reach: spark-launcher adds
# `--add-modules=jdk.incubator.vector`, and the JVM announces it. Shown with -v (DEBUG), else dropped.
JVM_NOTICES = ("WARNING: Using incubator modules",)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def delta_jars_available(spark: "SparkSession") -> bool:
    """True when delta-spark's JVM classes are on the classpath (a cluster that ships its jars, or
    `spark.jars`). Looked up through Spark's class loader: jars added by `spark.jars` are not on
    the JVM's system class path, which `Class.forName` alone searches."""
    try:
        spark._jvm.org.apache.spark.util.Utils.classForName("io.delta.tables.DeltaTable", True, False)  # type: ignore[union-attr]
        return True
    except Exception:
        return False


def spark_options(cfg: PrecisConfig) -> dict[str, str]:
    """Every Spark setting the configuration implies: the `spark` section's fields, the Delta
    session settings and jars when `lake.engine` is spark-delta, then `spark.conf` (which wins).
    The in-process session is built from them and a cluster step passes them to spark-submit, so
    both run with the same settings. Executors run this very interpreter unless `spark.conf` sets
    `spark.executorEnv.PYSPARK_PYTHON` (on YARN or Kubernetes it must: the path is this machine's)."""
    sc = cfg.spark
    options = {
        "spark.master": sc.master,
        "spark.app.name": sc.app_name,
        "spark.sql.shuffle.partitions": str(sc.shuffle_partitions),
        "spark.driver.memory": sc.driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
        "spark.executorEnv.ORT_DISABLE_TELEMETRY": "1",
        # Partition folders are written as ds=YYYY-MM-DD; keep `ds` a string when Spark reads them.
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J}",
    }
    if cfg.lake.engine == "spark-delta":
        options["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
        options["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        if not {"spark.jars", "spark.jars.packages"} & set(sc.conf):
            from jobs.delta_jars import jar_files

            jars = jar_files(sc.delta_jars_dir)
            if jars:  # else the lake says what to do once it finds no Delta classes
                options["spark.jars"] = ",".join(str(j) for j in jars)
    options.update(sc.conf)
    return options


def get_spark(cfg: PrecisConfig) -> "SparkSession":
    """Create (or reuse) the session. Workers run this very interpreter, so they see our packages."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # onnxruntime phones home unless told not to; Spark workers inherit this.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    from pyspark.sql import SparkSession

    options = spark_options(cfg)
    _launch_gateway(options)
    builder = SparkSession.builder
    for key, value in options.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    return spark


def _launch_gateway(options: dict[str, str]) -> None:
    """Start the driver JVM as pyspark would (spark-submit with these options), but with its stderr
    read by a thread that drops `JVM_NOTICES` and passes every other line through (log4j's own
    warnings and errors, a crash). Nothing to do when a JVM is already up, or when this process
    runs under spark-submit, which started the JVM itself."""
    from subprocess import PIPE

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    conf = SparkConf(loadDefaults=False).setAll(list(options.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": PIPE})
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stderr is not None:
        threading.Thread(target=_pass_stderr, args=(proc.stderr,), name="jvm-stderr", daemon=True).start()
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)


def _pass_stderr(stream) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(JVM_NOTICES):
            log.debug("JVM: %s", line.rstrip())
            continue
        sys.stderr.write(line)
        sys.stderr.flush()

