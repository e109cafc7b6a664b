"""The Delta Lake jars that let Spark read and write Delta natively (`lake.engine: spark-delta`).

Contract:
- `coordinates()` names the Maven artifacts that match the *installed* delta-spark and pyspark:
  `io.delta:delta-spark_<spark major.minor>_2.13:<delta-spark>` and `io.delta:delta-storage`,
  the two jars delta-spark's own `configure_spark_with_delta_pip` puts on the classpath (Spark's
  dependencies are `provided` in their POM, so nothing else is needed).
- `fetch(folder)` copies them from Maven Central into `folder` with `mvn dependency:copy`, once:
  jars already there are not fetched again, and a failure says what to check.
- `jar_files(folder)` lists them when every one is there, else None; `jobs.spark.get_spark` puts
  them on `spark.jars` when the lake's engine is spark-delta.

A cluster whose Spark image already carries the jars needs none of this.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from precis.errors import MissingPrerequisite

log = logging.getLogger(__name__)

SCALA = "2.13"  # pyspark 4 is built for Scala 2.13 only


@dataclass(frozen=True)
class Artifact:
    """One Maven artifact, `group:artifact:version`."""

    group: str
    artifact: str
    version: str

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def jar(self) -> str:
        return f"{self.artifact}-{self.version}.jar"


def coordinates(delta: str | None = None, spark: str | None = None) -> tuple[Artifact, ...]:
    """The jars for delta-spark `delta` on pyspark `spark` (default: the installed versions)."""
    delta = delta or version("delta-spark")
    spark = spark or version("pyspark")
    major_minor = ".".join(spark.split(".")[:2])
    return (Artifact("io.delta", f"delta-spark_{major_minor}_{SCALA}", delta),
            Artifact("io.delta", "delta-storage", delta))


def jar_files(folder: str | Path) -> list[Path] | None:
    """The jars in `folder` when all of `coordinates()` are there, else None."""
    folder = Path(folder).expanduser()
    files = [folder / a.jar for a in coordinates()]
    return files if all(f.is_file() for f in files) else None


def fetch(folder: str | Path) -> list[Path]:
    """Copy the jars from Maven Central into `folder` (those already there are kept)."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    for a in coordinates():
        if (folder / a.jar).is_file():
            log.info("delta jars: %s already in %s", a.jar, folder)
            continue
        if mvn is None:
            raise MissingPrerequisite(f"Maven (mvn) to fetch {a.coordinate}",
                                      f"install Maven, or copy {a.jar} from Maven Central into {folder}")
        log.info("delta jars: fetching %s into %s", a.coordinate, folder)
        done = subprocess.run([mvn, "-q", "-B", "dependency:copy", f"-Dartifact={a.coordinate}",
                               f"-DoutputDirectory={folder}"], capture_output=True, text=True, cwd=folder)
        if done.returncode != 0 or not (folder / a.jar).is_file():
            tail = " ".join((done.stdout + done.stderr).split())[-400:]
            raise MissingPrerequisite(f"{a.coordinate} from Maven Central ({tail})",
                                      "check that Maven Central is reachable and that this delta-spark version has jars there")
    files = jar_files(folder)
    assert files is not None
    return files
