"""Where baseline checkpoints live and how they are written: a folder with safetensors + JSON.

Every trained baseline writes `mmtt_model.json` (what the model is, how it was trained, a run
id) beside its tensors; a model without one has not been trained. The default folder is
`$MMTT_CHECKPOINTS/<model>` or, without that variable, `.mmtt/checkpoints/<model>` under the
current directory — the same for `mmtt train` and `mmtt run`, so one follows the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    import torch

ENV = "MMTT_CHECKPOINTS"
META = "mmtt_model.json"
TENSORS = "model.safetensors"


def default_dir(model: str) -> Path:
    return Path(os.environ.get(ENV) or ".mmtt/checkpoints") / model


def resolve(model: str, checkpoint: str | Path | None) -> Path:
    return Path(checkpoint) if checkpoint else default_dir(model)


def require(model: str, checkpoint: str | Path | None) -> Path:
    """The checkpoint folder of a trained model, or an error naming the command that makes it."""
    path = resolve(model, checkpoint)
    if not (path / META).is_file():
        where = f" --out {path}" if checkpoint else ""
        raise BenchmarkError(f"model '{model}' needs training first: no checkpoint at {path} "
                             f"(run `mmtt train {model} --data DIR{where}`, or pass --checkpoint DIR)")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((Path(path) / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{Path(path) / META}: unreadable checkpoint metadata: {exc}") from None
    return meta


def checkpoint_id(path: Path | None) -> str | None:
    """A short hash of a checkpoint's metadata (changes whenever it is retrained)."""
    if path is None or not (Path(path) / META).is_file():
        return None
    return hashlib.sha256((Path(path) / META).read_bytes()).hexdigest()[:16]


def write_meta(path: Path, model: str, meta: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    doc = {"model": model, "format": 1, "run_id": uuid.uuid4().hex,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
    tmp = path / f".{META}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path / META)


def save_tensors(path: Path, tensors: dict[str, "torch.Tensor"], name: str = TENSORS) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / name))


def load_tensors(path: Path, name: str = TENSORS) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    file = Path(path) / name
    if not file.is_file():
        raise BenchmarkError(f"{file}: checkpoint tensors not found")
    return load_file(str(file))
