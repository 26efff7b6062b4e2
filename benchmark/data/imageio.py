"""Decode images and masks the way the official pipeline does, with located errors.

Masks are read as 8-bit grey (`convert('L')`) and a pixel is forged when its level is > 127.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.errors import DatasetError

MASK_THRESHOLD = 127


def _open(path: Path, what: str, image_id: str | None) -> Image.Image:
    where = f"image_id {image_id!r}: " if image_id else ""
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise DatasetError(f"{where}{what} file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{where}cannot decode {what} {path}: {exc}") from None


def load_image(path: Path, image_id: str | None = None) -> Image.Image:
    """The RGB image at `path`."""
    return _open(Path(path), "image", image_id).convert("RGB")


def load_mask_grey(path: Path, image_id: str | None = None) -> np.ndarray:
    """The mask as an (H, W) uint8 array of grey levels."""
    return np.asarray(_open(Path(path), "mask", image_id).convert("L"))


def load_mask(path: Path, image_id: str | None = None) -> np.ndarray:
    """The mask as an (H, W) bool array: grey level > 127 is forged."""
    return load_mask_grey(path, image_id) > MASK_THRESHOLD
