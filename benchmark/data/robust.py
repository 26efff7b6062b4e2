"""The official robustness variants of a split: 0.75x downscale, 5x5 Gaussian blur, both.

`mmtt data robust --data DIR --split test --variant blur` reproduces the official data
preparation (`scripts/data_preparation/process_dataset.py`, OpenCV) with numpy:

- `downscale`: `cv2.resize` to `int(0.75 * w) x int(0.75 * h)` with INTER_NEAREST, then back to
  `w x h` with INTER_NEAREST. OpenCV's nearest neighbour takes source index
  `min(floor(x * (src / dst)), src - 1)` (not the pixel-centre rule PIL uses), reproduced here
  with the same double arithmetic.
- `blur`: `cv2.GaussianBlur(img, (5, 5), 0)`. With sigma 0 OpenCV derives sigma from the kernel
  size (0.3 * ((k - 1) * 0.5 - 1) + 0.8 = 1.1 for k = 5) but, for odd k <= 7, uses its fixed
  binomial table instead of sampling that Gaussian: [1, 4, 6, 4, 1] / 16 for k = 5. Its 8-bit
  path is exact fixed-point with rounding half up, and borders are BORDER_REFLECT_101 — all
  reproduced exactly (integer arithmetic).
- `both`: downscale, then blur.

Images go under a new top-level folder replacing the `dataset/` prefix (`dataset_downscale/`,
`dataset_blur/`, `dataset_both/`, the official names), masks are copied beside them, and the
records go to `<split>-mutilabel_<variant>.json`, which `load_split` opens as split
`<split>_<variant>` (e.g. `test_blur`). PNG images stay lossless; JPEG ones are re-encoded at
quality 95 (OpenCV's `imwrite` default). Unlike the official script, an unreadable image is an
error, not a silently dropped record, and records keep the split's order.
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.imageio import load_image
from benchmark.data.record import Record
from benchmark.data.split import IMAGE_ROOT, Split, load_split, write_split
from benchmark.errors import BenchmarkError

VARIANTS = ("downscale", "blur", "both")
ALIASES = {"down075": "downscale", "blur5": "blur"}
SCALE = 0.75
KERNEL = 5
JPEG_QUALITY = 95
# OpenCV's fixed kernels for odd sizes <= 7 with sigma <= 0, as integers over a power of two
BINOMIAL = {1: ((1,), 0), 3: ((1, 2, 1), 2), 5: ((1, 4, 6, 4, 1), 4), 7: ((2, 7, 14, 18, 14, 7, 2), 6)}


def variant_dir(variant: str) -> str:
    return f"{IMAGE_ROOT}_{variant}"


def variant_split_name(base: str, variant: str) -> str:
    """`test` + `blur` -> `test_blur`: the name a variant split is loaded and registered under."""
    return f"{base}_{variant}"


def parse_split_name(name: str) -> tuple[str, str | None]:
    """`test_blur` -> (`test`, `blur`); a clean split name -> (name, None)."""
    base, sep, suffix = name.rpartition("_")
    if sep and base and suffix in VARIANTS:
        return base, suffix
    return name, None


def missing_variants(data: Path, split_name: str, variants: list[str] | tuple[str, ...] = VARIANTS) -> list[str]:
    """The variants of `split_name` whose split file is not in `data` yet."""
    return [v for v in variants if not (Path(data) / f"{split_name}-mutilabel_{v}.json").is_file()]


def resize_nearest_cv2(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """`cv2.resize(a, (out_w, out_h), interpolation=cv2.INTER_NEAREST)` for an (H, W[, C]) array."""
    in_h, in_w = a.shape[:2]
    ifx = 1.0 / (out_w / in_w)
    ify = 1.0 / (out_h / in_h)
    xs = np.minimum(np.floor(np.arange(out_w, dtype=np.float64) * ifx).astype(np.int64), in_w - 1)
    ys = np.minimum(np.floor(np.arange(out_h, dtype=np.float64) * ify).astype(np.int64), in_h - 1)
    return a[ys][:, xs]


def downscale(a: np.ndarray, scale: float = SCALE) -> np.ndarray:
    h, w = a.shape[:2]
    small = resize_nearest_cv2(a, int(h * scale), int(w * scale))
    return resize_nearest_cv2(small, h, w)


def gaussian_blur_cv2(a: np.ndarray, ksize: int = KERNEL) -> np.ndarray:
    """`cv2.GaussianBlur(a, (ksize, ksize), 0)` for uint8 images (odd ksize <= 7)."""
    if ksize not in BINOMIAL:
        raise BenchmarkError(f"blur kernel {ksize}: only odd sizes up to 7 (OpenCV's fixed kernels) are supported")
    weights, shift = BINOMIAL[ksize]
    r = ksize // 2
    x = a.astype(np.int64)
    if x.ndim == 2:
        x = x[..., None]
    pad = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")  # numpy 'reflect' == BORDER_REFLECT_101
    h, w = x.shape[:2]
    rows = sum(wt * pad[:, i:i + w] for i, wt in enumerate(weights))
    total = sum(wt * rows[i:i + h] for i, wt in enumerate(weights))
    bits = 2 * shift
    out = ((total + (1 << (bits - 1))) >> bits) if bits else total
    out = np.clip(out, 0, 255).astype(np.uint8)
    return out[..., 0] if a.ndim == 2 else out


def degrade(a: np.ndarray, variant: str) -> np.ndarray:
    if variant == "downscale":
        return downscale(a)
    if variant == "blur":
        return gaussian_blur_cv2(a)
    if variant == "both":
        return gaussian_blur_cv2(downscale(a))
    raise BenchmarkError(f"unknown robustness variant '{variant}' (choose from {', '.join(VARIANTS)})")


def variant_path(rel: str, variant: str) -> str:
    """`dataset/celeb512/x.png` -> `dataset_blur/celeb512/x.png` (paths given relative to the image
    root itself gain the prefix)."""
    rel = rel.replace("\\", "/")
    prefix = f"{IMAGE_ROOT}/"
    return variant_dir(variant) + "/" + (rel[len(prefix):] if rel.startswith(prefix) else rel)


def normalize_variants(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for v in (VARIANTS if name == "all" else (ALIASES.get(name, name),)):
            if v not in VARIANTS:
                raise BenchmarkError(f"unknown robustness variant '{name}' (choose from {', '.join(VARIANTS)}, all)")
            if v not in out:
                out.append(v)
    return out


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    img = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(tmp, quality=JPEG_QUALITY)
    else:
        img.save(tmp)
    os.replace(tmp, path)


def _work(task: tuple[str, str, str, str, str, str, tuple[str, ...]]) -> None:
    image_id, img_file, mask_file, out_root, img_rel, mask_rel, variants = task
    array = np.asarray(load_image(Path(img_file), image_id))
    for v in variants:
        _save(Path(out_root) / variant_path(img_rel, v), degrade(array, v))
        mask_out = Path(out_root) / variant_path(mask_rel, v)
        mask_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mask_file, mask_out)


def make_variants(data: Path, split_name: str, variants: list[str], *, out_root: Path | None = None,
                  workers: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Write the requested variants of split `split_name`; returns one summary row per variant."""
    if split_name.endswith(".json"):
        raise BenchmarkError(f"--split {split_name}: give a split name (e.g. test), not a file")
    if "_" in split_name:
        raise BenchmarkError(f"--split {split_name}: variants are derived from a base split (e.g. test), "
                             "not from another variant")
    variants = normalize_variants(variants)
    split: Split = load_split(Path(data), split_name)
    out_root = Path(out_root or data)
    out_root.mkdir(parents=True, exist_ok=True)
    tasks = [(r.image_id, str(split.image_files[r.image_id]), str(split.mask_files[r.image_id]), str(out_root),
              r.img_path, r.mask_path, tuple(variants)) for r in split.records]
    workers = max(1, workers or os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"robust {split_name}", unit="img", file=sys.stderr, dynamic_ncols=True)
    if workers == 1:
        for t in tasks:
            _work(t)
            bar and bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_work, tasks, chunksize=16):
                bar and bar.update(1)
    bar and bar.close()
    rows = []
    for v in variants:
        records = [Record(image_id=r.image_id, img_path=variant_path(r.img_path, v), mask_path=variant_path(r.mask_path, v),
                          caption=r.caption, multilabel=r.multilabel, instance_id=r.instance_id, extra=r.extra)
                   for r in split.records]
        base = split_name
        path = out_root / f"{base}-mutilabel_{v}.json"
        write_split(path, records)
        rows.append({"split": f"{base}_{v}", "variant": v, "file": str(path), "image_root": str(out_root / variant_dir(v)),
                     "n": len(records)})
    return rows
