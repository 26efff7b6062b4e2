"""Which dtype each part of ForgeryTalker runs in: the release's mixed precision, or fp32.

The official model on a GPU (`blip2_t5_instruct.py` with `maybe_autocast`) runs
- the EVA vision encoder under fp16 autocast (its weights stay fp32: `vit_precision: fp32`);
- the T5 language model with bf16 *weights* (cast at construction) under bf16 autocast, its
  encoder input being the fp32 Q-Former queries concatenated with the bf16 token embeddings;
- everything else -- Face-ViT prompter, BERT tag encoder and gate, Q-Former, `t5_proj`, mask
  path -- in fp32 outside any autocast.
On a CPU it disables autocast. `RELEASE` mirrors the GPU policy, `FP32` runs every part in fp32
(autocast disabled even inside an outer one); without a policy the model follows whatever autocast
surrounds it (training uses that).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    vision_autocast: torch.dtype | None    # autocast dtype of the vision encoder (None: fp32)
    language_weights: torch.dtype          # T5 weight dtype
    language_autocast: torch.dtype | None  # autocast dtype of T5 (None: fp32)
    other_weights: torch.dtype = torch.float32  # every other part: fp32 weights, autocast off


FP32 = PrecisionPolicy("fp32", None, torch.float32, None)
RELEASE = PrecisionPolicy("release", torch.float16, torch.bfloat16, torch.bfloat16)
POLICIES = {p.name: p for p in (FP32, RELEASE)}


def region(policy: PrecisionPolicy | None, dtype: torch.dtype | None,
           device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of one part: none without a policy (follow the caller), autocast with
    `dtype`, or autocast switched off (fp32) when `dtype` is None."""
    if policy is None:
        return contextlib.nullcontext()
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def resolve(precision: str, device: torch.device) -> PrecisionPolicy:
    """The policy for a run: "release" or "fp32" as named; "auto" follows the harness, which wraps
    `predict` in autocast for mixed precision (its `--precision auto|bf16` on CUDA) and not for
    `--precision fp32`: the release's policy under an autocast on CUDA, fp32 otherwise."""
    if precision in POLICIES:
        return POLICIES[precision]
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r} (auto, {', '.join(POLICIES)})")
    mixed = device.type == "cuda" and torch.is_autocast_enabled(device.type)
    return RELEASE if mixed else FP32
