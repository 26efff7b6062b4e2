"""The embedded mini-MMTT generator: layout, determinism, masks, explanations, learnability."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.record import method_of, source_of
from benchmark.data.regions import REGIONS, mentioned_regions, multilabel
from benchmark.data.synth import (
    ATTRIBUTES, CANONICAL_PART_BOXES, generate, make_item, plan, region_masks, render_sample_card, sample,
    split_sizes,
)
from benchmark.data.synth.face import render_face, sample_identity, sample_pose, sample_scene
from benchmark.data.synth.forge import MAX_FRACTION, MIN_FRACTION, dilate, forge

N, SEED, SIZE = 48, 3, 128
KEYS = ["image_id", "instance_id", "img_path", "mask_path", "caption", "multilabel"]
FAMILY = {"sd": "diffusion-inpainting", "mat": "transformer-inpainting", "e4s": "gan-faceswap"}
SOURCE = {"celeb512": "celeba-hq", "FFHQ512": "ffhq", "face_attribute_image": "face-attribute"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mini") / "mmtt"
    summary = generate(root, n=N, seed=SEED, size=SIZE, workers=2, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def records(demo) -> dict[str, list[dict]]:
    root, _ = demo
    return {s: json.loads((root / f"{s}-mutilabel.json").read_text()) for s in ("train", "eval", "test")}


@pytest.fixture(scope="module")
def items():
    specs = plan(N, SEED)
    return [make_item(s, SEED, SIZE) for s in specs]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- layout ---------------------------------------------------------------------------------

def test_official_layout_keys_and_paths(demo, records):
    root, summary = demo
    assert sorted(p.name for p in root.glob("*.json")) == [
        "eval-mutilabel.json", "test-mutilabel.json", "train-mutilabel.json"]
    for recs in records.values():
        for r in recs:
            assert list(r) == KEYS
            assert isinstance(r["instance_id"], str) and isinstance(r["caption"], str)
            assert len(r["multilabel"]) == len(REGIONS) and set(r["multilabel"]) <= {0, 1}
            for key in ("img_path", "mask_path"):
                assert r[key].startswith("dataset/") and (root / r[key]).is_file()
            img = Image.open(root / r["img_path"])
            mask = Image.open(root / r["mask_path"])
            assert img.mode == "RGB" and img.size == (SIZE, SIZE)
            assert mask.mode == "L" and mask.size == img.size
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert summary["n"] == N and sum(s["n"] for s in summary["splits"].values()) == N


def test_paths_follow_the_release(records):
    for r in sum(records.values(), []):
        prefix, number = r["image_id"].split("_", 1)
        assert len(number) == 5 and number.isdigit()
        if prefix in FAMILY:
            folder = {"sd": "sd_inpaint", "mat": "mat_gan", "e4s": "e4s"}[prefix]
            src = r["img_path"].split("/")[1]
            samples = {"celeb512": "samples_celeb", "FFHQ512": "samples_ffhq"}[src]
            assert r["img_path"] == f"dataset/{src}/{folder}/{samples}/{number}.png"
            assert r["mask_path"] == f"dataset/{src}/{folder}/masks/{number}.png"
            assert r["instance_id"] == {"mat": "1", "sd": "2", "e4s": "3"}[prefix] + number
        else:
            assert prefix in ATTRIBUTES
            assert r["img_path"] == f"dataset/face_attribute_image/{prefix}/{number}.jpg"
            assert r["mask_path"] == f"dataset/face_attribute_image/{prefix}/mask/{number}.png"
            assert r["instance_id"] == number


def test_splits_ids_and_families(records, demo):
    _, summary = demo
    assert tuple(len(records[s]) for s in ("train", "eval", "test")) == split_sizes(N) == (34, 7, 7)
    assert split_sizes(2000) == (1400, 300, 300) and sum(split_sizes(3001)) == 3001
    every = sum(records.values(), [])
    assert len({r["image_id"] for r in every}) == N
    assert len({r["instance_id"] for r in every}) == N
    assert set(summary["methods"]) == set(FAMILY.values()) | {"attribute-editing"}
    assert max(summary["methods"].values()) - min(summary["methods"].values()) <= 3
    by_id = {s.image_id: s for s in plan(N, SEED)}
    for r in every:
        spec = by_id[r["image_id"]]
        assert method_of(r["image_id"]) == spec.family == FAMILY.get(spec.method, "attribute-editing")
        assert source_of(r["img_path"]) == SOURCE[spec.source]
        assert (spec.method in FAMILY) == (spec.source != "face_attribute_image")


def test_summary_counts(demo, records):
    _, summary = demo
    for split, recs in records.items():
        assert summary["splits"][split]["n"] == len(recs)
        assert sum(summary["splits"][split]["methods"].values()) == len(recs)
    assert summary["seconds"] > 0 and summary["workers"] == 2
    assert MIN_FRACTION <= summary["mask_fraction"]["min"] and summary["mask_fraction"]["max"] <= MAX_FRACTION


# ---- determinism ----------------------------------------------------------------------------

def test_same_seed_is_byte_identical_whatever_the_workers(demo, tmp_path):
    root, _ = demo
    again = tmp_path / "again"
    generate(again, n=N, seed=SEED, size=SIZE, workers=1, progress=False)
    assert _hashes(again) == _hashes(root)


def test_another_seed_differs(demo, tmp_path):
    root, _ = demo
    other = tmp_path / "other"
    generate(other, n=8, seed=SEED + 1, size=SIZE, workers=1, progress=False)
    mine = _hashes(root)
    theirs = _hashes(other)
    assert theirs["train-mutilabel.json"] != mine["train-mutilabel.json"]
    assert not set(theirs.values()) & {h for k, h in mine.items() if not k.endswith(".json")}


def test_saved_files_are_the_generated_arrays(demo, items):
    root, _ = demo
    for it in items[:12]:
        s = it.spec
        mask = np.asarray(Image.open(root / s.mask_path)) > 127
        assert (mask == it.mask).all()
        saved = np.asarray(Image.open(root / s.img_path).convert("RGB"))
        if s.img_path.endswith(".png"):
            assert (saved == it.forged).all()
        else:  # attribute edits are JPEG files, as in the release
            assert np.abs(saved.astype(int) - it.forged).mean() < 3


# ---- masks ----------------------------------------------------------------------------------

def test_mask_is_exactly_the_changed_pixels(items):
    for it in items:
        changed = (it.forged != it.authentic).any(-1)
        assert it.mask.dtype == bool and it.mask.shape == it.forged.shape[:2]
        assert (changed == it.mask).all(), it.spec.image_id
        assert MIN_FRACTION <= it.mask.mean() <= MAX_FRACTION


def test_sample_returns_authentic_forged_and_mask():
    authentic, forged, mask = sample(5, n=20, seed=1, size=96)
    assert authentic.shape == forged.shape == (96, 96, 3) and authentic.dtype == np.uint8
    assert ((authentic != forged).any(-1) == mask).all() and mask.any()


@pytest.mark.parametrize("method", ["sd", "mat", "e4s", "surprised"])
def test_512_pixels_work(method):
    f = forge(np.random.default_rng([9, len(method)]), method, "FFHQ512", 512)
    assert f.forged.shape == (512, 512, 3)
    assert ((f.forged != f.authentic).any(-1) == f.mask).all()
    assert MIN_FRACTION <= f.fraction <= MAX_FRACTION


# ---- explanations ---------------------------------------------------------------------------

def test_multilabel_is_computed_from_the_caption(records):
    for r in sum(records.values(), []):
        assert r["multilabel"] == multilabel(r["caption"])
        assert r["caption"].strip()


def test_captions_name_only_manipulated_regions(items):
    words = []
    for it in items:
        f = it.forgery
        named = mentioned_regions(it.caption)
        assert named & set(f.targets), (it.caption, f.targets)
        assert named <= set(f.touched) | set(f.targets), (it.caption, named - f.touched)
        words.append(len(it.caption.split()))
    assert 15 <= min(words) and max(words) <= 70
    assert 25 <= np.mean(words) <= 45
    assert len({it.caption for it in items}) == len(items)


def test_explanations_vary_and_describe_the_family(items):
    openings = {it.caption.split()[0] for it in items}
    assert len(openings) >= 6
    for it in items:
        if it.spec.method == "e4s":
            assert any(w in it.caption.lower() for w in ("person", "face", "head", "someone", "swap"))


# ---- learnability ---------------------------------------------------------------------------

def _residual(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float32).mean(-1)
    ring = (g[:-2, :-2] + g[:-2, 1:-1] + g[:-2, 2:] + g[1:-1, :-2] + g[1:-1, 2:]
            + g[2:, :-2] + g[2:, 1:-1] + g[2:, 2:]) / 8
    out = np.zeros_like(g)
    out[1:-1, 1:-1] = np.abs(g[1:-1, 1:-1] - ring)
    return out


def _error_level(img: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.abs(np.asarray(Image.open(buf)).astype(np.float32) - img.astype(np.float32)).mean(-1)


@pytest.fixture(scope="module")
def forensic_items():
    return [make_item(s, 5, 256) for s in plan(60, 5)]


def test_forged_regions_leave_local_traces(forensic_items):
    """Noise residual and JPEG error level inside the mask differ from the ring around it."""
    ela, noise = [], []
    for it in forensic_items:
        m = it.mask
        ring = dilate(m, 12) & ~m
        e = _error_level(it.forged)
        r = _residual(it.forged)
        ela.append(abs(np.log(e[m].mean() / e[ring].mean())))
        noise.append(abs(np.log(np.median(r[m]) / np.median(r[ring]))))
    ela, noise = np.array(ela), np.array(noise)
    assert ela.mean() > 0.4 and (ela > 0.15).mean() > 0.8
    assert noise.mean() > 0.3 and (np.maximum(ela, noise) > 0.15).mean() > 0.9


def test_trivial_masks_do_not_solve_it(forensic_items):
    h = w = 256
    yy, xx = np.mgrid[:h, :w]
    centre = ((xx - w / 2) / (0.27 * w)) ** 2 + ((yy - 0.52 * h) / (0.36 * h)) ** 2 < 1
    ious = [(centre & it.mask).sum() / (centre | it.mask).sum() for it in forensic_items]
    fractions = [it.mask.mean() for it in forensic_items]
    assert np.mean(ious) < 0.5
    assert np.mean(fractions) < 0.25  # an all-forged mask scores IoU = the fraction
    assert np.std(fractions) > 0.02


# ---- faces ----------------------------------------------------------------------------------

def test_canonical_part_boxes_match_rendered_faces():
    boxes = {k: [] for k in CANONICAL_PART_BOXES}
    for i in range(16):
        rng = np.random.default_rng([21, i])
        face = render_face(sample_identity(rng), sample_pose(rng), sample_scene(rng), 128)
        for k in boxes:
            m = face.parts.get(k)
            if m is not None and m.sum() > 8:
                ys, xs = np.nonzero(m)
                boxes[k].append((xs.min() / 128, ys.min() / 128, (xs.max() + 1) / 128, (ys.max() + 1) / 128))
    for k, want in CANONICAL_PART_BOXES.items():
        got = np.median(np.array(boxes[k]), 0)
        check = slice(0, 3) if k == "hair" else slice(0, 4)  # how far hair falls varies a lot
        assert np.abs(got - np.array(want))[check].max() < 0.05, (k, got, want)
        assert 0 <= want[0] < want[2] <= 1 and 0 <= want[1] < want[3] <= 1


def test_region_masks_cover_the_21_labels():
    rng = np.random.default_rng(8)
    face = render_face(sample_identity(rng), sample_pose(rng), sample_scene(rng), 96)
    masks = region_masks(face)
    assert list(masks) == list(REGIONS)
    assert all(m.shape == (96, 96) and m.dtype == bool for m in masks.values())
    for r in ("eye", "pupil", "lip", "mouth", "nose", "cheek", "forehead", "chin", "jaw", "eyebrow", "skin"):
        assert masks[r].any(), r
    assert not (masks["eye"] & ~face.head).any()  # eyes are inside the face


def test_faces_vary():
    faces = [render_face(sample_identity(r), sample_pose(r), sample_scene(r), 64)
             for r in (np.random.default_rng([4, i]) for i in range(6))]
    skin = [f.planar[:, f.parts["skin"]].mean(1) for f in faces]
    assert np.ptp(np.array(skin)[:, 0]) > 0.1
    assert all({"eye", "nose", "mouth", "lip", "skin"} <= set(f.parts) for f in faces)


def test_sample_card(demo, tmp_path):
    root, _ = demo
    out = tmp_path / "card.png"
    render_sample_card(root, None, out)
    card = Image.open(out)
    assert card.mode == "RGB" and card.size[0] > 2 * 256
    first = json.loads((root / "train-mutilabel.json").read_text())[0]["image_id"]
    render_sample_card(root, first, out)
    with pytest.raises(FileNotFoundError):
        render_sample_card(root, "sd_99999x", out)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path / "x", n=0, progress=False)
    with pytest.raises(ValueError):
        forge(np.random.default_rng(0), "photoshop", "celeb512", 64)
