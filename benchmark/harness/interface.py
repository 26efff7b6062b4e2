"""The one small interface between the harness and a model.

The harness owns this contract; models (in `baselines/`) implement it and know nothing of
scoring. A model receives a batch of images and returns mask probabilities and/or explanations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch

Kind = Literal["localizer", "captioner", "both"]
Needs = Literal["nothing", "training", "checkpoint"]


@dataclass
class Batch:
    """Images as the model asked for them (`Model.image_size`), plus what identifies them.

    `images`: float tensor (B, 3, S, S) in [0, 1] (RGB, resized with the model's `resize_filter`, bilinear by default), on the
    harness's device. `sizes`: each original (height, width). `paths`: each image's file.
    """

    images: torch.Tensor
    ids: list[str]
    sizes: list[tuple[int, int]]
    paths: list[str] = field(default_factory=list)


@dataclass
class Output:
    """What a model says about a batch.

    `masks`: (B, h, w) forgery probabilities in [0, 1] (any resolution; the harness writes them
    as 8-bit grey PNGs, so grey levels keep the confidence), or None for a captioner.
    `captions`: B explanations, or None for a localizer.
    """

    masks: torch.Tensor | None = None
    captions: list[str] | None = None


@runtime_checkable
class Model(Protocol):
    """A forgery localizer and/or explainer, ready for inference.

    Optional attributes the harness reads when present: `batch_size` (its default batch),
    `resize_filter` (the PIL filter its inputs are resized with: bilinear unless it says otherwise),
    `checkpoint` and `checkpoint_id` (the folder it was loaded from and a hash of it: part of a
    run's identity, so a run is never resumed with a retrained model).
    """

    name: str
    kind: Kind
    image_size: int

    def predict(self, batch: Batch) -> Output: ...

    def to(self, device: torch.device) -> "Model": ...
