from pathlib import Path

import pytest
import yaml

from jobs.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_configs_load():
    local = load_config(REPO / "conf" / "local.yaml", environ={})
    assert local.spark.master == "local[*]"
    assert local.lake.engine == "auto"
    assert local.lake_root == str((Path.cwd() / "lake").resolve())
    cluster = load_config(REPO / "conf" / "cluster.example.yaml", environ={})
    assert cluster.spark.master == "yarn"
    assert cluster.lake.engine == "spark-delta"
    assert cluster.lake_root.startswith("s3a://")


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "spark.mastr" in str(err.value) and str(f) in str(err.value)
    assert "did you mean 'spark.master'?" in str(err.value)


def test_unknown_section_is_an_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("lakes:\n  root: x\n")
    with pytest.raises(ConfigError, match="unknown key 'lakes'"):
        load_config(f, environ={})


def test_wrong_type_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("spark:\n  shuffle_partitions: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "spark.shuffle_partitions" in str(err.value) and str(f) in str(err.value)


def test_bad_enum_value(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("lake:\n  engine: iceberg\n")
    with pytest.raises(ConfigError, match="lake.engine"):
        load_config(f, environ={})


def test_not_a_mapping_and_not_yaml(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f, environ={})
    g = tmp_path / "broken.yaml"
    g.write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(g, environ={})


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, environ={"PRECIS_CONFIG": str(tmp_path / "nope.yaml")})


def test_precedence_file_then_env_then_flag(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lake:\n  root: /from/file\nspark:\n  shuffle_partitions: 3\n  master: local[1]\n")
    assert load_config(f, environ={}).lake.root == "/from/file"
    env = {"PRECIS__LAKE__ROOT": "/from/env", "PRECIS__SPARK__SHUFFLE_PARTITIONS": "5", "PRECIS__SPARK__MASTER": "local[2]"}
    cfg = load_config(f, environ=env)
    assert cfg.lake.root == "/from/env"
    assert cfg.spark.shuffle_partitions == 5  # parsed, not a string
    assert cfg.spark.master == "local[2]"  # kept as typed, not a YAML list
    assert load_config(f, lake="/from/flag", environ=env).lake.root == "/from/flag"
    # $PRECIS_CONFIG picks the file when --config is absent
    assert load_config(None, environ={"PRECIS_CONFIG": str(f)}).lake.root == "/from/file"
    # a mapping: one key per variable, or a YAML flow mapping
    assert load_config(f, environ={"PRECIS__GENERATION__ADAPTERS__RELSUM": "base"}).generation.adapters == {"relsum": "base"}
    assert load_config(f, environ={"PRECIS__GENERATION__ADAPTERS": "{rpo: v0002}"}).generation.adapters == {"rpo": "v0002"}


def test_bad_env_override_is_reported():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"PRECIS__SPARK__SHUFFLE_PARTITIONS": "lots"})
    assert "'spark.shuffle_partitions' in PRECIS__SPARK__SHUFFLE_PARTITIONS:" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key 'spark.colour' in PRECIS__SPARK__COLOUR$"):
        load_config(None, environ={"PRECIS__SPARK__COLOUR": "red"})
    with pytest.raises(ConfigError, match=r"'training.train.max_step' in PRECIS__TRAINING__TRAIN__MAX_STEP; "
                                          r"did you mean 'training.train.max_steps'\?"):
        load_config(None, environ={"PRECIS__TRAINING__TRAIN__MAX_STEP": "3"})
    with pytest.raises(ConfigError, match="'spark.log_level' in PRECIS__SPARK__LOG_LEVEL: Input should be 'ALL'"):
        load_config(None, environ={"PRECIS__SPARK__LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigError, match=r"set one key per variable \(PRECIS__GENERATION__ADAPTERS__<KEY>=VALUE\)"):
        load_config(None, environ={"PRECIS__GENERATION__ADAPTERS": "relsum=base"})


def test_outside_the_repository_the_projects_own_configuration_is_used(tmp_path, monkeypatch):
    """Not the built-in defaults (which configure no inputs); relative paths stay relative to the
    working directory."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, environ={})
    assert cfg.source == str(REPO / "conf" / "local.yaml") and cfg.inputs.reviews
    assert cfg.lake_root == str((tmp_path / "lake").resolve())
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text("spark:\n  shuffle_partitions: 3\n")
    assert load_config(None, environ={}).spark.shuffle_partitions == 3  # the working directory's wins


def test_an_object_store_lake_takes_no_credentials_from_the_file_and_needs_folders_for_its_files(tmp_path):
    f = tmp_path / "s3.yaml"
    f.write_text(yaml.safe_dump({"lake": {"root": "s3a://bucket/lake", "storage_options": {
        "AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "very-secret-value"}}}))
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    message = str(err.value)
    assert "AWS_SECRET_ACCESS_KEY" in message and "environment" in message and str(f) in message
    assert "very-secret-value" not in message  # an error message never repeats the value
    f.write_text(yaml.safe_dump({"lake": {"root": "s3a://bucket/lake"}}))
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "ranker.artifacts_dir, training.adapters_dir, orchestration.report_dir" in str(err.value)
    f.write_text(yaml.safe_dump({"lake": {"root": "s3a://bucket/lake"}, "ranker": {"artifacts_dir": "/mnt/r"},
                                 "training": {"adapters_dir": "/mnt/a"}, "orchestration": {"report_dir": "/mnt/rep"}}))
    cfg = load_config(f, environ={})
    assert cfg.lake_on_s3 and cfg.lake_root == "s3a://bucket/lake" and str(cfg.ranker_dir) == "/mnt/r"
    assert not load_config(f, environ={}, lake=str(tmp_path)).lake_on_s3
    f.write_text(yaml.safe_dump({"lake": {"root": "gs://bucket/lake"}}))
    with pytest.raises(ConfigError, match="'gs://' is not supported"):
        load_config(f, environ={})


def test_spark_reaches_the_lakes_object_store_through_s3a_without_credentials_in_its_settings(tmp_path):
    from jobs.spark import spark_options

    f = tmp_path / "s3.yaml"
    f.write_text(yaml.safe_dump({
        "lake": {"root": "s3a://bucket/lake", "engine": "deltalake", "storage_options": {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}},
        "ranker": {"artifacts_dir": "/mnt/r"}, "training": {"adapters_dir": "/mnt/a"}, "orchestration": {"report_dir": "/mnt/rep"}}))
    env = {"AWS_SECRET_ACCESS_KEY": "in-the-environment-only"}
    options = spark_options(load_config(f, environ=env))
    assert options["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert options["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert options["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert options["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"  # delta-rs names files s3://
    assert "in-the-environment-only" not in str(options) and not any("secret" in k.lower() for k in options)
    jars = options.get("spark.jars", "")  # `make test` fetched the S3A set; the deltalake engine needs no Delta jars
    assert "hadoop-aws-" in jars and "delta-spark" not in jars
