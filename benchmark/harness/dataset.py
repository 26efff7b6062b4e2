"""Read a split's images in worker processes and batch them for a model.

Images are decoded and resized on the CPU workers (PIL; bilinear unless the model declares
another `resize_filter`, e.g. ForgeryTalker's bicubic as in its official pipeline) and travel to the main process
as uint8 tensors — a quarter of the bytes of float — to be turned into floats on the device. A
file that cannot be read is never replaced by a blank image: the item carries its error, and the
run loop decides (a located error, or a recorded skip with `--skip-unreadable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmark.data.imageio import load_image

# The PIL filters a model may ask for with its optional `resize_filter` attribute.
RESIZE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                  "lanczos": Image.LANCZOS}
DEFAULT_RESIZE_FILTER = "bilinear"


def resize_filter_of(model: Any) -> str:
    """The resize filter a model declared (`resize_filter`), or bilinear."""
    name = getattr(model, "resize_filter", DEFAULT_RESIZE_FILTER)
    if name not in RESIZE_FILTERS:
        raise ValueError(f"model {getattr(model, 'name', model)!r}: unknown resize_filter {name!r} "
                         f"(known: {', '.join(RESIZE_FILTERS)})")
    return name


@dataclass(frozen=True)
class Item:
    """One image to run: its position in the split, its id and its file."""

    index: int
    image_id: str
    path: Path


def read_resized(path: Path, size: int, image_id: str | None = None,
                 resize_filter: str = DEFAULT_RESIZE_FILTER) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB image at `path` as a (size, size, 3) uint8 array, and its original (height, width).

    An image already at `size` is returned untouched (no resampling), so forensic models see the
    original pixels whenever the model size matches the data.
    """
    img = load_image(path, image_id)
    original = (img.height, img.width)
    if img.size != (size, size):
        img = img.resize((size, size), RESIZE_FILTERS[resize_filter])
    return np.asarray(img, dtype=np.uint8), original


class SplitImages(Dataset):
    """Items of a split as uint8 (3, S, S) tensors, or the reason they could not be read."""

    def __init__(self, items: Sequence[Item], image_size: int, resize_filter: str = DEFAULT_RESIZE_FILTER) -> None:
        self.items = list(items)
        self.image_size = int(image_size)
        self.resize_filter = resize_filter

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.items[position]
        try:
            array, size = read_resized(item.path, self.image_size, item.image_id, self.resize_filter)
        except Exception as exc:  # a broken file must not kill the worker: it is reported by the loop
            msg = str(exc)
            if not msg.startswith("image_id"):
                msg = f"image_id {item.image_id!r}: cannot read image {item.path}: {exc}"
            return {"index": item.index, "image": None, "size": (0, 0), "error": msg}
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return {"index": item.index, "image": tensor, "size": size, "error": None}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the readable images of a batch; keep the unreadable ones' errors beside them."""
    ok = [s for s in samples if s["error"] is None]
    return {
        "indices": [s["index"] for s in samples],
        "ok": [s["index"] for s in ok],
        "images": torch.stack([s["image"] for s in ok]) if ok else None,
        "sizes": [s["size"] for s in ok],
        "errors": [(s["index"], s["error"]) for s in samples if s["error"] is not None],
    }


def make_loader(dataset: SplitImages, batches: list[list[int]], *, workers: int, pin_memory: bool) -> DataLoader:
    """A loader yielding exactly `batches` (lists of dataset positions), in order.

    Batches are given explicitly rather than by a sampler so that a batch holds the same items in
    a fresh run, a resumed run and every rank of a sharded run: outputs then match byte for byte.
    """
    return DataLoader(dataset, batch_sampler=batches, num_workers=max(0, workers), collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=4 if workers > 0 else None)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float in [0, 1] on `device` (the division runs on the device)."""
    return images.to(device, non_blocking=True).float().div_(255.0)
