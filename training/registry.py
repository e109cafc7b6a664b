"""The adapter registry: `<root>/<task>/v0001/`, `v0002/`, ... each complete or absent.

A version folder holds the PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`), the
tokenizer, and `adapter.json`: base model, task, method, training configuration, data snapshot,
metrics, parent adapter, `content_hash` (of the adapter's weights and config), and `status`
(`ready`, or `rejected` when the weekly evaluation found it no better than the current one).
Generation uses the newest `ready` version of its task unless a version is pinned.

Tables record an adapter by its tag, `vNNNN-<first 8 hex of content_hash>`, not by the folder name
alone: version numbers restart when a registry is wiped, and a retrained `v0001` must not pass for
the old one (the generation job would skip its rows as already made).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from precis.errors import MissingPrerequisite

MANIFEST = "adapter.json"
_HASHED = ("adapter_config.json", "adapter_model.safetensors")  # what decides the adapter's outputs
_VERSION = re.compile(r"^v(\d{4,})$")
BASE = "base"


def versions(root: Path, task: str) -> list[Path]:
    folder = root / task
    if not folder.exists():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name) and (p / MANIFEST).exists()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def content_hash(folder: Path) -> str:
    """sha256 over the adapter's config and weights, each file's name and bytes."""
    h = hashlib.sha256()
    for name in _HASHED:
        path = folder / name
        if path.exists():
            h.update(name.encode() + b"\0")
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


SCOPES = ("all", "score")  # what generation applies an adapter to: everything, or a task's score only


def scope(folder: Path | None) -> str:
    """What generation applies the adapter to (its manifest's `scope`; `all` when it has none):
    `score` adapters were trained on a task's score alone, so the text before the score is
    generated with the adapter off and only the score is read with it on."""
    if folder is None:
        return "all"
    found = manifest(folder).get("scope", "all")
    if found not in SCOPES:
        raise ValueError(f"adapter {folder}: scope {found!r} is not one of {SCOPES}; fix its {MANIFEST}")
    return found


def tag(folder: Path | None) -> str:
    """What tables record for this adapter: `vNNNN-<8 hex>`, or `base` for no adapter. Adapters
    registered before content hashes were recorded are hashed on the fly."""
    if folder is None:
        return BASE
    digest = manifest(folder).get("content_hash") or content_hash(folder)
    return f"{folder.name}-{digest[:8]}"


def latest(root: Path, task: str) -> Path | None:
    """The newest version of `task` that was not rejected."""
    for folder in reversed(versions(root, task)):
        if manifest(folder).get("status", "ready") == "ready":
            return folder
    return None


def newest(root: Path, task: str, status: str) -> Path | None:
    found = [f for f in versions(root, task) if manifest(f).get("status") == status]
    return found[-1] if found else None


def select(root: Path, task: str, pin: str = "latest") -> Path | None:
    """`latest` (the newest ready version, or None for the base model), `base` (None), or a pinned `vNNNN`."""
    if pin == BASE:
        return None
    if pin == "latest":
        return latest(root, task)
    folder = root / task / pin
    if not (folder / MANIFEST).exists():
        known = ", ".join(p.name for p in versions(root, task)) or "none"
        raise MissingPrerequisite(f"adapter {task}/{pin} not found under {root} (versions: {known})",
                                  "pin an existing version or train one")
    return folder


def staging(root: Path, task: str) -> tuple[str, Path]:
    folder = root / task
    folder.mkdir(parents=True, exist_ok=True)
    nums = [int(p.name[1:]) for p in folder.iterdir() if _VERSION.match(p.name)]
    name = f"v{(max(nums) + 1 if nums else 1):04d}"
    tmp = folder / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return name, tmp


def publish(tmp: Path, name: str, data: dict[str, Any], status: str = "ready") -> Path:
    """Move a complete staging folder into place. `status="candidate"`: registered but not used by
    generation until promoted (the weekly training DAG evaluates it first)."""
    data = {"status": status, **data, "content_hash": content_hash(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(data, indent=2, default=str))
    final = tmp.parent / name
    tmp.rename(final)  # the version appears complete or not at all
    return final


def set_status(folder: Path, status: str, **extra: Any) -> None:
    data = manifest(folder) | {"status": status, **extra}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(folder / MANIFEST)


SHIPPED_FILES = ("adapter_config.json", "adapter_model.safetensors", MANIFEST, "curve.png")


def install(source: Path, root: Path) -> list[tuple[str, Path, bool]]:
    """Register every version under `source/<task>/vNNNN/` (adapters shipped with the repository)
    in the registry at `root` as that task's next version, unless a version with the same content
    hash is already there. Returns (task, folder, installed now)."""
    done = []
    for task_dir in sorted(p for p in source.iterdir() if p.is_dir()) if source.exists() else []:
        for shipped in versions(source, task_dir.name):
            digest = manifest(shipped).get("content_hash") or content_hash(shipped)
            present = next((f for f in versions(root, task_dir.name)
                            if (manifest(f).get("content_hash") or content_hash(f)) == digest), None)
            if present is not None:
                done.append((task_dir.name, present, False))
                continue
            name, tmp = staging(root, task_dir.name)
            for f in SHIPPED_FILES:
                if (shipped / f).exists():
                    shutil.copy2(shipped / f, tmp / f)
            # portable: the shipped folder relative to the repository (`adapters/relsum/v0001`), not this machine's path
            data = manifest(shipped) | {"installed_from": shipped.relative_to(source.parent).as_posix()}
            (tmp / MANIFEST).write_text(json.dumps(data, indent=2, default=str))
            final = tmp.parent / name
            tmp.rename(final)
            done.append((task_dir.name, final, True))
    return done


def merge(folder: Path, base_model: str | Path, out: Path) -> Path:
    """Merge the adapter into its base model and save a full model (for vLLM without LoRA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from generator.backends import load_adapter

    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32)
    merged = load_adapter(model, folder).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(folder if (folder / "tokenizer_config.json").exists() else base_model)).save_pretrained(str(out))
    (out / "merged_from.json").write_text(json.dumps({"adapter": str(folder), "base_model": str(base_model), **manifest(folder)}, indent=2, default=str))
    return out
