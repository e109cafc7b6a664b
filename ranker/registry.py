"""Versioned ranker folders: `<root>/v0001/`, `<root>/v0002/`, ... each complete or absent.

A folder holds `hf/` (the PyTorch model and tokenizer), the ONNX graphs, and `ranker.json`: what
kind it is (trained or untrained head), the base model, the training configuration, the query
split, the data snapshot it saw, its metrics and the ONNX parity figures.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from precis.errors import NoRanker

MANIFEST = "ranker.json"
_VERSION = re.compile(r"^v(\d{4,})$")


def versions(root: Path) -> list[Path]:
    if not root.exists():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _VERSION.match(p.name) and (p / MANIFEST).exists()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def latest(root: Path, kind: str = "trained") -> Path | None:
    for folder in reversed(versions(root)):
        if manifest(folder).get("kind") == kind:
            return folder
    return None


def resolve(root: Path, version: str | None = None, kind: str = "trained") -> Path:
    """A pinned version (`v0003`) or the newest of `kind`; a clear error when there is none."""
    if version:
        folder = root / version
        if not (folder / MANIFEST).exists():
            raise NoRanker(f"ranker {version} not found under {root}", "`ls` that folder for the versions there")
        return folder
    folder = latest(root, kind)
    if folder is None:
        flag = " --untrained" if kind == "untrained" else ""
        raise NoRanker(f"no {kind} ranker under {root}", f"run `precis train ranker{flag}` first")
    return folder


def staging(root: Path) -> tuple[str, Path]:
    """The next version's name and a temporary folder to build it in."""
    root.mkdir(parents=True, exist_ok=True)
    nums = [int(p.name[1:]) for p in root.iterdir() if _VERSION.match(p.name)]
    name = f"v{(max(nums) + 1 if nums else 1):04d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return name, tmp


def publish(tmp: Path, name: str, data: dict[str, Any]) -> Path:
    (tmp / MANIFEST).write_text(json.dumps(data, indent=2, default=str))
    final = tmp.parent / name
    tmp.rename(final)  # the version appears complete or not at all
    return final
