"""Every validator error: one located line each, all listed in one pass, nothing scored."""

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.split import load_split
from benchmark.scoring.score import ScoreOptions, score_submission
from submissions.archive import ArchiveError, check_archive, extract_archive
from submissions.format import Limits
from submissions.reader import SubmissionError
from tests.conftest import write_png, write_submission

FAST = ScoreOptions(skip=("meteor",), n_boot=50)


def _errors(sub, root, options=FAST, **kw) -> str:
    split = load_split(root, "test")
    with pytest.raises(SubmissionError) as info:
        score_submission(sub, split, options, **kw)
    assert "\n" not in str(info.value), "the headline must be one line"
    assert "nothing scored" in str(info.value)
    return info.value.report()


def test_valid_submission_scores(random_root, tmp_path):
    root, recs = random_root
    out = score_submission(write_submission(tmp_path / "sub", recs), load_split(root, "test"), FAST)
    assert out.summary["n_scored"] == len(recs) and out.summary["tasks"] == ["localization", "interpretation"]


def test_malformed_lines_types_and_utf8_are_located(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs, extra_lines=[
        '{"image_id": "x", "caption": ',           # malformed JSON
        '{"image_id": 5, "caption": "a"}',          # id type
        '{"image_id": "sd_00000", "caption": 3}',   # caption type
        '["not", "an", "object"]'])
    with open(sub / "predictions.jsonl", "ab") as fh:
        fh.write(b'{"image_id": "mat_00001", "caption": "caf\xe9"}\n')
    n = len(recs)
    report = _errors(sub, root)
    assert f"predictions.jsonl:{n + 1}: invalid JSON" in report
    assert f"predictions.jsonl:{n + 2}: 'image_id' must be a non-empty string" in report
    assert f"predictions.jsonl:{n + 3} (image_id 'sd_00000'): 'caption' must be a string" in report
    assert f"predictions.jsonl:{n + 4}: expected a JSON object, got list" in report
    assert f"predictions.jsonl:{n + 5}: not UTF-8 (byte 41 of the line)" in report


def test_duplicate_unknown_and_missing_ids(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs[:-2], extra_lines=[
        json.dumps({"image_id": recs[0]["image_id"], "caption": "again"}),
        json.dumps({"image_id": "sd_99999", "caption": "who?"})])
    report = _errors(sub, root)
    n = len(recs) - 2
    assert f"predictions.jsonl:{n + 1} (image_id '{recs[0]['image_id']}'): duplicate image_id (also on line 1)" in report
    assert f"predictions.jsonl:{n + 2}: unknown image_id 'sd_99999' (not in split 'test')" in report
    assert f"2 of {len(recs)} image_ids of split 'test' have no prediction: {recs[-2]['image_id']}, {recs[-1]['image_id']}" in report
    assert f"image_id '{recs[-1]['image_id']}': no prediction" in report


def test_allow_missing_scores_missing_items_as_empty(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs[:-3])
    out = score_submission(sub, split, ScoreOptions(skip=("meteor",), n_boot=50, allow_missing=True))
    s = out.summary
    assert (s["n_scored"], s["n_missing"]) == (len(recs), 3)
    # the two missing items with non-empty truth score 0 IoU; the empty-truth one scores 1
    iou = dict(zip(out.per_sample["image_id"], out.per_sample["iou"]))
    assert [iou[r["image_id"]] for r in recs[-3:]] == [0.0, 0.0, 1.0]
    cider = dict(zip(out.per_sample["image_id"], out.per_sample["cider"]))
    assert cider[recs[-3]["image_id"]] == 0.0


def test_bad_pngs_modes_and_aspect(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs)
    masks = sub / "masks"
    paths = [masks / Path(r["img_path"]).with_suffix(".png") for r in recs]
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])                                  # truncated
    paths[1].write_bytes(b"not an image at all")                                  # garbage
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(paths[2], format="PNG")  # RGB
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(paths[3], format="JPEG")    # JPEG named .png
    Image.fromarray(np.zeros((48, 24), np.uint8)).save(paths[4])                   # 24x48 vs square truth
    paths[5].unlink()                                                              # missing
    report = _errors(sub, root)
    ids = [r["image_id"] for r in recs]
    rel = [f"masks/{Path(r['img_path']).with_suffix('.png')}" for r in recs]
    assert f"image_id '{ids[0]}': mask {rel[0]} is not a readable image" in report
    assert f"image_id '{ids[1]}': mask {rel[1]} is not a readable image" in report
    assert f"image_id '{ids[2]}': mask {rel[2]} is a PNG image in mode RGB; expected an 8-bit greyscale PNG (mode L)" in report
    assert f"image_id '{ids[3]}': mask {rel[3]} is a JPEG image in mode L" in report
    assert f"image_id '{ids[4]}': mask {rel[4]} is 24x48, not the aspect ratio of the truth (64x64)" in report
    assert f"image_id '{ids[5]}': mask file not found: {rel[5]}" in report


