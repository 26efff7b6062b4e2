"""A small fixed image descriptor for retrieval: layout, structure, colour and noise, no training.

Blocks (each standardised with train-split statistics, then L2-normalised, so that none
dominates by its size): a 16x16 grey thumbnail (face layout, expression), a 16x16 gradient
magnitude map (structure), an 8-bin-per-channel colour histogram, and a 16x16 map of the local
noise-residual energy relative to the image's median (where the picture is smoother or noisier
than it should be — which is where edits are). Computed in torch on the harness's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines.forensic import grey, median3

GRID = 16
BINS = 8
BLOCKS = ("thumb", "gradient", "colour", "noise")


@torch.autocast("cuda", enabled=False)
def feature_blocks(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 3, S, S) in [0, 1] -> {block: (B, d)} raw features (always in float32)."""
    images = images.float()
    g = grey(images) / 255.0
    thumb = F.adaptive_avg_pool2d(g, GRID).flatten(1)
    gx = g[..., :, 1:] - g[..., :, :-1]
    gy = g[..., 1:, :] - g[..., :-1, :]
    grad = F.adaptive_avg_pool2d(gx[..., :-1, :].abs() + gy[..., :, :-1].abs(), GRID).flatten(1)
    colour = colour_histograms(images)
    residual = (g * 255 - median3(g * 255)).abs()
    energy = torch.log(F.adaptive_avg_pool2d(residual, GRID) + 0.05).flatten(1)
    noise = energy - energy.median(dim=1, keepdim=True).values
    return {"thumb": thumb, "gradient": grad, "colour": colour, "noise": noise}


def colour_histograms(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C*BINS): the share of each channel's pixels in each of BINS
    equal bins. One bincount, not a one-hot tensor BINS times the image's size (which was a third
    of a retrieval run)."""
    idx = (images.clamp(0, 1) * BINS).long().clamp_(max=BINS - 1)
    b, c = idx.shape[:2]
    flat = idx.flatten(2) + (torch.arange(b * c, device=idx.device) * BINS).view(b, c, 1)
    counts = torch.bincount(flat.flatten(), minlength=b * c * BINS).view(b, c * BINS)
    return counts.float() / idx[0, 0].numel()


def combine(blocks: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Standardise each block, L2-normalise it, weight it and concatenate; unit-norm overall."""
    parts = []
    for name in BLOCKS:
        x = (blocks[name] - stats[f"{name}.mean"].to(blocks[name].device)) / stats[f"{name}.std"].to(blocks[name].device)
        parts.append(F.normalize(x, dim=1) * weights.get(name, 1.0))
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def block_stats(blocks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name in BLOCKS:
        out[f"{name}.mean"] = blocks[name].mean(0)
        out[f"{name}.std"] = blocks[name].std(0).clamp(min=1e-6)
    return out
