"""Zero-shot VLM explainers through the real loading path, on tiny random checkpoints built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import baselines.catalog  # noqa: F401
from baselines import registry
from baselines.captioners.tiny_vlm import WORDS, write_tiny_checkpoint
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.run import RunOptions, run_model
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import make_random_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


VOCAB = set(WORDS) | {".", ",", ":", "?"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vlm") / "data"
    make_random_dataset(root, n=5, size=40, seed=7)
    return root


def _run_family(family: str, data: Path, tmp: Path) -> list[str]:
    ckpt = write_tiny_checkpoint(family, tmp / family)
    model = registry.build(family, checkpoint=str(ckpt), max_new_tokens=6, num_beams=2)
    assert model.image_size == 32 and model.kind == "captioner"
    split = load_split(data, "test")
    run_model(model, split, tmp / "sub", RunOptions(device="cpu", workers=0, batch_size=2, progress=False))
    lines = [json.loads(x) for x in (tmp / "sub" / "predictions.jsonl").read_text().splitlines()]
    assert [x["image_id"] for x in lines] == split.ids
    summary = score_submission(tmp / "sub", split, ScoreOptions(skip=("meteor",), n_boot=10)).summary
    assert summary["tasks"] == ["interpretation"] and summary["n_scored"] == 5
    return [x["caption"] for x in lines]


def test_instructblip_tiny_checkpoint_explains_through_the_harness(data: Path, tmp_path: Path) -> None:
    captions = _run_family("instructblip", data, tmp_path)
    words = [w for c in captions for w in c.split()]
    assert words and set(words) <= VOCAB  # decoded from the checkpoint's own tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("family", ["blip", "blip2"])
def test_blip_and_blip2_tiny_checkpoints_explain_through_the_harness(family: str, data: Path, tmp_path: Path) -> None:
    captions = _run_family(family, data, tmp_path)
    words = [w for c in captions for w in c.split()]
    assert words and set(words) <= VOCAB | set("The image looks manipulated.".split())


def test_missing_vlm_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="needs a local pretrained checkpoint"):
        registry.build("blip2", checkpoint=str(tmp_path))
