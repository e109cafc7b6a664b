"""The jars Spark needs beyond its own, fetched from Maven Central once (`precis jars pull`).

Two sets, each in its own folder under `spark.jars_dir`, each complete or absent:

- **delta** (`lake.engine: spark-delta`): `io.delta:delta-spark_<spark major.minor>_2.13` and
  `io.delta:delta-storage` at the installed delta-spark's version, without their dependencies
  (Spark's are `provided`; the rest, Delta Kernel and Unity Catalog clients, `format("delta")`
  does not use).
- **s3a** (a lake root `s3://` or `s3a://`): `org.apache.hadoop:hadoop-aws` at the Hadoop version
  pyspark ships, with the AWS SDK v2 modules it uses (`s3`, `s3-transfer-manager`, `sts`) instead
  of the SDK's 600 MB `bundle`, resolved with their dependencies; jars whose artifact Spark already
  ships (netty, httpclient, slf4j, ...) are left out, so Spark's own versions stay the only ones.

`fetch(folder, sets)` runs Maven (`dependency:copy-dependencies` on a generated POM), once per
set: a set already complete is not fetched again, and a failure says what to check.
`jar_files(folder, set)` lists a set's jars when it is complete, else None; `jobs.spark` puts them on
`spark.jars`. A cluster whose Spark image already carries the jars needs none of this.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from precis.errors import MissingPrerequisite

log = logging.getLogger(__name__)

SCALA = "2.13"  # pyspark 4 is built for Scala 2.13 only
JarSet = Literal["delta", "s3a"]
JAR_SETS: tuple[JarSet, ...] = ("delta", "s3a")
_COMPLETE = "jars.txt"  # written last: the set's jar names, one per line

# The AWS SDK v2 and analytics-accelerator versions each hadoop-aws release is built against
# (its hadoop-project POM: aws-java-sdk-v2.version, amazon-s3-analyticsaccelerator-s3.version).
_HADOOP_AWS_SDK = {"3.5.0": ("2.35.4", "1.3.1"), "3.4.2": ("2.29.52", "1.2.1")}


@dataclass(frozen=True)
class Artifact:
    """One Maven artifact, `group:artifact:version`, optionally without some of its dependencies."""

    group: str
    artifact: str
    version: str
    exclusions: tuple[tuple[str, str], ...] = ()  # (group, artifact) of dependencies not to resolve

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def jar(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def pom_dependency(self) -> str:
        excl = "".join(f"<exclusion><groupId>{g}</groupId><artifactId>{a}</artifactId></exclusion>"
                       for g, a in self.exclusions)
        return (f"<dependency><groupId>{self.group}</groupId><artifactId>{self.artifact}</artifactId>"
                f"<version>{self.version}</version>{f'<exclusions>{excl}</exclusions>' if excl else ''}</dependency>")


def spark_jars_folder() -> Path:
    """The jars of the Spark that runs here: $SPARK_HOME's (spark-submit sets it, and imports
    pyspark from a zip inside it), else the pip-installed pyspark's."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "jars"


def spark_hadoop_version() -> str:
    """The Hadoop version pyspark ships (its hadoop-client-api jar)."""
    for jar in spark_jars_folder().glob("hadoop-client-api-*.jar"):
        return jar.name[len("hadoop-client-api-"):-len(".jar")]
    raise MissingPrerequisite("pyspark's hadoop-client-api jar", "reinstall pyspark")


def coordinates(delta: str | None = None, spark: str | None = None) -> tuple[Artifact, ...]:
    """The Delta jars for delta-spark `delta` on pyspark `spark` (default: the installed versions)."""
    delta = delta or version("delta-spark")
    spark = spark or version("pyspark")
    major_minor = ".".join(spark.split(".")[:2])
    return (Artifact("io.delta", f"delta-spark_{major_minor}_{SCALA}", delta),
            Artifact("io.delta", "delta-storage", delta))


