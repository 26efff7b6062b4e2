"""Robustness variants: OpenCV's nearest resize and 5x5 Gaussian blur, the written splits, the CLI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.data.robust import downscale, gaussian_blur_cv2, make_variants, resize_nearest_cv2
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from tests.conftest import make_random_dataset


def reference_nearest(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv2.INTER_NEAREST written out pixel by pixel: src = min(floor(dst * src_size / dst_size), src_size - 1)."""
    in_h, in_w = a.shape[:2]
    out = np.empty((out_h, out_w) + a.shape[2:], a.dtype)
    for y in range(out_h):
        for x in range(out_w):
            sy = min(math.floor(y * (1.0 / (out_h / in_h))), in_h - 1)
            sx = min(math.floor(x * (1.0 / (out_w / in_w))), in_w - 1)
            out[y, x] = a[sy, sx]
    return out


def reference_blur5(a: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(a, (5, 5), 0) on uint8: the kernel [1,4,6,4,1]/16 in both directions, borders
    mirrored without repeating the edge (BORDER_REFLECT_101), rounded half up — in float64, by loops."""
    k = np.array([1, 4, 6, 4, 1], float) / 16
    h, w = a.shape[:2]

    def mirror(i: int, n: int) -> int:
        while i < 0 or i >= n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    x = a.astype(np.float64)
    out = np.zeros_like(x)
    for y in range(h):
        for xx in range(w):
            acc = 0.0
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    acc = acc + k[dy + 2] * k[dx + 2] * x[mirror(y + dy, h), mirror(xx + dx, w)]
            out[y, xx] = acc
    return np.floor(out + 0.5).astype(np.uint8)


def test_nearest_resize_matches_opencv_rule() -> None:
    a = np.arange(8)[None, :].repeat(2, 0)
    assert resize_nearest_cv2(a, 2, 6)[0].tolist() == [0, 1, 2, 4, 5, 6]       # floor(x * 8/6)
    assert resize_nearest_cv2(resize_nearest_cv2(a, 2, 6), 2, 8)[0].tolist() == [0, 0, 1, 2, 4, 4, 5, 6]
    rng = np.random.default_rng(0)
    for h, w in ((32, 32), (37, 50), (512, 384)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        small = reference_nearest(img, int(h * 0.75), int(w * 0.75))
        assert np.array_equal(downscale(img), reference_nearest(small, h, w))


def test_blur_matches_reference_computation() -> None:
    rng = np.random.default_rng(1)
    for shape in ((9, 7, 3), (16, 16), (5, 12, 3), (3, 3, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(gaussian_blur_cv2(img), reference_blur5(img))
    flat = np.full((6, 6, 3), 77, np.uint8)
    assert np.array_equal(gaussian_blur_cv2(flat), flat)
    with pytest.raises(BenchmarkError):
        gaussian_blur_cv2(flat, 9)


def test_variants_are_written_as_loadable_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    records = make_random_dataset(root, n=6, size=24, seed=2)
    rows = make_variants(root, "test", ["all"], workers=1)
    assert [r["split"] for r in rows] == ["test_downscale", "test_blur", "test_both"]
    source = load_split(root, "test")
    for variant, fn in (("downscale", downscale), ("blur", reference_blur5),
                        ("both", lambda a: reference_blur5(downscale(a)))):
        split = load_split(root, f"test_{variant}")
        assert split.json_path.name == f"test-mutilabel_{variant}.json"
        assert split.ids == [r["image_id"] for r in records]  # split order kept
        for rec in split.records:
            assert rec.img_path.startswith(f"dataset_{variant}/") and rec.mask_path.startswith(f"dataset_{variant}/")
            orig = source.by_id[rec.image_id]
            assert rec.caption == orig.caption and rec.multilabel == orig.multilabel
            assert split.mask_files[rec.image_id].read_bytes() == source.mask_files[rec.image_id].read_bytes()
            original = np.asarray(Image.open(source.image_files[rec.image_id]).convert("RGB"))
            got = np.asarray(Image.open(split.image_files[rec.image_id]).convert("RGB"))
            if rec.img_path.endswith(".png"):
                assert np.array_equal(got, fn(original))
            else:  # re-encoded as JPEG at quality 95 (OpenCV's default): the reference goes through the same
                buf = io.BytesIO()
                Image.fromarray(fn(original)).save(buf, format="JPEG", quality=95)
                assert np.array_equal(got, np.asarray(Image.open(buf).convert("RGB")))


def test_cli_aliases_and_errors(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    make_random_dataset(root, n=4, size=16, seed=4)
    assert main(["data", "robust", "--data", str(root), "--split", "test", "--variant", "blur5", "--quiet",
                 "--workers", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["split"] == "test_blur" and (root / "test-mutilabel_blur.json").is_file()
    assert main(["data", "robust", "--data", str(root), "--split", "test_blur", "--variant", "blur", "--quiet"]) == 2
    assert "base split" in capsys.readouterr().err


def test_run_robust_writes_the_clean_and_every_variant_submission(tmp_path: Path, capsys) -> None:
    """`mmtt run MODEL --robust`: the clean split into --out, each variant (created when missing)
    into OUT_<variant>, each a submission made for its own split."""
    root = tmp_path / "data"
    make_random_dataset(root, n=4, size=16, seed=5)
    out = tmp_path / "runs" / "empty" / "test"
    assert main(["run", "empty", "--data", str(root), "--split", "test", "--robust", "--out", str(out),
                 "--quiet", "--workers", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in report["runs"]] == ["test", "test_downscale", "test_blur", "test_both"]
    for run in report["runs"]:
        folder = Path(run["out"])
        assert folder == (out if run["split"] == "test" else out.with_name(f"test_{run['split'].split('_')[1]}"))
        assert json.loads((folder / "manifest.json").read_text())["split"] == run["split"]
        assert len((folder / "predictions.jsonl").read_text().splitlines()) == 4
        assert report["logs"][run["split"]]["n_predicted"] == 4
    for variant in ("downscale", "blur", "both"):
        assert (root / f"test-mutilabel_{variant}.json").is_file()
    assert main(["run", "empty", "--data", str(root), "--split", "test_blur", "--robust", "--out", str(out)]) == 2
    assert "clean split" in capsys.readouterr().err
