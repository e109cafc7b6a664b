"""The adapter registry on real folders: versions, pins, and the content-hash tag that tables record."""

import json

import pytest

from training import registry


def _register(root, task, weights: bytes, status="ready"):
    name, tmp = registry.staging(root, task)
    (tmp / "adapter_config.json").write_text('{"r": 8}')
    (tmp / "adapter_model.safetensors").write_bytes(weights)
    return registry.publish(tmp, name, {"task": task, "method": "sft"}, status)


def test_versions_pins_and_the_newest_ready_adapter(tmp_path):
    v1 = _register(tmp_path, "relsum", b"one")
    v2 = _register(tmp_path, "relsum", b"two", status="rejected")
    assert [v.name for v in registry.versions(tmp_path, "relsum")] == ["v0001", "v0002"]
    assert registry.select(tmp_path, "relsum") == v1  # the rejected v0002 is skipped
    assert registry.select(tmp_path, "relsum", "v0002") == v2
    assert registry.select(tmp_path, "relsum", "base") is None
    with pytest.raises(FileNotFoundError, match="v0009 not found.*versions: v0001, v0002"):
        registry.select(tmp_path, "relsum", "v0009")


def test_a_wiped_and_retrained_registry_does_not_reuse_the_old_tag(tmp_path):
    old = _register(tmp_path / "a", "relsum", b"weights trained last month")
    new = _register(tmp_path / "b", "relsum", b"weights trained today")
    assert old.name == new.name == "v0001"  # version numbers restart in a fresh registry
    assert registry.tag(old) != registry.tag(new)
    assert registry.tag(old) == f"v0001-{registry.content_hash(old)[:8]}"
    assert registry.manifest(old)["content_hash"] == registry.content_hash(old)
    assert registry.tag(None) == "base"


def test_adapters_registered_before_content_hashes_are_hashed_on_the_fly(tmp_path):
    folder = _register(tmp_path, "relsum", b"w")
    data = registry.manifest(folder)
    del data["content_hash"]  # as in a manifest written before hashes were recorded
    (folder / registry.MANIFEST).write_text(json.dumps(data))
    assert registry.tag(folder) == f"v0001-{registry.content_hash(folder)[:8]}"
