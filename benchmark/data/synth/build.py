"""Write a mini-MMTT in the official layout: plan the items, forge them in parallel, save.

The plan (ids, paths, family, source, split of every item) comes from `seed` alone; each item
is then made from its own generator seeded with (seed, index), and its explanation from
(seed, index, 1). Workers write the image and mask files themselves and send back the record;
the parent writes the split JSONs in plan order. So the files are byte-identical for the same
(n, seed, size) whatever the number of workers.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from benchmark.data.record import method_of, source_of
from benchmark.data.regions import multilabel
from benchmark.data.synth.explain import explain
from benchmark.data.synth.forge import ATTRIBUTES, FAMILIES, Forgery, forge

SPLITS: tuple[str, ...] = ("train", "eval", "test")
SPLIT_SHARES: tuple[float, ...] = (0.70, 0.15, 0.15)
KINDS: tuple[str, ...] = ("sd", "mat", "e4s", "attribute")
_INSTANCE_PREFIX = {"mat": "1", "sd": "2", "e4s": "3"}  # attribute items: the bare 5-digit number
_FOLDER = {"sd": "sd_inpaint", "mat": "mat_gan", "e4s": "e4s"}
_SAMPLES = {"celeb512": "samples_celeb", "FFHQ512": "samples_ffhq"}
ATTRIBUTE_SOURCE = "face_attribute_image"
JPEG_QUALITY = 92
PNG_LEVEL = 1
MAX_ITEMS = 300_000


@dataclass(frozen=True)
class ItemSpec:
    """Where one item goes and what it is: decided by the plan before anything is drawn."""

    index: int
    split: str
    method: str   # "sd" | "mat" | "e4s" | an attribute name
    source: str   # "celeb512" | "FFHQ512" | "face_attribute_image"
    number: int

    @property
    def image_id(self) -> str:
        return f"{self.method}_{self.number:05d}"

    @property
    def instance_id(self) -> str:
        prefix = _INSTANCE_PREFIX.get(self.method, "")
        return f"{prefix}{self.number:05d}"

    @property
    def img_path(self) -> str:
        if self.method in _FOLDER:
            return f"dataset/{self.source}/{_FOLDER[self.method]}/{_SAMPLES[self.source]}/{self.number:05d}.png"
        return f"dataset/{ATTRIBUTE_SOURCE}/{self.method}/{self.number:05d}.jpg"

    @property
    def mask_path(self) -> str:
        if self.method in _FOLDER:
            return f"dataset/{self.source}/{_FOLDER[self.method]}/masks/{self.number:05d}.png"
        return f"dataset/{ATTRIBUTE_SOURCE}/{self.method}/mask/{self.number:05d}.png"

    @property
    def family(self) -> str:
        return FAMILIES.get(self.method, "attribute-editing")


def split_sizes(n: int) -> tuple[int, int, int]:
    """70/15/15, rounded, summing to n."""
    train = int(round(n * SPLIT_SHARES[0]))
    val = int(round(n * SPLIT_SHARES[1]))
    return train, val, n - train - val


def plan(n: int, seed: int = 0) -> list[ItemSpec]:
    """Every item of a mini-MMTT of n items: split, family (balanced inside each split),
    source and a unique 5-digit number per id prefix (attribute numbers unique overall, as
    they double as instance ids)."""
    if not 1 <= n <= MAX_ITEMS:
        raise ValueError(f"n must be between 1 and {MAX_ITEMS}, got {n}")
    rng = np.random.default_rng([seed, 0x6D6D7474])
    kinds: list[tuple[str, str]] = []
    for split, count in zip(SPLITS, split_sizes(n)):
        start = int(rng.integers(0, 4))
        ks = [KINDS[(start + i) % 4] for i in range(count)]
        kinds.extend((split, k) for k in rng.permutation(ks))
    methods, sources = [], []
    for _, kind in kinds:
        if kind == "attribute":
            methods.append(str(ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]))
            sources.append(ATTRIBUTE_SOURCE)
        else:
            methods.append(kind)
            sources.append("celeb512" if rng.random() < 0.5 else "FFHQ512")
    pools: dict[str, Iterator[int]] = {}
    need = Counter(m if m in _FOLDER else "attribute" for m in methods)
    for key in ("sd", "mat", "e4s", "attribute"):
        pools[key] = iter(int(v) for v in rng.choice(100_000, size=need.get(key, 0), replace=False))
    specs = []
    for i, ((split, _), method, source) in enumerate(zip(kinds, methods, sources)):
        number = next(pools[method if method in _FOLDER else "attribute"])
        specs.append(ItemSpec(i, split, method, source, number))
    return specs


@dataclass
class Item:
    """A generated item before it is saved: the forgery, its explanation and its record."""

    spec: ItemSpec
    forgery: Forgery
    caption: str

    @property
    def authentic(self) -> np.ndarray:
        return self.forgery.authentic

    @property
    def forged(self) -> np.ndarray:
        return self.forgery.forged

    @property
    def mask(self) -> np.ndarray:
        return self.forgery.mask

    def record(self) -> dict[str, Any]:
        s = self.spec
        return {"image_id": s.image_id, "instance_id": s.instance_id, "img_path": s.img_path,
                "mask_path": s.mask_path, "caption": self.caption, "multilabel": multilabel(self.caption)}


def make_item(spec: ItemSpec, seed: int = 0, size: int = 256) -> Item:
    """Forge and explain one planned item (nothing is written)."""
    rng = np.random.default_rng([seed, spec.index])
    style = spec.source if spec.source in _SAMPLES else "celeb512"
    f = forge(rng, spec.method, style, size)
    caption = explain(f, np.random.default_rng([seed, spec.index, 1]))
    return Item(spec, f, caption)


def sample(index: int, n: int = 2000, seed: int = 0, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(authentic, forged, mask) of item `index` of the dataset generate(n, seed, size) writes,
    before the forged image is saved (PNG, or JPEG for attribute edits)."""
    item = make_item(plan(n, seed)[index], seed, size)
    return item.authentic, item.forged, item.mask


