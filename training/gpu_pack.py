"""The GPU pack's format: files cut into parcels that each fit one device call, with sha256 throughout.

A lent GPU machine reaches no registry and receives at most 64 MiB per call (the working tree
included), but keeps ignored folders between calls while it stays warm. So a pack is a folder of
parcels, `parcel-1/`, `parcel-2/`, ..., each under a size budget, carried one per call:

    <pack>/parcel-K/parcel.json     {"parcel": K, "of": N, "pieces": {name: {sha256, size}}}
    <pack>/parcel-K/<NNNN>.part     consecutive pieces of the pack's files, largest files first
    <pack>/parcel-N/manifest.json   (last parcel) every file: sha256, size, encoding (`gzip` where
                                    that saves 2% or more: the GGUF and half-precision weights save
                                    5-10%, the data several times) and its pieces in order, plus
                                    what the packer recorded (`meta`: data snapshot, models, ...)

`verify` checks one parcel on arrival (a transfer-only call's whole command); `assemble` checks
that every parcel arrived intact, joins the pieces into `<pack>/work/` and checks each file's
sha256 (files already assembled and intact are left alone, so a second run call costs nothing).
Standard library (and `precis.errors`, which imports nothing) only: this runs on the device before
anything is installed there.

    python3 -m training.gpu_pack verify .gpupack/parcel-1
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from precis.errors import PackError

MANIFEST = "manifest.json"
PARCEL = "parcel.json"
WORK = "work"
MiB = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Packed:
    folder: Path
    parcels: list[Path]
    files: int
    bytes: int

    def __str__(self) -> str:
        sizes = ", ".join(f"{p.name} {sum(f.stat().st_size for f in p.iterdir()) / MiB:.1f} MiB" for p in self.parcels)
        return f"{self.files} files, {self.bytes / MiB:.1f} MiB in {len(self.parcels)} parcel(s): {sizes}"


def write(files: dict[str, Path], out: Path, parcel_mib: float, meta: dict) -> Packed:
    """Cut `files` (pack path -> source file) into parcels of at most `parcel_mib` MiB under `out`
    (replaced). The largest files go first, so the small ones (data, wheels) and the manifest
    travel in the last parcel, with the call that runs."""
    budget = int(parcel_mib * MiB)
    if budget < MiB:
        raise ValueError(f"parcel_mib must be at least 1, got {parcel_mib}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    encoded = out / ".encoded"
    encoded.mkdir()
    sources: dict[str, tuple[Path, str]] = {}
    for name, src in files.items():
        packed = encoded / f"{len(sources):04d}.gz"
        with src.open("rb") as f, gzip.open(packed, "wb", compresslevel=6) as z:
            shutil.copyfileobj(f, z, MiB)
        small = packed.stat().st_size <= 0.98 * src.stat().st_size
        sources[name] = (packed, "gzip") if small else (src, "identity")
    order = sorted(files, key=lambda k: (-sources[k][0].stat().st_size, k))
    entries: dict[str, dict] = {}
    parcels: list[dict] = []
    used = budget  # forces a first parcel
    piece = 0
    for name in order:
        src, encoding = sources[name]
        entry = {"sha256": sha256(files[name]), "size": files[name].stat().st_size, "encoding": encoding, "pieces": []}
        remaining = src.stat().st_size
        with src.open("rb") as f:
            while True:
                if used >= budget:
                    parcels.append({"parcel": len(parcels) + 1, "pieces": {}})
                    (out / f"parcel-{len(parcels)}").mkdir()
                    used = 0
                data = f.read(min(budget - used, remaining))
                piece += 1
                part = f"{piece:04d}.part"
                (out / f"parcel-{len(parcels)}" / part).write_bytes(data)
                parcels[-1]["pieces"][part] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                entry["pieces"].append([len(parcels), part])
                used += len(data)
                remaining -= len(data)
                if not remaining:  # an empty file is one empty piece
                    break
        entries[name] = entry
    shutil.rmtree(encoded)
    for p in parcels:
        p["of"] = len(parcels)
        (out / f"parcel-{p['parcel']}" / PARCEL).write_text(json.dumps(p, indent=1))
    last = out / f"parcel-{len(parcels)}"
    (last / MANIFEST).write_text(json.dumps({"meta": meta, "files": entries}, indent=1, default=str))
    return Packed(out, [out / f"parcel-{p['parcel']}" for p in parcels], len(entries),
                  sum(e["size"] for e in entries.values()))


def verify(parcel: Path) -> dict:
    """The parcel's description, after checking every piece's size and sha256."""
    spec_file = parcel / PARCEL
    if not spec_file.exists():
        raise PackError(f"{parcel} holds no {PARCEL}: it is not a parcel, or it did not arrive")
    spec = json.loads(spec_file.read_text())
    for part, want in spec["pieces"].items():
        path = parcel / part
        if not path.exists():
            raise PackError(f"{path} is missing: carry {parcel.name} again")
        if path.stat().st_size != want["size"] or sha256(path) != want["sha256"]:
            raise PackError(f"{path} does not match its sha256: carry {parcel.name} again")
    return spec


def manifest(pack: Path) -> dict:
    found = sorted(pack.glob(f"parcel-*/{MANIFEST}"))
    if not found:
        raise PackError(f"no {MANIFEST} under {pack}/parcel-*: carry the last parcel")
    return json.loads(found[-1].read_text())


def assemble(pack: Path) -> tuple[Path, dict]:
    """(`<pack>/work`, the manifest), every file joined from its pieces and checked."""
    m = manifest(pack)
    work = pack / WORK
    needed = sorted({p for e in m["files"].values() for p, _ in e["pieces"]})
    missing = [f"parcel-{p}" for p in needed if not (pack / f"parcel-{p}" / PARCEL).exists()]
    if missing:
        raise PackError(f"{', '.join(missing)} not under {pack}: carry each in its own call first (they stay while "
                        "the machine is warm)")
    verified: set[int] = set()
    for name, entry in m["files"].items():
        target = work / name
        if target.exists() and target.stat().st_size == entry["size"] and sha256(target) == entry["sha256"]:
            continue
        for p in {p for p, _ in entry["pieces"]} - verified:
            verify(pack / f"parcel-{p}")
            verified.add(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        joined = target.with_name(target.name + ".joined")
        with joined.open("wb") as f:
            for p, part in entry["pieces"]:
                with (pack / f"parcel-{p}" / part).open("rb") as src:
                    shutil.copyfileobj(src, f, MiB)
        tmp = target.with_name(target.name + ".tmp")
        if entry.get("encoding", "identity") == "gzip":
            with gzip.open(joined, "rb") as z, tmp.open("wb") as f:
                shutil.copyfileobj(z, f, MiB)
            joined.unlink()
        else:
            joined.replace(tmp)
        if sha256(tmp) != entry["sha256"]:
            raise PackError(f"{name} does not match its sha256 once joined")
        tmp.replace(target)
    return work, m


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "verify":
        print("usage: python3 -m training.gpu_pack verify PARCEL_DIR", file=sys.stderr)
        return 2
    try:
        spec = verify(Path(args[1]))
    except PackError as e:
        print(f"gpu_pack: error: {e}", file=sys.stderr)
        return 1
    size = sum(v["size"] for v in spec["pieces"].values())
    print(f"{args[1]}: parcel {spec['parcel']} of {spec['of']}, {len(spec['pieces'])} piece(s), {size / MiB:.1f} MiB, "
          "sha256 ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
