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
        # The throughput collector: Java 17's default G1 spent about 15% more CPU on ingest's
        # million reviews (G1's concurrent marking and write barriers), and the more so the more
        # task threads share the machine (benchmarks/ingest.py; README "Benchmarks"). In local mode
        # the driver is the executor; a cluster's executors keep their JVM's default.
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J} -XX:+UseParallelGC",
    }
    if cfg.lake.engine == "spark-delta":
        options["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
        options["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        # delta-spark replays a table's log in 50 partitions, fixed, whatever its size: every read
        # and commit of a small daily table became 50 tasks (thousands per generate step); the
        # configuration's shuffle partitions size this as they size every other shuffle
        options["spark.databricks.delta.snapshotPartitions"] = str(sc.shuffle_partitions)
    if cfg.lake_on_s3:
        options.update(s3a_options(cfg.lake.storage_options))
    if not {"spark.jars", "spark.jars.packages"} & set(sc.conf):
        from jobs.jars import jar_files

        # a set not fetched yet is left out: the lake then says what to do (no Delta classes), or
        # Spark does (no FileSystem for scheme "s3a")
        wanted = (("delta",) if cfg.lake.engine == "spark-delta" else ()) + (("s3a",) if cfg.lake_on_s3 else ())
        jars = [j for which in wanted for j in jar_files(sc.jars_dir, which) or []]
        if jars:
            options["spark.jars"] = ",".join(str(j) for j in jars)
    options.update(sc.conf)
    return options


def s3a_options(storage_options: dict[str, str]) -> dict[str, str]:
    """Hadoop's S3A settings for the lake's object store, from the delta-rs `storage_options` that
    reach it (endpoint, region, plain HTTP), so both engines talk to the same store. `s3://` paths
    (delta-rs names files so) go through S3A too. Credentials are never set here: S3A's default
    chain reads them from the environment (AWS_ACCESS_KEY_ID, ...) or the instance's role, as
    delta-rs does, so they stay out of Spark's configuration, which spark-submit and the UI show."""
    opts = {k.upper(): v for k, v in storage_options.items()}
    out = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
    if endpoint:
        out["spark.hadoop.fs.s3a.endpoint"] = endpoint
        # delta-rs addresses a custom endpoint by path unless told otherwise; so does S3A then
        virtual = opts.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false").lower() == "true"
        out["spark.hadoop.fs.s3a.path.style.access"] = str(not virtual).lower()
    if opts.get("AWS_ALLOW_HTTP", "false").lower() == "true":
        out["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    region = opts.get("AWS_REGION") or opts.get("AWS_DEFAULT_REGION")
    if region:
        out["spark.hadoop.fs.s3a.endpoint.region"] = region
    return out


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