def s3a_dependencies(hadoop: str | None = None) -> tuple[Artifact, ...]:
    """hadoop-aws for pyspark's Hadoop, with the SDK modules it needs instead of the SDK bundle."""
    hadoop = hadoop or spark_hadoop_version()
    if hadoop not in _HADOOP_AWS_SDK:
        raise MissingPrerequisite(
            f"the AWS SDK version hadoop-aws {hadoop} is built against (known: {', '.join(_HADOOP_AWS_SDK)})",
            "add it to jobs.jars._HADOOP_AWS_SDK from hadoop-project's POM, or name the S3A jars in spark.conf['spark.jars']")
    sdk, accelerator = _HADOOP_AWS_SDK[hadoop]
    return (
        Artifact("org.apache.hadoop", "hadoop-aws", hadoop,
                 exclusions=(("software.amazon.awssdk", "bundle"),
                             ("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3"))),
        *(Artifact("software.amazon.awssdk", m, sdk) for m in ("s3", "s3-transfer-manager", "sts")),
        Artifact("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3", accelerator),
    )


def _artifacts(which: JarSet) -> tuple[Artifact, ...]:
    return coordinates() if which == "delta" else s3a_dependencies()


def jar_files(folder: str | Path, which: JarSet = "delta") -> list[Path] | None:
    """The set's jars in `folder` when the set is complete, else None."""
    sub = Path(folder).expanduser() / which
    listing = sub / _COMPLETE
    if not listing.is_file():
        return None
    files = [sub / name for name in listing.read_text().split()]
    wanted = {a.jar for a in _artifacts(which)}
    if not wanted <= {f.name for f in files} or not all(f.is_file() for f in files):
        return None  # fetched for other versions, or a file went missing
    return files


def fetch(folder: str | Path, sets: tuple[JarSet, ...] = ("delta",)) -> dict[JarSet, list[Path]]:
    """Fetch each set that is not complete in `folder` yet; return every set's jars."""
    out: dict[JarSet, list[Path]] = {}
    for which in sets:
        have = jar_files(folder, which)
        if have is not None:
            log.info("jars: %s already in %s (%d jars)", which, Path(folder) / which, len(have))
            out[which] = have
            continue
        out[which] = _fetch_set(Path(folder).expanduser() / which, which)
    return out


def _spark_ships() -> set[str]:
    """Artifact ids of the jars pyspark already ships (name-version.jar)."""
    return {m.group(1) for j in spark_jars_folder().glob("*.jar")
            if (m := re.match(r"(.+?)-\d[\w.\-]*\.jar$", j.name))}


def _fetch_set(sub: Path, which: JarSet) -> list[Path]:
    artifacts = _artifacts(which)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPrerequisite(f"Maven (mvn) to fetch {', '.join(a.coordinate for a in artifacts)}",
                                  f"install Maven, or copy those jars from Maven Central into {sub} and list them in {sub / _COMPLETE}")
    if sub.exists():
        shutil.rmtree(sub)  # an incomplete or outdated set
    sub.mkdir(parents=True)
    skip = sorted(_spark_ships() - {a.artifact for a in artifacts})
    # delta: exactly the two jars, as delta-spark's own pip set-up loads them (its POM's further
    # dependencies, Delta Kernel and Unity Catalog clients with an older Jackson, are not needed
    # by format("delta") and would sit beside Spark's Jackson); s3a: the SDK modules resolved
    transitive = which == "s3a"
    log.info("jars: fetching %s (%s) into %s", which, ", ".join(a.coordinate for a in artifacts), sub)
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            f"<groupId>precis</groupId><artifactId>jars-{which}</artifactId><version>1</version>"
            f"<dependencies>{''.join(a.pom_dependency() for a in artifacts)}</dependencies></project>")
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={sub}",
             "-DincludeScope=runtime", f"-DexcludeArtifactIds={','.join(skip)}",
             f"-DexcludeTransitive={str(not transitive).lower()}"],
            capture_output=True, text=True, cwd=tmp)
    jars = sorted(p.name for p in sub.glob("*.jar"))
    missing = {a.jar for a in artifacts} - set(jars)
    if done.returncode != 0 or missing:
        tail = " ".join((done.stdout + done.stderr).split())[-400:]
        raise MissingPrerequisite(f"the {which} jars from Maven Central (missing {', '.join(sorted(missing)) or 'none'}; {tail})",
                                  "check that Maven Central is reachable and that these versions have jars there")
    (sub / _COMPLETE).write_text("\n".join(jars) + "\n")
    size = sum((sub / j).stat().st_size for j in jars) / 2**20
    log.info("jars: %s: %d jars, %.1f MB in %s", which, len(jars), size, sub)
    return [sub / j for j in jars]
