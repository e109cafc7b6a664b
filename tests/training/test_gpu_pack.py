"""The GPU pack's format (training.gpu_pack): parcels under the budget, sha256 everywhere, a
damaged or missing parcel named, and a second assembly that rewrites nothing."""

from __future__ import annotations

import json
import os

import pytest

from training import gpu_pack
from training.config import TrainSettings


def _files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(os.urandom(3 * gpu_pack.MiB + 123))  # incompressible: carried as is
    (src / "data.jsonl").write_text("".join(json.dumps({"i": i, "text": "soap bar " * 20}) + "\n" for i in range(4000)))
    (src / "empty.txt").write_bytes(b"")
    return {"model/weights.bin": src / "weights.bin", "data/data.jsonl": src / "data.jsonl", "empty.txt": src / "empty.txt"}


def test_pack_cuts_parcels_under_the_budget_and_assembles_every_file_intact(tmp_path):
    files = _files(tmp_path)
    packed = gpu_pack.write(files, tmp_path / "pack", parcel_mib=1, meta={"what": "test"})
    assert len(packed.parcels) == 4  # 3 MiB of random bytes + the compressed data in 1 MiB parcels
    for parcel in packed.parcels:
        pieces = sum(p.stat().st_size for p in parcel.glob("*.part"))
        assert pieces <= gpu_pack.MiB
        assert gpu_pack.verify(parcel)["of"] == len(packed.parcels)
    m = gpu_pack.manifest(tmp_path / "pack")
    assert m["meta"] == {"what": "test"}
    assert m["files"]["data/data.jsonl"]["encoding"] == "gzip"
    assert m["files"]["model/weights.bin"]["encoding"] == "identity"
    assert (packed.parcels[-1] / gpu_pack.MANIFEST).exists()  # travels with the call that runs
    work, _ = gpu_pack.assemble(tmp_path / "pack")
    for name, src in files.items():
        assert (work / name).read_bytes() == src.read_bytes()
    before = {name: (work / name).stat().st_mtime_ns for name in files}
    gpu_pack.assemble(tmp_path / "pack")  # already intact: nothing rewritten
    assert {name: (work / name).stat().st_mtime_ns for name in files} == before


def test_a_damaged_or_missing_parcel_is_named(tmp_path):
    packed = gpu_pack.write(_files(tmp_path), tmp_path / "pack", parcel_mib=1, meta={})
    first = packed.parcels[0]
    piece = next(first.glob("*.part"))
    piece.write_bytes(b"x" + piece.read_bytes()[1:])
    with pytest.raises(gpu_pack.PackError, match=f"carry {first.name} again"):
        gpu_pack.verify(first)
    with pytest.raises(gpu_pack.PackError, match=f"carry {first.name} again"):
        gpu_pack.assemble(tmp_path / "pack")
    assert gpu_pack.main(["verify", str(first)]) == 1
    assert gpu_pack.main(["verify", str(packed.parcels[1])]) == 0
    for f in packed.parcels[1].iterdir():
        f.unlink()
    packed.parcels[1].rmdir()
    with pytest.raises(gpu_pack.PackError, match=f"{packed.parcels[1].name} not under"):
        gpu_pack.assemble(tmp_path / "pack")


def test_a_time_budget_needs_checkpoints_to_resume_from():
    with pytest.raises(ValueError, match="checkpoint_steps"):
        TrainSettings(max_seconds=60)
    assert TrainSettings(max_seconds=60, checkpoint_steps=10).max_seconds == 60
