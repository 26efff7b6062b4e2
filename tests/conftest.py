"""Shared fixtures: tiny datasets in the official MMTT layout, written by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine threads only wait
    (modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_close(actual, expected, *, rel: float = 1e-9, abs: float = 1e-12, where: str = "") -> None:
    """`actual` equals `expected` up to float rounding, recursively through dicts, lists and tuples.

    Numbers computed by two code paths (serial vs parallel, cached vs fresh, a vectorised twin)
    may differ in the last bits on another CPU or summation order: never compare them with `==`.
    NaN equals NaN; strings, None and booleans must be equal.
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: keys {set(actual)} != {set(expected)}"
        for key in expected:
            assert_close(actual[key], expected[key], rel=rel, abs=abs, where=f"{where}.{key}")
    elif isinstance(expected, (list, tuple, np.ndarray)):
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, rel=rel, abs=abs, where=f"{where}[{i}]")
    elif isinstance(expected, (float, np.floating)) or isinstance(actual, (float, np.floating)):
        assert actual == pytest.approx(expected, rel=rel, abs=abs, nan_ok=True), f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


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


WORDS = ("the nose looks smeared and blurry", "the left eye is asymmetric", "lips are waxy",
         "skin on the cheek is too smooth", "a seam runs along the jaw", "the hair has repeated texture",
         "eyebrows are raised", "teeth are blurred", "the chin colour does not match", "pupils differ")
PREFIXES = (("sd", "celeb512/sd_inpaint/samples_celeb"), ("mat", "celeb512/mat_gan/samples_celeb"),
            ("e4s", "FFHQ512/e4s/samples_ffhq"), ("smiling", "face_attribute_image/smiling"))


def random_caption(rng: np.random.Generator) -> str:
    k = int(rng.integers(1, 4))
    parts = [WORDS[int(i)] for i in rng.choice(len(WORDS), k, replace=False)]
    return (", and ".join(parts) + ".").capitalize()


def blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def make_random_dataset(root: Path, n: int = 24, size: int = 64, seed: int = 0, split: str = "test") -> list[dict]:
    """A split of `n` records over the four families with blob masks and keyword captions."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        prefix, folder = PREFIXES[i % 4]
        num = f"{i:05d}"
        ext = ".jpg" if prefix == "smiling" else ".png"
        img = f"dataset/{folder}/{num}{ext}"
        mask = f"dataset/{folder.rsplit('/', 1)[0]}/masks/{num}.png" if prefix != "smiling" else f"dataset/{folder}/mask/{num}.png"
        m = blob(rng, size, size)
        if i == n - 1:
            m[:] = False  # one authentic-looking item: empty truth
        write_png(root / mask, (m * 255).astype(np.uint8))
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        (write_png(root / img, arr) if ext == ".png" else _write_jpg(root / img, arr))
        cap = random_caption(rng)
        from benchmark.data.regions import multilabel
        records.append({"image_id": f"{prefix}_{num}", "instance_id": str(i), "img_path": img,
                        "mask_path": mask, "caption": cap, "multilabel": multilabel(cap)})
    (root / f"{split}-mutilabel.json").write_text(json.dumps(records, indent=2))
    return records


def write_submission(sub: Path, records: list[dict], *, masks: dict | None = None, captions: dict | None = None,
                     pred_size: int = 48, seed: int = 1, extra_lines: list[str] | None = None,
                     manifest: dict | None = None, official: bool = False) -> Path:
    """A submission for `records`: random blob masks of `pred_size` unless given; random captions."""
    rng = np.random.default_rng(seed)
    sub.mkdir(parents=True, exist_ok=True)
    lines = []
    mask_root = sub / ("test_masks" if official else "masks")
    for rec in records:
        iid = rec["image_id"]
        if masks is not False:
            arr = masks.get(iid) if masks else None
            if arr is None:
                arr = (blob(rng, pred_size, pred_size) * 255).astype(np.uint8)
                if rng.random() < 0.5:  # some grey levels, to exercise AUC
                    arr = np.clip(arr.astype(int) - rng.integers(0, 100, arr.shape), 0, 255).astype(np.uint8)
            if arr is not None and not isinstance(arr, str):
                write_png(mask_root / str(Path(rec["img_path"]).with_suffix(".png")), arr)
        line = {"image_id": iid}
        if official:
            line["img_path"] = rec["img_path"]
        if captions is not False:
            line["caption"] = (captions or {}).get(iid, random_caption(rng))
        lines.append(json.dumps(line))
    lines += extra_lines or []
    name = "test_captions.jsonl" if official else "predictions.jsonl"
    (sub / name).write_text("\n".join(lines) + "\n")
    if manifest:
        (sub / "manifest.json").write_text(json.dumps(manifest))
    return sub


@pytest.fixture
def random_root(tmp_path: Path) -> tuple[Path, list[dict]]:
    root = tmp_path / "data"
    return root, make_random_dataset(root)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMTT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mmtt-cache"))
