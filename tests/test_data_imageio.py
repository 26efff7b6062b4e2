"""Mask decoding: libspng takes only the 8-bit greyscale PNGs PIL reads too, with PIL's pixels.

The PNGs here are written by hand (`_png`) so that every row filter, ancillary chunks and each
kind of damage can be chosen; PIL is the reference for the pixels and for what is readable.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from benchmark.data import imageio
from benchmark.data.imageio import decode_grey_png, load_mask_grey
from benchmark.scoring import maskpass

pytest.importorskip("pyspng")


def _chunk(kind: bytes, body: bytes, crc_delta: int = 0) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", (zlib.crc32(kind + body) + crc_delta) & 0xFFFFFFFF)


def _filtered(grey: np.ndarray, filters: np.ndarray) -> bytes:
    """The rows of `grey` each encoded with its PNG filter type (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    h, w = grey.shape
    x = grey.astype(np.int32)
    out = bytearray()
    for r in range(h):
        row, up = x[r], (x[r - 1] if r else np.zeros(w, np.int32))
        left = np.concatenate([[0], row[:-1]])
        upleft = np.concatenate([[0], up[:-1]])
        if filters[r] == 0:
            enc = row
        elif filters[r] == 1:
            enc = row - left
        elif filters[r] == 2:
            enc = row - up
        elif filters[r] == 3:
            enc = row - (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
            enc = row - pred
        out.append(int(filters[r]))
        out += (enc % 256).astype(np.uint8).tobytes()
    return bytes(out)


def _png(grey: np.ndarray, filters: np.ndarray | None = None, *, before: list[bytes] = (), after: list[bytes] = (),
         idat_parts: int = 1, idat_crc_delta: int = 0, iend: bool = True, depth: int = 8, colour: int = 0) -> bytes:
    h, w = grey.shape
    filters = np.zeros(h, int) if filters is None else filters
    data = zlib.compress(_filtered(grey, filters), 6)
    cut = np.linspace(0, len(data), idat_parts + 1).astype(int)
    idats = [_chunk(b"IDAT", data[a:b], idat_crc_delta) for a, b in zip(cut[:-1], cut[1:])]
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    return head + b"".join(before) + b"".join(idats) + b"".join(after) + (_chunk(b"IEND", b"") if iend else b"")


def _pil(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def _masks(rng: np.random.Generator):
    for h, w in [(1, 1), (3, 7), (17, 300), (224, 224), (64, 48)]:
        yield rng.integers(0, 256, (h, w), dtype=np.uint8)                       # grey levels
        yield (rng.random((h, w)) < 0.3).astype(np.uint8) * 255                   # a 0/255 mask
        yield np.repeat(np.arange(w, dtype=np.uint8)[None] * 7, h, axis=0)         # gradients


def test_every_row_filter_decodes_to_pils_pixels():
    rng = np.random.default_rng(0)
    n = 0
    for grey in _masks(rng):
        for filters in (np.full(grey.shape[0], f) for f in range(5)):
            data = _png(grey, filters)
            out = decode_grey_png(data)
            assert out is not None and out.dtype == np.uint8
            np.testing.assert_array_equal(out, grey)
            np.testing.assert_array_equal(out, _pil(data))
            n += 1
        mixed = _png(grey, rng.integers(0, 5, grey.shape[0]), idat_parts=3)
        np.testing.assert_array_equal(decode_grey_png(mixed), _pil(mixed))
    assert n == 75


def test_pil_written_masks_and_ancillary_chunks_decode_alike():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (50, 40), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, "L").save(buf, "PNG", optimize=True)
    assert np.array_equal(decode_grey_png(buf.getvalue()), grey)
    extra = [_chunk(b"gAMA", struct.pack(">I", 45455)), _chunk(b"tRNS", b"\x00\x00"),
             _chunk(b"tEXt", b"Comment\x00made by hand")]
    data = _png(grey, before=extra, after=[_chunk(b"tEXt", b"k\x00after the pixels")])
    assert Image.open(io.BytesIO(data)).mode == "L"
    np.testing.assert_array_equal(decode_grey_png(data), _pil(data))


def _saved(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_other_modes_and_formats_are_left_to_pil():
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    others = {
        "RGB": _saved(Image.fromarray(np.stack([grey] * 3, -1), "RGB")),
        "LA": _saved(Image.fromarray(np.stack([grey] * 2, -1), "LA")),
        "P": _saved(Image.fromarray(grey, "L").convert("P")),
        "1-bit": _saved(Image.fromarray(grey > 127)),
        "16-bit": _saved(Image.fromarray(grey.astype(np.uint16) * 257)),
        "JPEG": _saved(Image.fromarray(grey, "L"), "JPEG"),
        "empty": b"",
    }
    for name, data in others.items():
        assert decode_grey_png(data) is None, name


def test_damaged_files_are_left_to_pil_which_explains_them():
    grey = np.random.default_rng(3).integers(0, 256, (30, 30), dtype=np.uint8)
    good = _png(grey)
    damaged = {
        # PIL checks the CRC of every chunk before the pixels; libspng runs ignoring CRCs
        "bad CRC of an ancillary chunk": _png(grey, before=[_chunk(b"tEXt", b"k\x00v", crc_delta=1)]),
        "bad CRC of the pixel data": _png(grey, idat_crc_delta=1),
        "no IEND": _png(grey, iend=False),
        "more chunks than are walked": _png(grey, before=[_chunk(b"tEXt", b"k\x00v")] * imageio.MAX_FAST_CHUNKS),
        "cut in the pixel data": good[: len(good) // 2],
        "pixel data that is not zlib": good[:41] + b"\xff" * (len(good) - 53) + good[-12:],
    }
    for name, data in damaged.items():
        assert decode_grey_png(data) is None, name
    for name in ("bad CRC of an ancillary chunk", "cut in the pixel data"):
        with pytest.raises(OSError):   # PIL refuses these: so must the mask pass
            _pil(damaged[name])


def test_the_mask_pass_and_the_truth_reader_give_the_same_with_either_decoder(tmp_path, monkeypatch):
    """What libspng decodes and what PIL decodes go through the same counting: the scores of a
    mixed set (grey, binary, damaged, another mode) are the same with libspng off."""
    rng = np.random.default_rng(4)
    files = []
    for k, grey in enumerate(_masks(rng)):
        path = tmp_path / f"{k}.png"
        path.write_bytes(_png(grey, rng.integers(0, 5, grey.shape[0])))
        files.append(path)
    files[0].write_bytes(files[0].read_bytes()[:30])
    files[1].write_bytes(_saved(Image.fromarray(np.zeros((3, 7, 3), np.uint8), "RGB")))

    def read_all(decoded_by: list[str]):
        out = []
        for path in files:
            got = maskpass._open_mask(path.read_bytes())
            decoded_by.append(type(got).__name__)
            out.append(got if isinstance(got, str) else np.asarray(got.convert("L") if isinstance(got, Image.Image) else got))
        return out

    fast_by, slow_by = [], []
    fast = read_all(fast_by)
    assert fast_by[:2] == ["str", "PngImageFile"] and set(fast_by[2:]) == {"ndarray"}
    truths = [load_mask_grey(p) for p in files[1:]]
    monkeypatch.setattr(imageio, "pyspng", None)
    slow = read_all(slow_by)
    assert slow_by[0] == "str" and set(slow_by[1:]) == {"PngImageFile"}
    for a, b in zip(fast, slow):
        assert type(a) is type(b)
        if isinstance(a, str):
            assert a == b and "not a readable image" in a
        else:
            np.testing.assert_array_equal(a, b)
    for path, grey in zip(files[1:], truths):
        np.testing.assert_array_equal(load_mask_grey(path), grey)
