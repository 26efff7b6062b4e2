"""The harness: streamed submissions, located errors, exact resume after SIGKILL, the batch grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import baselines.catalog  # noqa: F401
from baselines import registry
from baselines.forensic import build_noise_residual
from baselines.trivial import build_empty, build_full
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.interface import Batch, Output
from benchmark.harness.run import KILL_ENV, RunOptions, run_model
from benchmark.harness.shard import Shard, batch_grid
from benchmark.harness.writer import PARTIAL, journal_path, read_journal
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import make_random_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


REPO = Path(__file__).resolve().parents[1]
FAST = ScoreOptions(skip=("meteor",), n_boot=100)


def opts(**kw) -> RunOptions:
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return RunOptions(**kw)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a submission (run.json holds timings, so it is left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.json"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_random_dataset(root, n=12, size=32, seed=3)
    return root


class Fixed:
    """A test model returning what it is told to."""

    name, kind, image_size = "fixed", "both", 32

    def __init__(self, masks=None, captions=None, size: int = 8):
        self.masks, self.captions, self.size = masks, captions, size

    def to(self, device):
        return self

    def predict(self, batch: Batch) -> Output:
        b = len(batch.ids)
        masks = self.masks(b) if callable(self.masks) else torch.full((b, self.size, self.size), 0.5)
        captions = (self.captions(batch.ids) if callable(self.captions)
                    else [f"The nose of {i} looks smeared." for i in batch.ids])
        return Output(masks=masks, captions=captions)


def test_empty_localizer_writes_zero_masks_and_scores_iou_zero(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    out = tmp_path / "sub"
    log = run_model(build_empty(), split, out, opts(batch_size=5))
    assert log["n_predicted"] == 12 and log["complete"] and not (out / PARTIAL).exists()
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [x["image_id"] for x in lines] == split.ids  # split order
    assert all("caption" not in x and x["img_path"] == split.by_id[x["image_id"]].img_path for x in lines)
    for rec in split.records:
        img = Image.open(out / "masks" / rec.pred_mask_path)
        assert img.mode == "L" and img.size == (64, 64)
        assert not np.asarray(img).any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {"model": "empty", "team": "mmtt-bench baselines", "split": "test", "tasks": ["localization"],
                        "description": "empty (localizer), run by `mmtt run`"}
    result = score_submission(out, split, FAST)
    iou = np.asarray(result.per_sample["iou"])
    nonempty = np.array([i != split.ids[-1] for i in split.ids])  # the last item has an empty truth
    assert (iou[nonempty] == 0).all() and iou[~nonempty][0] == 1.0
    assert result.summary["metrics"]["recall"] == pytest.approx(1 / 12)


def test_full_localizer_has_recall_one(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    run_model(build_full(), split, tmp_path / "sub", opts())
    result = score_submission(tmp_path / "sub", split, FAST)
    recall = np.asarray(result.per_sample["recall"])
    assert (recall[:-1] == 1.0).all() and recall[-1] == 0.0  # the last truth is empty: the official rule gives 0
    assert 0 < result.summary["metrics"]["precision"] < 0.5


def test_masks_are_grey_levels_of_the_probability_at_model_resolution(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    levels = torch.tensor([0.0, 0.2, 0.5, 0.501, 0.999, 1.0])
    model = Fixed(masks=lambda b: levels.repeat(b, 5, 1)[:, :, :6])
    run_model(model, split, tmp_path / "sub", opts(batch_size=4))
    arr = np.asarray(Image.open(tmp_path / "sub" / "masks" / split.records[0].pred_mask_path))
    assert arr.shape == (5, 6) and arr.dtype == np.uint8
    assert arr[0].tolist() == [0, 51, 128, 128, 255, 255]  # round(p * 255)
    caps = [json.loads(x)["caption"] for x in (tmp_path / "sub" / "predictions.jsonl").read_text().splitlines()]
    assert caps[0] == f"The nose of {split.ids[0]} looks smeared."


def test_unreadable_image_is_a_located_error_or_a_recorded_skip(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    bad = split.records[4]
    split.image_files[bad.image_id].write_bytes(b"not an image")
    with pytest.raises(BenchmarkError) as err:
        run_model(build_empty(), split, tmp_path / "a", opts(batch_size=3))
    assert bad.image_id in str(err.value) and "--skip-unreadable" in str(err.value)
    log = run_model(build_empty(), split, tmp_path / "b", opts(batch_size=3, skip_unreadable=True))
    assert log["n_skipped"] == 1 and log["skipped"][0]["image_id"] == bad.image_id
    assert bad.image_id in log["skipped"][0]["error"]
    ids = [json.loads(x)["image_id"] for x in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert bad.image_id not in ids and len(ids) == 11
    assert json.loads((tmp_path / "b" / "run.json").read_text())["skipped"][0]["image_id"] == bad.image_id


@pytest.mark.parametrize("masks, captions, needle", [
    (lambda b: torch.full((b, 4, 4), float("nan")), None, "outside [0, 1]"),
    (lambda b: torch.full((b, 4, 4), 1.5), None, "outside [0, 1]"),
    (lambda b: torch.zeros(b, 4), None, "shape"),
    (None, lambda ids: [""] * len(ids), "empty caption"),
    (None, lambda ids: ["x"], "caption strings"),
])
def test_bad_model_output_is_an_error_naming_the_model(data: Path, tmp_path: Path, masks, captions, needle) -> None:
    with pytest.raises(BenchmarkError, match="model 'fixed'") as err:
        run_model(Fixed(masks, captions), load_split(data, "test"), tmp_path / "sub", opts())
    assert needle in str(err.value)


def test_caption_whitespace_is_normalised(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    run_model(Fixed(captions=lambda ids: ["The nose\nlooks\t smeared. "] * len(ids)), split, tmp_path / "s", opts())
    first = json.loads((tmp_path / "s" / "predictions.jsonl").read_text().splitlines()[0])
    assert first["caption"] == "The nose looks smeared."


def test_rerun_of_a_finished_run_is_a_no_op_and_other_settings_are_refused(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    out = tmp_path / "sub"
    run_model(build_empty(), split, out, opts())
    before = tree_bytes(out)
    assert run_model(build_empty(), split, out, opts())["already_complete"]
    assert tree_bytes(out) == before
    with pytest.raises(BenchmarkError, match="other settings"):
        run_model(build_full(), split, out, opts())
    with pytest.raises(BenchmarkError, match="other settings"):
        run_model(build_empty(), split, out, opts(batch_size=3))
    run_model(build_full(), split, out, opts(overwrite=True))
    assert json.loads((out / "manifest.json").read_text())["model"] == "full"


def test_foreign_output_folder_is_not_overwritten(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    out.mkdir()
    (out / "predictions.jsonl").write_text("{}\n")
    with pytest.raises(BenchmarkError, match="not written by"):
        run_model(build_empty(), load_split(data, "test"), out, opts())


def test_batch_grid_shards_every_item_exactly_once_without_padding() -> None:
    for n, b in ((0, 4), (1, 4), (10, 3), (12, 4), (13, 5)):
        grid = batch_grid(n, b)
        assert [i for batch in grid for i in batch] == list(range(n))
        assert all(1 <= len(batch) <= b for batch in grid)
        for k in (1, 2, 3, 5):
            owned = [sorted(j for j in range(len(grid)) if Shard(rank=r, world_size=k).owns(j)) for r in range(k)]
            assert sorted(j for o in owned for j in o) == list(range(len(grid)))


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def test_sigkilled_run_resumes_to_identical_bytes(data: Path, tmp_path: Path) -> None:
    split = load_split(data, "test")
    reference = tmp_path / "ref"
    description = registry.get_entry("noise-residual").description
    run_model(build_noise_residual(image_size=32), split, reference, opts(batch_size=2, description=description))
    out = tmp_path / "sub"
    cmd = ["run", "noise-residual", "--data", str(data), "--split", "test", "--out", str(out), "--device", "cpu",
           "--batch-size", "2", "--workers", "1", "--option", "image_size=32", "--quiet"]
    killed = _cli(cmd, {KILL_ENV: "3"})
    assert killed.returncode == -signal.SIGKILL
    entries, _ = read_journal(journal_path(out, 0))
    assert sorted(e["batch"] for e in entries) == [0, 1, 2]
    assert not (out / "predictions.jsonl").exists()
    with open(journal_path(out, 0), "ab") as fh:  # a torn half line, as a kill during the append leaves
        fh.write(b'{"batch": 3, "items": [{"i": 6, "image_id"')
    done = _cli(cmd)
    assert done.returncode == 0, done.stderr
    log = json.loads((out / "run.json").read_text())
    assert log["resumed_items"] == 6 and log["computed_items"] == 6  # nothing journaled was recomputed
    assert tree_bytes(out) == tree_bytes(reference)


def test_bf16_autocast_runs_on_cpu_too(data: Path, tmp_path: Path) -> None:
    from baselines.unet import UNet
    from baselines.training import SegmentationLocalizer

    torch.manual_seed(0)
    model = SegmentationLocalizer("unet", UNet([4, 8], unshuffle=4), 32)
    log = run_model(model, load_split(data, "test"), tmp_path / "sub", opts(precision="bf16"))
    assert log["config"]["precision"] == "bf16" and log["n_predicted"] == 12
