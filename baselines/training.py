"""Fine-tuning learned localizers on a train split: data, loss, loop, evaluation, shared by all.

A localizer network maps ImageNet-normalised images (B, 3, S, S) to mask logits (B, 1, h, w).
Training minimises BCE + soft Dice against the truth mask resized (NEAREST) to h x w, with
horizontal flips, AdamW and a cosine schedule; on CUDA under bf16 autocast. After training the
eval split is scored at the network's resolution (per-image mean IoU/F1 at 0.5, the scorer's
rule) and the numbers go into the checkpoint's metadata.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from baselines.base import Baseline
from benchmark.data.imageio import load_mask
from benchmark.data.split import Split, load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.dataset import read_resized
from benchmark.harness.interface import Batch, Output
from benchmark.harness.run import resolve_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - m) / s


class SegmentationLocalizer(Baseline):
    """A network giving mask logits, behind the harness interface (sigmoid at its resolution)."""

    kind = "localizer"

    def __init__(self, name: str, net: torch.nn.Module, image_size: int, *, batch_size: int = 32,
                 checkpoint: Path | None = None, checkpoint_id: str | None = None) -> None:
        super().__init__()
        self.name, self.net, self.image_size, self.batch_size = name, net.eval(), int(image_size), batch_size
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.checkpoint_id = checkpoint_id

    def modules(self) -> list[torch.nn.Module]:
        return [self.net]

    def predict(self, batch: Batch) -> Output:
        logits = self.net(normalize(batch.images.float()))
        return Output(masks=torch.sigmoid(logits.float()).squeeze(1))


def read_mask_resized(path: Path, size: int, image_id: str | None = None) -> np.ndarray:
    """The truth mask (> 127) as a (size, size) float32 0/1 array, resized with NEAREST."""
    mask = load_mask(path, image_id)
    if mask.shape != (size, size):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    return mask.astype(np.float32)


class MaskPairs(Dataset):
    """(image uint8 (3, S, S), mask float (1, M, M)) for every record of a split."""

    def __init__(self, split: Split, image_size: int, mask_size: int) -> None:
        self.split, self.image_size, self.mask_size = split, image_size, mask_size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.split.records[i]
        img, _ = read_resized(self.split.image_files[rec.image_id], self.image_size, rec.image_id)
        mask = read_mask_resized(self.split.mask_files[rec.image_id], self.mask_size, rec.image_id)
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.from_numpy(mask)[None]


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice: BCE for calibrated probabilities, Dice against the many small masks."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    device: str = "auto"
    workers: int | None = None
    seed: int = 0
    progress: bool = True
    weight_decay: float = 1e-4


def _loader(ds: Dataset, batch_size: int, workers: int, shuffle: bool, seed: int, cuda: bool) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=g,
                      pin_memory=cuda, drop_last=False, persistent_workers=workers > 0)


def fit(net: torch.nn.Module, data: Path, cfg: TrainConfig, *, image_size: int, mask_size: int,
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """Train `net` on `data`'s train split; returns a summary with the eval-split scores."""
    forward = forward or (lambda n, x: n(x))
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else min(8, max(0, (os.cpu_count() or 1) - 1))
    train = load_split(data, "train")
    loader = _loader(MaskPairs(train, image_size, mask_size), cfg.batch_size, workers, True, cfg.seed, cuda)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    flip_gen = torch.Generator().manual_seed(cfg.seed + 1)
    start = time.perf_counter()
    history = []
    bar = _bar(steps, cfg.progress)
    for epoch in range(cfg.epochs):
        total, count = 0.0, 0
        for images, masks in loader:
            flip = torch.rand(images.shape[0], generator=flip_gen) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            masks = torch.where(flip.view(-1, 1, 1, 1), masks.flip(-1), masks)
            x = normalize(images.to(device, non_blocking=True).float() / 255.0)
            y = masks.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = forward(net, x)
            loss = seg_loss(logits, y)
            if not torch.isfinite(loss):
                raise BenchmarkError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * images.shape[0]
            count += images.shape[0]
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.3f}")
        history.append(round(total / max(1, count), 5))
    bar.close()
    seconds = time.perf_counter() - start
    net.eval()
    scores = evaluate(net, data, image_size, mask_size, device, workers, forward)
    return {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
            "train_items": len(train), "loss": history, "seconds": round(seconds, 1), "device": str(device),
            "eval": scores}


@torch.inference_mode()
def evaluate(net: torch.nn.Module, data: Path, image_size: int, mask_size: int, device: torch.device,
             workers: int, forward) -> dict[str, float]:
    """Per-image mean IoU and F1 at 0.5 on the eval split, at the network's mask resolution."""
    try:
        split = load_split(data, "eval")
    except BenchmarkError:
        return {}
    ious, f1s = [], []
    for images, masks in _loader(MaskPairs(split, image_size, mask_size), 32, workers, False, 0, device.type == "cuda"):
        x = normalize(images.to(device).float() / 255.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(net, x)
        logits = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
        pred = (torch.sigmoid(logits) > 0.5).flatten(1).cpu()
        truth = (masks > 0.5).flatten(1)
        inter = (pred & truth).sum(1).float()
        union = (pred | truth).sum(1).float()
        np_, nt = pred.sum(1).float(), truth.sum(1).float()
        ious += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).tolist()
        f1s += torch.where(np_ + nt > 0, 2 * inter / (np_ + nt).clamp(min=1), torch.ones_like(union)).tolist()
    return {"eval_iou": round(float(np.mean(ious)), 4), "eval_f1": round(float(np.mean(f1s)), 4)}


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