def write_png(path: Path, array: np.ndarray, level: int = PNG_LEVEL) -> None:
    """An 8-bit greyscale (HxW) or RGB (HxWx3) PNG with the 'Up' filter on every row and
    zlib at `level` matching runs only: faster than the general-purpose encoder, which tries
    several filters per row, and than zlib's default search for long matches, which noisy
    photographs hardly have (photos ~5% larger and ~20% faster to write; masks smaller and
    4x faster)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    rows = a.reshape(h, w * channels)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up (the row above row 0 counts as zeros)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", z.compress(raw) + z.flush())
                 + chunk(b"IEND", b""))


def _save(item: Item, root: Path) -> None:
    s = item.spec
    if s.img_path.endswith(".jpg"):
        Image.fromarray(item.forged).save(root / s.img_path, "JPEG", quality=JPEG_QUALITY)
    else:
        write_png(root / s.img_path, item.forged)
    write_png(root / s.mask_path, item.mask.view(np.uint8) * np.uint8(255))


def _init_worker() -> None:
    """One BLAS thread per worker: the items are the parallelism, and OpenBLAS threads spinning
    between the small matrix products of `smooth_noise` doubled the CPU time of every item.
    And let glibc keep freed memory instead of returning it to the kernel: rendering allocates
    numpy temporaries of a few hundred KB by the thousand, and giving them back means
    page-faulting them in again every time (a third of a worker's system time)."""
    threadpool_limits(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD


def _work(task: tuple[ItemSpec, int, int, str]) -> dict[str, Any]:
    spec, seed, size, root = task
    item = make_item(spec, seed, size)
    _save(item, Path(root))
    return {"index": spec.index, "split": spec.split, "record": item.record(),
            "fraction": item.forgery.fraction, "words": len(item.caption.split())}


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4),
            "max": round(float(np.max(values)), 4)}


def generate(out_dir: Path, n: int = 2000, seed: int = 0, size: int = 256, workers: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Write a mini-MMTT of `n` items into `out_dir` in the official layout
    (`{train,eval,test}-mutilabel.json` + `dataset/...` images and masks) and return counts
    per split, family and source, mask and caption statistics, and the time taken."""
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}")
    t0 = time.perf_counter()
    root = Path(out_dir)
    specs = plan(n, seed)
    for folder in sorted({str(Path(p).parent) for s in specs for p in (s.img_path, s.mask_path)}):
        (root / folder).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(int(workers or os.cpu_count() or 1), n))
    tasks = [(s, seed, size, str(root)) for s in specs]
    results: list[dict[str, Any]] = [None] * n  # type: ignore[list-item]
    bar = _progress(n, progress)
    if workers == 1:
        with threadpool_limits(1):
            for r in map(_work, tasks):
                results[r["index"]] = r
                bar.update(1)
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        chunk = max(1, min(8, n // (workers * 6)))
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for r in pool.imap_unordered(_work, tasks, chunksize=chunk):
                results[r["index"]] = r
                bar.update(1)
    bar.close()
    summary: dict[str, Any] = {"out_dir": str(root), "n": n, "seed": seed, "size": size, "workers": workers,
                               "splits": {}}
    for split in SPLITS:
        recs = [r["record"] for r in results if r["split"] == split]
        text = json.dumps(recs, indent=2, ensure_ascii=False) + "\n"
        (root / f"{split}-mutilabel.json").write_text(text, encoding="utf-8")
        summary["splits"][split] = {
            "n": len(recs),
            "methods": dict(sorted(Counter(method_of(r["image_id"]) for r in recs).items())),
            "sources": dict(sorted(Counter(source_of(r["img_path"]) for r in recs).items())),
        }
    summary["methods"] = dict(sorted(Counter(method_of(r["record"]["image_id"]) for r in results).items()))
    summary["sources"] = dict(sorted(Counter(source_of(r["record"]["img_path"]) for r in results).items()))
    summary["attributes"] = dict(sorted(Counter(s.method for s in specs if s.method not in _FOLDER).items()))
    summary["mask_fraction"] = _stats([r["fraction"] for r in results])
    summary["caption_words"] = _stats([r["words"] for r in results])
    seconds = time.perf_counter() - t0
    summary["seconds"] = round(seconds, 2)
    summary["items_per_second"] = round(n / seconds, 1) if seconds > 0 else None
    return summary


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(total=total, desc="mini-MMTT", unit="img", file=sys.stderr, leave=False)
