import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.imageio import load_image, load_mask
from benchmark.data.split import available_splits, load_split, split_file
from benchmark.errors import DatasetError
from tests.conftest import OFFICIAL_RECORDS, make_official_layout


def test_reads_the_official_layout_as_released(official_root):
    split = load_split(official_root, "test")
    assert split.ids == ["mat_20936", "sd_00017", "e4s_00003", "surprised_00012"]
    assert [r.method for r in split.records] == [
        "transformer-inpainting", "diffusion-inpainting", "gan-faceswap", "attribute-editing"]
    assert [r.source for r in split.records] == ["celeba-hq", "ffhq", "ffhq", "face-attribute"]
    # both path styles resolve: relative to the data root and relative to its dataset/ image root
    assert split.image_files["sd_00017"] == official_root / "dataset/FFHQ512/sd_inpaint/samples_ffhq/00017.png"
    assert split.mask_files["mat_20936"] == official_root / "dataset/celeb512/mat_gan/masks/20936.png"
    rec = split.by_id["surprised_00012"]
    assert rec.pred_mask_path == "dataset/face_attribute_image/surprised/00012.png"
    assert rec.regions == {"eyebrow"} and rec.instance_id == "00012"
    assert load_image(split.image_files[rec.image_id]).size == (32, 32)
    mask = load_mask(split.mask_files[rec.image_id])
    assert mask.dtype == bool and mask.sum() == 8 * 8
    assert split.counts("method")["gan-faceswap"] == 1


def test_simple_variant_and_robustness_names(official_root):
    shutil.copy(official_root / "test-mutilabel.json", official_root / "eval-mutilabel-simple.json")
    shutil.copy(official_root / "test-mutilabel.json", official_root / "test-mutilabel_blur.json")
    assert split_file(official_root, "eval").name == "eval-mutilabel-simple.json"
    assert split_file(official_root, "eval-simple").name == "eval-mutilabel-simple.json"
    assert split_file(official_root, "test_blur").name == "test-mutilabel_blur.json"
    assert sorted(available_splits(official_root)) == ["eval-simple", "test", "test_blur"]


def test_missing_multilabel_is_derived_with_the_official_rule(tmp_path):
    recs = [dict(OFFICIAL_RECORDS[0])]
    del recs[0]["multilabel"]
    root = make_official_layout(tmp_path, recs)
    assert load_split(root, "test").records[0].regions == {"nose", "cheek"}


def test_fingerprint_is_stable_and_tracks_every_truth_change(official_root):
    fp = load_split(official_root, "test").fingerprint
    assert fp.startswith("sha256:") and fp == load_split(official_root, "test").fingerprint
    # record order does not matter
    path = official_root / "test-mutilabel.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data[::-1]))
    assert load_split(official_root, "test").fingerprint == fp
    # a caption change
    data[0]["caption"] += " Also the ear."
    path.write_text(json.dumps(data))
    fp_caption = load_split(official_root, "test").fingerprint
    assert fp_caption != fp
    # a single truth-mask pixel
    mask_file = official_root / "dataset/celeb512/mat_gan/masks/20936.png"
    arr = np.asarray(Image.open(mask_file)).copy()
    arr[0, 0] = 255
    Image.fromarray(arr).save(mask_file)
    assert load_split(official_root, "test").fingerprint not in (fp, fp_caption)


def _expect(root: Path, fragment: str, split: str = "test") -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_split(root, split)
    assert fragment in info.value.report(), info.value.report()
    assert "\n" not in str(info.value)  # the headline is one line
    return info.value


def test_error_missing_split_names_what_was_looked_for(official_root):
    _expect(official_root, "split 'train' not found (looked for train-mutilabel.json, train-mutilabel-simple.json; splits here: test)", "train")
    _expect(official_root / "nope", "data directory not found")


def test_error_bad_json_gives_line_and_column(official_root):
    (official_root / "test-mutilabel.json").write_text('[\n {"image_id": "x",\n}')
    _expect(official_root, "test-mutilabel.json:3:1: invalid JSON")


