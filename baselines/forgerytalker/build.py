"""ForgeryTalker checkpoints on disk, and the registry builders the harness calls.

A checkpoint is a local folder:

    config.json          ForgeryTalkerConfig (all sizes)
    model.safetensors    the weights, this implementation's names; tied tensors stored once
                         (the aliases are listed in the file's metadata)
    t5_tokenizer/        the language model's tokenizer (Flan-T5's, or the tiny one)
    bert_tokenizer/      the Q-Former / tag-encoder tokenizer (bert-base-uncased's, or the tiny one)

`mmtt convert forgerytalker` writes one from the official release; `mmtt train forgerytalker-tiny`
writes one from the mini-MMTT. Loading builds the model on the meta device and assigns the
stored tensors, so even the 4.9 B-parameter model loads without a random initialisation pass.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.forgerytalker.config import RESIZE_FILTER, ForgeryTalkerConfig
from baselines.forgerytalker.model import ForgeryTalker
from baselines.forgerytalker.precision import PrecisionPolicy
from baselines.forgerytalker.precision import resolve as resolve_precision_policy
from baselines.forgerytalker.tokenization import BERT_DIR, T5_DIR, Tokenizers
from benchmark.errors import BenchmarkError
from benchmark.harness.interface import Batch, Output

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ALIASES_KEY = "forgerytalker.aliases"


# ---------------------------------------------------------------------- save / load
def tensor_aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """{alias: kept name} for state-dict entries that are the same tensor (tied weights)."""
    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def save_weights(model: nn.Module, path: Path, extra_metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors, each tied tensor once; the aliases go in the metadata."""
    from safetensors.torch import save_file

    state = model.state_dict()
    aliases = tensor_aliases(state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if k not in aliases}
    metadata = {"format": "pt", ALIASES_KEY: json.dumps(aliases, sort_keys=True)}
    metadata.update(extra_metadata or {})
    save_file(tensors, str(path), metadata=metadata)


def save_checkpoint(model: ForgeryTalker, tokenizers: Tokenizers, out: Path, info: dict[str, Any] | None = None,
                    *, name: str = "forgerytalker") -> Path:
    """Write a complete checkpoint folder (see the module docstring) plus the project's
    `mmtt_model.json` (model name, run id, `info`), which `mmtt models` and run identities read."""
    from baselines import checkpoint as ckpt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save(out / CONFIG_NAME)
    save_weights(model, out / WEIGHTS_NAME)
    tokenizers.save(out)
    ckpt.write_meta(out, name, json.loads(json.dumps({"variant": model.config.variant, **(info or {})}, default=str)))
    return out


