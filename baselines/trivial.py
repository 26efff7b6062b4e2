"""Localizers that ignore the image: the floor any real localizer must clear.

`empty` predicts no forged pixel (IoU 0 on every manipulated image), `full` predicts every pixel
(recall 1, precision = the forged share), `centre-ellipse` predicts the central face area where
most MMTT edits land. Masks are 64x64; the scorer resizes them to the truth with NEAREST.
"""

from __future__ import annotations

import torch

from baselines.base import Baseline
from benchmark.harness.interface import Batch, Output

OUT = 64
# centre and semi-axes (image fractions) of the ellipse around the inner face of an aligned
# FFHQ / CelebA-HQ crop: eyes to chin, cheek to cheek
ELLIPSE = (0.5, 0.58, 0.21, 0.27)


def ellipse_mask(size: int = OUT, ellipse: tuple[float, float, float, float] = ELLIPSE) -> torch.Tensor:
    cx, cy, rx, ry = ellipse
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1).float()


class ConstantLocalizer(Baseline):
    """The same mask for every image."""

    kind = "localizer"
    image_size = 64  # the image is not looked at; a small decode size keeps the loader cheap
    batch_size = 64

    def __init__(self, name: str, mask: torch.Tensor) -> None:
        super().__init__()
        self.name = name
        self.mask = mask

    def predict(self, batch: Batch) -> Output:
        m = self.mask.to(batch.images.device)
        return Output(masks=m.expand(len(batch.ids), *m.shape).clone())


def build_empty() -> ConstantLocalizer:
    return ConstantLocalizer("empty", torch.zeros(OUT, OUT))


def build_full() -> ConstantLocalizer:
    return ConstantLocalizer("full", torch.ones(OUT, OUT))


def build_centre_ellipse() -> ConstantLocalizer:
    return ConstantLocalizer("centre-ellipse", ellipse_mask())
