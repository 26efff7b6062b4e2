"""Decode images and masks the way the official pipeline does, with located errors.

Masks are read as 8-bit grey (`convert('L')`) and a pixel is forged when its level is > 127.
An 8-bit greyscale PNG, the usual mask, is decoded by libspng (`decode_grey_png`), anything else
by PIL.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.errors import DatasetError

try:
    import pyspng
except ImportError:  # a platform without its wheel: PIL decodes every mask
    pyspng = None

MASK_THRESHOLD = 127
MAX_FAST_CHUNKS = 4096  # a file split into more chunks is left to PIL, not walked here in Python
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"  # signature, then IHDR's length and type


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, read before anything is decoded; None if not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_HEAD):
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_grey_png(data: bytes) -> np.ndarray | None:
    """The (H, W) uint8 pixels of an 8-bit greyscale PNG, or None: then PIL is to decode it.

    A mask pass decodes ~20,000 small PNGs, and PIL spends more time in its Python layers than
    in inflating them; libspng decodes the same file into an array about 3x faster. It is used
    only on files PIL reads too, so that which masks are readable, and every error message,
    stay PIL's: colour type 0 at bit depth 8, every chunk's CRC right up to an IEND (libspng is
    run ignoring CRCs, PIL checks those before the pixel data), and a stream libspng accepts.
    The pixels of a valid PNG do not depend on the decoder. The caller bounds the pixel count
    from the IHDR first."""
    if pyspng is None or len(data) < 33 or not data.startswith(PNG_HEAD) or data[24:26] != b"\x08\x00":
        return None
    view, pos, end = memoryview(data), 8, len(data)
    for _ in range(MAX_FAST_CHUNKS):
        if pos + 12 > end:
            return None
        stop = pos + 12 + int.from_bytes(view[pos:pos + 4], "big")
        if stop > end or zlib.crc32(view[pos + 4:stop - 4]) != int.from_bytes(view[stop - 4:stop], "big"):
            return None
        if view[pos + 4:pos + 8] == b"IEND":
            break
        pos = stop
    else:
        return None
    try:
        grey = pyspng.load(data)
    except (RuntimeError, ValueError, MemoryError):
        return None
    return grey if grey.dtype == np.uint8 and grey.ndim == 2 else None


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
    """The mask as an (H, W) uint8 array of grey levels (PIL decodes, and explains, what libspng
    is not given)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    size = png_size(data)
    if size and size[0] * size[1] <= Image.MAX_IMAGE_PIXELS and (grey := decode_grey_png(data)) is not None:
        return grey
    return np.asarray(_open(path, "mask", image_id).convert("L"))


def load_mask(path: Path, image_id: str | None = None) -> np.ndarray:
    """The mask as an (H, W) bool array: grey level > 127 is forged."""
    return load_mask_grey(path, image_id) > MASK_THRESHOLD