def _get(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


def _materialize_buffers(model: ForgeryTalker, device: torch.device) -> None:
    """Non-persistent buffers are not in the file: rebuild them where the meta device left them empty."""
    for name, buf in list(model.named_buffers()):
        if not buf.is_meta:
            continue
        owner, leaf = _get(model, name)
        if leaf == "position_ids":
            value = torch.arange(buf.shape[-1], device=device).expand(buf.shape).clone()
        elif leaf == "token_type_ids":
            value = torch.zeros(buf.shape, dtype=buf.dtype, device=device)
        elif leaf == "image_mean":
            value = torch.tensor(model.config.image_mean, device=device).view(buf.shape)
        elif leaf == "image_std":
            value = torch.tensor(model.config.image_std, device=device).view(buf.shape)
        else:
            raise RuntimeError(f"cannot rebuild buffer {name}")
        owner._buffers[leaf] = value.to(dtype=buf.dtype)


def load_weights_into(model: nn.Module, path: Path, device: torch.device | str = "cpu") -> None:
    """Strictly load a safetensors file written by `save_weights` into `model` (possibly on meta):
    a missing or unexpected name is an error naming the names."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    aliases: dict[str, str] = json.loads(metadata.get(ALIASES_KEY, "{}"))
    tensors = load_file(str(path), device=str(device))
    expected = set(model.state_dict())
    have = set(tensors) | set(aliases)
    # checkpoints written before the Q-Former's position_ids was kept lack it: rebuilt (arange) below
    expected -= {k for k in expected - have if k.endswith("position_ids")}
    missing, unexpected = sorted(expected - have), sorted(have - expected)
    if missing or unexpected:
        raise BenchmarkError(f"{path}: weights do not match the config: " + _name_keys(missing, unexpected))
    model.load_state_dict(tensors, strict=False, assign=True)
    for alias, kept in aliases.items():  # re-tie exactly what was tied when saved
        owner, leaf = _get(model, alias)
        kept_owner, kept_leaf = _get(model, kept)
        setattr(owner, leaf, getattr(kept_owner, kept_leaf))


def _name_keys(missing: list[str], unexpected: list[str], shown: int = 6) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:shown])}{more}")
    return "; ".join(parts)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_checkpoint(folder: Path, device: str | torch.device | None = "cpu") -> ForgeryTalker:
    """A ready model (eval mode, tokenizers attached) from a checkpoint folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: checkpoint directory not found")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, T5_DIR, BERT_DIR) if not (folder / n).exists()]
    if missing:
        raise BenchmarkError(f"{folder}: not a ForgeryTalker checkpoint (missing {', '.join(missing)})")
    dev = resolve_device(device)
    try:
        config = ForgeryTalkerConfig.load(folder / CONFIG_NAME)
    except (ValueError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{folder / CONFIG_NAME}: {exc}") from None
    tokenizers = Tokenizers.load(folder)
    with torch.device("meta"):
        model = ForgeryTalker(config)
    load_weights_into(model, folder / WEIGHTS_NAME, dev)
    _materialize_buffers(model, dev)
    model.tokenizers = tokenizers
    return model.to(dev).eval()


# ---------------------------------------------------------------------- the harness's model
class ForgeryTalkerRunner:
    """The harness interface (`benchmark.harness.interface.Model`) around a loaded ForgeryTalker:
    masks and explanations from one batched pass."""

    kind = "both"
    resize_filter = RESIZE_FILTER  # the harness resizes this model's inputs as the official pipeline does

    def __init__(self, model: ForgeryTalker, *, name: str = "forgerytalker", precision: str = "auto",
                 generation: dict[str, Any] | None = None, batch_size: int = 16,
                 checkpoint: str | None = None, checkpoint_id: str | None = None) -> None:
        self.model = model.eval()
        self.name = name
        self.image_size = model.config.vision.image_size
        self.precision = precision
        self.generation = dict(generation or {})
        self.batch_size = batch_size
        self.checkpoint = checkpoint          # the harness records these in the run identity
        self.checkpoint_id = checkpoint_id

    def to(self, device: torch.device | str) -> "ForgeryTalkerRunner":
        self.model.to(resolve_device(device))
        return self

    def _policy(self) -> PrecisionPolicy | None:
        """The release's mixed precision or fp32 (see `precision.py`), or None for a uniform
        autocast the user asked for explicitly (`precision=bf16|fp16`)."""
        if self.precision in ("bf16", "bfloat16", "fp16", "float16"):
            return None
        try:
            return resolve_precision_policy({"float32": "fp32"}.get(self.precision, self.precision), self.model.device)
        except ValueError:
            raise BenchmarkError(f"unknown precision '{self.precision}' "
                                 "(use auto, release, fp32, bf16 or fp16)") from None

    def _uniform_autocast(self) -> contextlib.AbstractContextManager:
        dev = self.model.device
        dtype = torch.float16 if self.precision in ("fp16", "float16") else torch.bfloat16
        if dev.type == "cpu" and dtype is torch.float16:
            return contextlib.nullcontext()  # no fp16 autocast on CPU: stay in fp32
        return torch.autocast(device_type=dev.type, dtype=dtype)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        images = batch.images.to(self.model.device)
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bicubic",
                                   align_corners=False, antialias=True).clamp(0, 1)
        policy = self._policy()
        if policy is not self.model.precision:
            self.model.set_precision(policy)
        with self._uniform_autocast() if policy is None else contextlib.nullcontext():
            pred = self.model.generate(self.model.normalize(images), **self.generation)
        return Output(masks=pred.masks.float().clamp(0, 1).cpu(), captions=list(pred.captions))


_GENERATION_KEYS = ("num_beams", "max_new_tokens", "min_length", "repetition_penalty", "length_penalty",
                    "beam_scoring")


def _build(name: str, checkpoint: str | Path | None, device: str | torch.device | None, precision: str | None,
           options: dict[str, Any], how: str, batch_size: int) -> ForgeryTalkerRunner:
    from baselines import checkpoint as ckpt

    unknown = sorted(set(options) - set(_GENERATION_KEYS) - {"batch_size"})
    if unknown:
        raise BenchmarkError(f"model '{name}': unknown option(s) {', '.join(unknown)} "
                             f"(known: device, precision, batch_size, {', '.join(_GENERATION_KEYS)})")
    path = ckpt.resolve(name, checkpoint)
    if not (path / CONFIG_NAME).is_file():
        raise BenchmarkError(f"model '{name}' has no checkpoint at {path} ({how}, or pass --checkpoint DIR)")
    model = load_checkpoint(path, device)
    generation = {k: options[k] for k in _GENERATION_KEYS if options.get(k) is not None}
    return ForgeryTalkerRunner(model, name=name, precision=precision or "auto", generation=generation,
                               batch_size=int(options.get("batch_size") or batch_size), checkpoint=str(path),
                               checkpoint_id=ckpt.checkpoint_id(path))


def build_forgerytalker(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu",
                        precision: str | None = "auto", **options: Any) -> ForgeryTalkerRunner:
    """The paper's model from a converted checkpoint folder (`mmtt convert forgerytalker`).

    Loaded on `device` (default cpu; the harness then moves it); `precision` auto = the release's
    mixed precision on CUDA when the harness runs mixed (its default there; `--precision fp32` gives
    fp32 throughout), `release` / `fp32` force one; decoding options (num_beams, max_new_tokens, ...)
    override the official ones.
    """
    return _build("forgerytalker", checkpoint, device, precision, options,
                  "convert the official weights first: `mmtt convert forgerytalker ... --out DIR`", 16)


def build_forgerytalker_tiny(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu",
                             precision: str | None = "auto", **options: Any) -> ForgeryTalkerRunner:
    """The small model trained on the embedded mini-MMTT (`mmtt train forgerytalker-tiny`)."""
    return _build("forgerytalker-tiny", checkpoint, device, precision, options,
                  "train it first: `mmtt train forgerytalker-tiny --data DIR`", 32)
