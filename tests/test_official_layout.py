"""The real MMTT release works without code changes: a small dataset laid out exactly as released
(split file names incl. the `-simple` variants, `dataset/` image root with its three source
folders, official JSON keys) goes through check, scoring of the official harness's output, and
the strict protocol."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.regions import multilabel
from benchmark.data.split import available_splits, load_split

FOLDERS = {  # official-looking nesting per family (image folder, mask folder, id prefix)
    "mat": ("dataset/celeb512/mat_gan/samples_celeb", "dataset/celeb512/mat_gan/masks", ".png"),
    "sd": ("dataset/FFHQ512/sd_inpaint/samples_ffhq", "dataset/FFHQ512/sd_inpaint/masks", ".png"),
    "e4s": ("dataset/celeb512/e4s/samples_celeb", "dataset/celeb512/e4s/masks", ".png"),
    "surprised": ("dataset/face_attribute_image/surprised", "dataset/face_attribute_image/surprised/mask", ".jpg"),
}
CAPTIONS = ["The nose is blurred and its edges do not match the cheek.",
            "Both eyes look painted and the pupils have different sizes.",
            "The lips are too smooth; the teeth blend into the mouth.",
            "The eyebrows are raised unnaturally and the forehead has no wrinkles."]


def _release(root: Path, n_per_split: int = 8) -> dict[str, list[dict]]:
    rng = np.random.default_rng(3)
    splits = {}
    counter = 0
    for name in ("train-mutilabel-simple.json", "eval-mutilabel-simple.json", "test-mutilabel.json"):
        records = []
        for k in range(n_per_split):
            prefix = list(FOLDERS)[k % 4]
            img_dir, mask_dir, ext = FOLDERS[prefix]
            num = f"{20000 + counter:05d}"
            counter += 1
            caption = CAPTIONS[k % 4]
            img = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
            mask = np.zeros((512, 512), np.uint8)
            y, x = rng.integers(60, 300, 2)
            mask[y:y + 150, x:x + 120] = 255
            (root / img_dir).mkdir(parents=True, exist_ok=True)
            (root / mask_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / img_dir / f"{num}{ext}")
            Image.fromarray(mask).save(root / mask_dir / f"{num}.png")
            records.append({"image_id": f"{prefix}_{num}", "instance_id": f"{k % 4 + 1}{num}",
                            "img_path": f"{img_dir}/{num}{ext}", "mask_path": f"{mask_dir}/{num}.png",
                            "caption": caption, "multilabel": multilabel(caption)})
        (root / name).write_text(json.dumps(records, indent=4))
        splits[name] = records
    return splits


def _mmtt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("MMTT") / "dataset"  # the folder the release unpacks into
    return root, _release(root)


def test_splits_are_found_by_their_release_names(release):
    root, _ = release
    assert sorted(available_splits(root)) == ["eval-simple", "test", "train-simple"]
    assert load_split(root, "train").json_path.name == "train-mutilabel-simple.json"
    assert load_split(root, "eval").json_path.name == "eval-mutilabel-simple.json"
    test = load_split(root, "test")
    assert {r.method for r in test.records} == {"transformer-inpainting", "diffusion-inpainting",
                                                "gan-faceswap", "attribute-editing"}
    assert {r.source for r in test.records} == {"celeba-hq", "ffhq", "face-attribute"}
    done = _mmtt("data", "check", "--data", str(root), "--json")
    assert done.returncode == 0, done.stderr
    assert [row["split"] for row in json.loads(done.stdout)] == ["eval-simple", "test", "train-simple"]


def test_official_harness_output_scores_under_both_protocols(release, tmp_path):
    root, splits = release
    records = splits["test-mutilabel.json"]
    out = tmp_path / "results"
    masks = out / "test_masks"
    lines = []
    for rec in records:  # exactly what evaluate.py writes: 224 px binary masks at img_path -> .png
        truth = np.asarray(Image.open(root / rec["mask_path"]).convert("L").resize((224, 224), Image.NEAREST))
        target = masks / rec["img_path"].replace(".jpg", ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(truth).save(target)
        lines.append(json.dumps({"image_id": rec["image_id"], "img_path": rec["img_path"], "caption": rec["caption"]}))
    (out / "test_captions.jsonl").write_text("\n".join(lines) + "\n")
    for protocol in ("official", "strict"):
        done = _mmtt("score", str(out), "--data", str(root), "--split", "test", "--protocol", protocol,
                     "--json", "--no-meteor", "--n-boot", "50")
        assert done.returncode == 0, done.stderr
        res = json.loads(done.stdout)
        assert res["n_scored"] == len(records) and res["n_missing"] == 0
        # the truth itself, resized to 224 px and back with NEAREST, is (almost) perfect
        assert res["metrics"]["iou"] > 0.97 and res["metrics"]["bleu_4"] > 0.99
    # the same output as a file + mask folder, the way the official scorer is called
    done = _mmtt("score", str(out / "test_captions.jsonl"), "--masks", str(masks), "--data", str(root),
                 "--protocol", "official", "--json", "--no-meteor", "--n-boot", "50")
    assert done.returncode == 0, done.stderr


def test_the_demo_pipeline_runs_on_the_release_layout(release, tmp_path, monkeypatch):
    """train -> run through the harness -> score -> split add -> submit -> leaderboard, pointed at
    the release layout (`-simple` train/eval JSONs, `.jpg` attribute images) with no conversion."""
    root, splits = release
    monkeypatch.setenv("MMTT_CHECKPOINTS", str(tmp_path / "ckpt"))
    db = tmp_path / "board.sqlite"
    done = _mmtt("train", "prior", "--data", str(root), "--quiet")  # reads train-mutilabel-simple.json
    assert done.returncode == 0, done.stderr
    runs = {}
    for model in ("prior", "centre-ellipse"):
        out = tmp_path / "runs" / model
        done = _mmtt("run", model, "--data", str(root), "--split", "test", "--out", str(out),
                     "--device", "cpu", "--workers", "0", "--quiet")
        assert done.returncode == 0, done.stderr
        runs[model] = out
        done = _mmtt("score", str(out), "--data", str(root), "--split", "test", "--json", "--no-meteor",
                     "--n-boot", "20")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["n_scored"] == len(splits["test-mutilabel.json"])
    done = _mmtt("split", "add", "--data", str(root), "--split", "test", "--db", str(db))
    assert done.returncode == 0, done.stderr
    for model, out in runs.items():
        done = _mmtt("submit", str(out), "--data", str(root), "--split", "test", "--db", str(db), "--name", model,
                     "--baseline", "--no-meteor", "--n-boot", "20", "--json")
        assert done.returncode == 0, done.stderr
    done = _mmtt("leaderboard", "--db", str(db), "--split", "test", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(r["entry"] for r in rows) == ["centre-ellipse", "prior"]
    assert all(r["n_scored"] == len(splits["test-mutilabel.json"]) and r["n_missing"] == 0 for r in rows)
    prior_row = next(r for r in rows if r["entry"] == "prior")
    # the prior's one explanation is a train caption: it scores on text and has no mask
    assert prior_row["metrics"]["cider"] > 0