def test_caption_content_checks(random_root, tmp_path):
    root, recs = random_root
    caps = {recs[0]["image_id"]: "   ", recs[1]["image_id"]: "word " * 500,
            recs[2]["image_id"]: "line one\nline two", recs[3]["image_id"]: "bell\x07"}
    report = _errors(write_submission(tmp_path / "sub", recs, captions=caps), root)
    assert f"predictions.jsonl:1 (image_id '{recs[0]['image_id']}'): empty caption" in report
    assert f"predictions.jsonl:2 (image_id '{recs[1]['image_id']}'): caption too long (2500 characters, 500 words" in report
    assert f"predictions.jsonl:3 (image_id '{recs[2]['image_id']}'): caption contains control character U+000A" in report
    assert f"predictions.jsonl:4 (image_id '{recs[3]['image_id']}'): caption contains control character U+0007" in report


def test_mask_path_leaving_the_submission(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs)
    lines = (sub / "predictions.jsonl").read_text().splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    first["mask"], second["mask"] = "../../etc/passwd", "/etc/passwd"
    lines[0], lines[1] = json.dumps(first), json.dumps(second)
    (sub / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    os.symlink("/etc", sub / "escape")
    third = json.loads(lines[2])
    third["mask"] = "escape/hostname"
    lines[2] = json.dumps(third)
    (sub / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    report = _errors(sub, root)
    assert "predictions.jsonl:1 (image_id 'sd_00000'): mask path '../../etc/passwd' leaves the submission folder" in report
    assert "predictions.jsonl:2 (image_id 'mat_00001'): mask path '/etc/passwd' is absolute" in report
    assert "predictions.jsonl:3 (image_id 'e4s_00002'): mask path 'escape/hostname' leaves the submission folder (through a link)" in report


def test_all_problems_in_one_pass_capped(random_root, tmp_path):
    root, recs = random_root
    caps = {r["image_id"]: "" for r in recs}
    sub = write_submission(tmp_path / "sub", recs, captions=caps)
    report = _errors(sub, root, ScoreOptions(skip=("meteor",), n_boot=50, limits=Limits(max_problems=5)))
    listed = report.splitlines()[1:]  # the headline repeats the first one
    assert sum("empty caption" in line for line in listed) == 5 and listed[-1] == f"  ... and {len(recs) - 5} more"


def test_localization_only_and_interpretation_only(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    loc = score_submission(write_submission(tmp_path / "loc", recs, captions=False), split, FAST).summary
    assert loc["tasks"] == ["localization"] and "iou" in loc["metrics"] and "cider" not in loc["metrics"]
    txt = score_submission(write_submission(tmp_path / "txt", recs, masks=False), split, FAST).summary
    assert txt["tasks"] == ["interpretation"] and "cider" in txt["metrics"] and "iou" not in txt["metrics"]
    nothing = write_submission(tmp_path / "none", recs, masks=False, captions=False)
    assert "no captions and no masks: nothing to score" in _errors(nothing, root)


def test_manifest_declares_tasks_and_split(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs, masks=False,
                           manifest={"model": "m", "team": "t", "split": "eval", "tasks": ["interpretation", "localization"]})
    report = _errors(sub, root)
    assert "manifest.json: made for split 'eval', scored against 'test'" in report
    assert "mask file not found" in report  # it promised localization


# ---------------------------------------------------------------- archives
def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def test_archive_submission_scores_like_the_folder(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    with tarfile.open(tmp_path / "sub.tar.gz", "w:gz") as tf:
        tf.add(sub, arcname="sub")
    zpath = tmp_path / "sub.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(sub.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(sub))
    a = score_submission(sub, split, FAST).summary
    for archive in (tmp_path / "sub.tar.gz", zpath):
        b = score_submission(archive, split, FAST).summary
        assert b["metrics"] == a["metrics"] and b["submission_hash"] == a["submission_hash"]


@pytest.mark.parametrize("name, expected", [
    ("/abs/predictions.jsonl", "member '/abs/predictions.jsonl': absolute path"),
    ("../up.png", "member '../up.png': path with '..'"),
    ("masks/../../up.png", "path with '..'"),
])
def test_archive_unsafe_names_rejected_before_extraction(tmp_path, name, expected):
    z = _zip(tmp_path / "bad.zip", {"predictions.jsonl": b"", name: b"x"})
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError) as info:
        extract_archive(z, dest)
    assert expected in info.value.report()
    assert not dest.exists()


def test_archive_links_counts_and_sizes(tmp_path):
    z = _zip(tmp_path / "link.zip", {"predictions.jsonl": b""}, symlink="masks/a.png")
    with pytest.raises(ArchiveError, match="unsafe archive"):
        check_archive(z)
    t = tmp_path / "link.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("masks/b.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
        hard = tarfile.TarInfo("masks/c.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, "masks/b.png"
        tf.addfile(hard)
    with pytest.raises(ArchiveError) as info:
        check_archive(t)
    assert "member 'masks/b.png': symlink not allowed" in info.value.report()
    assert "member 'masks/c.png': hard link not allowed" in info.value.report()
    many = _zip(tmp_path / "many.zip", {f"masks/{i}.png": b"x" for i in range(11)})
    with pytest.raises(ArchiveError, match="11 files, more than the limit of 10"):
        check_archive(many, Limits(max_archive_files=10))
    big = _zip(tmp_path / "big.zip", {"predictions.jsonl": b"0" * 5000})
    with pytest.raises(ArchiveError, match="5000 uncompressed bytes, more than the limit of 4096"):
        check_archive(big, Limits(max_archive_bytes=4096))
    with pytest.raises(ArchiveError, match="not a readable archive"):
        (tmp_path / "junk.zip").write_bytes(b"PK junk")
        check_archive(tmp_path / "junk.zip")
