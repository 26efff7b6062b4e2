"""Shared fixtures: tiny datasets in the official MMTT layout, written by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_official_layout(root: Path, records: list[dict], *, split: str = "test", size: int = 32,
                         seed: int = 0) -> Path:
    """Write images, masks and `<split>-mutilabel.json` for records given as official dicts."""
    rng = np.random.default_rng(seed)
    for rec in records:
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4: size // 2, size // 4: size // 2] = 255
        for rel, arr in ((rec["img_path"], img), (rec["mask_path"], mask)):
            target = root / rel if rel.startswith("dataset/") else root / "dataset" / rel
            write_png(target, arr) if rel.endswith(".png") else _write_jpg(target, arr)
    name = split if split.endswith(".json") else f"{split}-mutilabel.json"
    (root / name).write_text(json.dumps(records, indent=2))
    return root


def _write_jpg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert("RGB").save(path, quality=92)


OFFICIAL_RECORDS = [
    {"image_id": "mat_20936", "instance_id": "120936", "img_path": "dataset/celeb512/mat_gan/samples_celeb/20936.png",
     "mask_path": "dataset/celeb512/mat_gan/masks/20936.png",
     "caption": "The nose looks smeared and the left cheek has a repeated texture.",
     "multilabel": [0, 0, 0, 0, 1, 0, 1] + [0] * 14},
    {"image_id": "sd_00017", "instance_id": "200017", "img_path": "FFHQ512/sd_inpaint/samples_ffhq/00017.png",
     "mask_path": "FFHQ512/sd_inpaint/masks/00017.png",
     "caption": "The lips are waxy and over-smooth.", "multilabel": [0, 0, 1] + [0] * 18},
    {"image_id": "e4s_00003", "instance_id": "300003", "img_path": "dataset/FFHQ512/e4s/samples_ffhq/00003.png",
     "mask_path": "dataset/FFHQ512/e4s/masks/00003.png",
     "caption": "A seam runs around the eyes and the skin tone changes.", "multilabel": [1] + [0] * 14 + [1] + [0] * 5},
    {"image_id": "surprised_00012", "instance_id": "00012", "img_path": "dataset/face_attribute_image/surprised/00012.jpg",
     "mask_path": "dataset/face_attribute_image/surprised/mask/00012.png",
     "caption": "The eyebrows are raised unnaturally high.", "multilabel": [0] * 10 + [1] + [0] * 10},
]


@pytest.fixture
def official_root(tmp_path: Path) -> Path:
    return make_official_layout(tmp_path / "mmtt", [dict(r) for r in OFFICIAL_RECORDS])