def test_error_not_a_list_and_not_utf8(official_root):
    (official_root / "test-mutilabel.json").write_text('{"a": 1}')
    _expect(official_root, "expected a JSON list of records, got dict")
    (official_root / "test-mutilabel.json").write_bytes(b'[{"caption": "\xff"}]')
    _expect(official_root, "not UTF-8 text (byte 14)")


def test_error_duplicate_ids_and_bad_fields_are_all_listed(official_root):
    path = official_root / "test-mutilabel.json"
    data = json.loads(path.read_text())
    data.append(dict(data[1]))                              # duplicate of sd_00017
    data.append({**data[0], "image_id": "mat_1", "multilabel": [1, 0]})
    data.append({**data[0], "image_id": "mat_2", "caption": 7})
    data.append("not a record")
    path.write_text(json.dumps(data))
    err = _expect(official_root, "duplicate image_id 'sd_00017' (first at [1])")
    report = err.report()
    assert "test-mutilabel.json[5] (image_id 'mat_1'): 'multilabel' must be a list of 21 zeros/ones" in report
    assert "test-mutilabel.json[6] (image_id 'mat_2'): 'caption' must be a string" in report
    assert "test-mutilabel.json[7]: expected an object, got str" in report
    assert str(err).startswith(f"{path}: 4 problem(s)")


def test_error_missing_image_and_mask_files_name_the_id(official_root):
    (official_root / "dataset/celeb512/mat_gan/masks/20936.png").unlink()
    (official_root / "dataset/FFHQ512/e4s/samples_ffhq/00003.png").unlink()
    err = _expect(official_root, "image_id 'mat_20936': mask file not found: dataset/celeb512/mat_gan/masks/20936.png")
    assert "image_id 'e4s_00003': image file not found" in err.report()
    # without the file check the split still loads (for scoring submissions that bring no truth use)
    assert len(load_split(official_root, "test", check_files=False)) == 4


def test_error_undecodable_mask_is_located(official_root):
    bad = official_root / "dataset/celeb512/mat_gan/masks/20936.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=r"image_id 'mat_20936': cannot decode mask .*20936.png"):
        load_mask(bad, "mat_20936")


@pytest.mark.parametrize("img_path", ["a/b.jpg", "a/b.tar.gz", "a/.hidden", "a/b.", "a/b..", "b", ".x.jpg", "a//b.jpg",
                                      "./a/b.jpg", "/abs/c.jpeg", "a/./b.png", "a/../b.jpg", "a\\b\\c.JPG", "a/b/",
                                      "..", "a/...", "x/.a.b", "dataset/FFHQ512/sd/00017.webp"])
def test_prediction_mask_path_is_pathlibs_with_suffix(img_path):
    """The string fast path gives what `PurePosixPath.with_suffix('.png')` gives, edge cases included."""
    from pathlib import PurePosixPath

    from benchmark.data.record import prediction_mask_path, source_of

    assert prediction_mask_path(img_path) == str(PurePosixPath(img_path.replace("\\", "/")).with_suffix(".png"))
    parts = PurePosixPath(img_path.replace("\\", "/")).parts
    expected = next((s for s in (source_of(p) for p in parts) if s != "other"), "other")
    assert source_of(img_path) == expected


@pytest.mark.parametrize("vector", [[True] + [0] * 20, [2] + [0] * 20, [0.0] * 21, [1.0] + [0] * 20, ["1"] + [0] * 20,
                                    [None] * 21, [0] * 22])
def test_multilabel_must_be_21_integer_zeros_or_ones(official_root, vector):
    path = official_root / "test-mutilabel.json"
    data = json.loads(path.read_text())
    data[0]["multilabel"] = vector
    path.write_text(json.dumps(data))
    assert "'multilabel' must be a list of 21 zeros/ones" in _expect(official_root, "problem(s)").report()
