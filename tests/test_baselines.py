"""Baselines: the registry and `mmtt models`, forensic statistics, learned localizers, captioners."""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import baselines.catalog  # noqa: F401
from baselines import registry
from baselines.captioners import prior, retrieval, template
from baselines.captioners.faceparts import part_boxes
from baselines.checkpoint import META
from baselines.forensic import box, build_blur_inconsistency, build_ela, build_noise_residual, median3
from benchmark.cli import main
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.interface import Batch
from benchmark.harness.run import RunOptions, run_model
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import make_random_dataset

FAST = ScoreOptions(skip=("meteor",), n_boot=100)


pytestmark = pytest.mark.usefixtures("one_thread")
OWN = {"empty", "full", "centre-ellipse", "ela", "noise-residual", "blur-inconsistency", "unet", "segformer",
       "prior", "retrieval", "template", "blip", "blip2", "instructblip"}


def run(model, data: Path, out: Path, split: str = "test", **kw):
    kw.setdefault("workers", 0)
    return run_model(model, load_split(data, split), out, RunOptions(device="cpu", progress=False, **kw))


def test_registry_lists_every_model_with_an_importable_builder(capsys) -> None:
    names = {e.name for e in registry.entries()}
    assert OWN <= names
    for e in registry.entries():
        if e.name in OWN:
            module, _, attr = e.target.partition(":")
            assert callable(getattr(importlib.import_module(module), attr)), e.name
            if e.trainer:
                module, _, attr = e.trainer.partition(":")
                assert callable(getattr(importlib.import_module(module), attr)), e.name
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["empty"]["kind"] == "localizer" and rows["empty"]["needs"] == "nothing" and rows["empty"]["ready"]
    assert rows["unet"]["needs_training"] and rows["unet"]["needs_checkpoint"]
    assert rows["template"]["kind"] == "both" and rows["prior"]["kind"] == "captioner"
    assert rows["blip2"]["needs"] == "checkpoint" and not rows["blip2"]["needs_training"]


def _pasted(kind: str, seed: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A noisy, textured, JPEG-compressed 'photo' with a square of other content pasted in:
    `fresh` noisy content without JPEG history, `clean` content without sensor noise, `soft`
    the same texture blurred."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    texture = 120 + 30 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    base = texture[..., None] + rng.normal(0, 8, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=75)
    photo = np.asarray(Image.open(buf).convert("RGB")).astype(np.float64)
    mask = np.zeros((size, size), bool)
    mask[16:40, 20:44] = True
    if kind == "fresh":
        patch = texture[..., None] + rng.normal(0, 8, (size, size, 3))
    elif kind == "clean":
        patch = np.repeat(texture[..., None], 3, axis=2)
    else:
        k = np.ones(5) / 5
        smooth = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, texture)
        smooth = np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, smooth)
        patch = np.repeat(smooth[..., None], 3, axis=2)
    photo[mask] = patch[mask]
    return np.clip(photo, 0, 255).round().astype(np.uint8), mask


@pytest.mark.parametrize("build, kind", [(build_ela, "fresh"), (build_noise_residual, "clean"),
                                         (build_blur_inconsistency, "soft")])
def test_forensic_localizers_find_a_pasted_patch(build, kind: str) -> None:
    img, mask = _pasted(kind)
    model = build(image_size=64).to("cpu")
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    p = model.predict(Batch(images=x, ids=["a"], sizes=[(64, 64)])).masks[0]
    assert p.shape == (32, 32) and 0 <= float(p.min()) and float(p.max()) <= 1
    small = torch.from_numpy(mask[::2, ::2])
    inside, outside = float(p[small].mean()), float(p[~small].mean())
    assert inside > outside + 0.3 and outside < 0.2, (inside, outside)


@pytest.mark.parametrize("levels", [None, 3])
def test_median3_is_scipys_3x3_median_with_mirrored_edges(levels: int | None) -> None:
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(7)
    shape = (2, 3, 19, 24)   # few levels: ties everywhere, the case an exchange network gets wrong first
    x = rng.integers(0, levels, shape) if levels else rng.standard_normal(shape)
    x = x.astype(np.float32)
    want = median_filter(x, size=(1, 1, 3, 3), mode="mirror")   # scipy's "mirror" is torch's "reflect"
    np.testing.assert_array_equal(median3(torch.from_numpy(x)).numpy(), want)   # a selection: exact


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_box_is_the_window_mean_with_reflected_edges(k: int) -> None:
    x = np.random.default_rng(k).uniform(0, 255, (2, 1, 23, 30)).astype(np.float32)
    p = k // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, k - 1 - p), (p, k - 1 - p)), mode="reflect")
    want = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3)).mean(axis=(-2, -1))
    got = box(torch.from_numpy(x), k)
    assert got.dtype == torch.float32 and got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-4)


def test_colour_histograms_are_the_mean_of_one_hot_bins() -> None:
    from baselines.captioners.features import BINS, colour_histograms

    x = torch.rand(3, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    x[0, 0, :4] = 1.0        # the top edge falls in the last bin
    x[1, 2, :, :3] = 0.0
    idx = (x * BINS).long().clamp(max=BINS - 1)
    want = torch.nn.functional.one_hot(idx, BINS).float().mean(dim=(2, 3)).flatten(1)
    assert torch.equal(colour_histograms(x), want)   # integer counts over the same pixel count


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("baselines") / "data"
    for split, seed in (("train", 0), ("eval", 1), ("test", 2)):
        make_random_dataset(root, n=16, size=64, seed=seed, split=split)
    return root


def test_learned_model_without_checkpoint_names_the_train_command(data: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(BenchmarkError, match="mmtt train unet --data DIR"):
        registry.build("unet", checkpoint=tmp_path / "none")
    code = main(["run", "segformer", "--data", str(data), "--out", str(tmp_path / "s"),
                 "--checkpoint", str(tmp_path / "none")])
    assert code == 2 and "mmtt train segformer" in capsys.readouterr().err


def test_unknown_option_is_an_error(data: Path, tmp_path: Path, capsys) -> None:
    assert main(["run", "empty", "--data", str(data), "--out", str(tmp_path / "s"), "--option", "size=3"]) == 2
    assert "does not take" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["unet", "segformer"])
def test_learned_localizer_trains_saves_loads_and_runs(name: str, data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / name
    summary = registry.train(name, data=data, out=ckpt, epochs=1, batch_size=8, device="cpu", workers=0,
                             progress=False, image_size=64)
    assert (ckpt / "model.safetensors").is_file() and (ckpt / META).is_file()
    assert summary["train_items"] == 16 and set(summary["eval"]) == {"eval_iou", "eval_f1"}
    if name == "segformer":
        from transformers import SegformerConfig

        assert SegformerConfig.from_pretrained(str(ckpt)).num_labels == 1
    model = registry.build(name, checkpoint=ckpt)
    assert model.image_size == 64 and model.checkpoint_id
    log = run(model, data, tmp_path / "sub")
    assert log["n_predicted"] == 16
    mask = np.asarray(Image.open(tmp_path / "sub" / "masks" / load_split(data, "test").records[0].pred_mask_path))
    assert mask.shape == (16, 16)
    summary = score_submission(tmp_path / "sub", load_split(data, "test"), FAST).summary
    assert summary["tasks"] == ["localization"] and 0 <= summary["metrics"]["iou"] <= 1


def test_segformer_starts_from_a_local_pretrained_folder(data: Path, tmp_path: Path) -> None:
    from transformers import SegformerForSemanticSegmentation

    from baselines.segformer import small_config

    pre = tmp_path / "pretrained"
    SegformerForSemanticSegmentation(small_config(num_labels=5, num_channels=3)).save_pretrained(str(pre))
    out = tmp_path / "ckpt"
    registry.train("segformer", data=data, out=out, epochs=1, batch_size=8, device="cpu", workers=0,
                   progress=False, image_size=64, pretrained=str(pre))
    assert json.loads((out / META).read_text())["pretrained"] == str(pre)
    config = registry.build("segformer", checkpoint=out).net.model.config
    assert config.num_labels == 1 and config.num_channels == 5  # RGB + the two noise-trace maps
    with pytest.raises(BenchmarkError, match="not a local transformers model folder"):
        registry.train("segformer", data=data, out=out, epochs=1, device="cpu", pretrained=str(tmp_path))


def test_prior_is_the_medoid_explanation(tmp_path: Path) -> None:
    root = tmp_path / "data"
    recs = make_random_dataset(root, n=6, size=16, seed=0, split="train")
    caps = ["The nose looks smeared.", "The nose looks smeared and blurry.", "The nose looks smeared here.",
            "Teeth are blurred.", "The nose looks smeared, and the lips are waxy.", "Pupils differ."]
    for rec, cap in zip(recs, caps):
        rec["caption"] = cap
    (root / "train-mutilabel.json").write_text(json.dumps(recs))
    prior.train_prior(root, tmp_path / "prior")
    model = prior.build_prior(tmp_path / "prior")
    assert model.caption == "The nose looks smeared."
    out = model.predict(Batch(images=torch.zeros(3, 3, 32, 32), ids=["a", "b", "c"], sizes=[(32, 32)] * 3))
    assert out.captions == ["The nose looks smeared."] * 3


def test_retrieval_returns_the_explanation_of_an_identical_train_image(data: Path, tmp_path: Path) -> None:
    retrieval.train_retrieval(data, tmp_path / "r", encoder="none", device="cpu", workers=0)
    model = retrieval.build_retrieval(tmp_path / "r", k=1).to("cpu")
    train = load_split(data, "train")
    ids = train.ids[:4]
    imgs = [np.asarray(Image.open(train.image_files[i]).convert("RGB").resize((256, 256), Image.BILINEAR)) for i in ids]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    out = model.predict(Batch(images=x, ids=ids, sizes=[(64, 64)] * 4))
    assert out.captions == [train.by_id[i].caption for i in ids]
    run(retrieval.build_retrieval(tmp_path / "r"), data, tmp_path / "sub")
    result = score_submission(tmp_path / "sub", load_split(data, "test"), FAST)
    assert result.summary["tasks"] == ["interpretation"] and result.summary["metrics"]["cider"] >= 0


def test_retrieval_with_a_localizer_as_encoder(data: Path, tmp_path: Path) -> None:
    registry.train("unet", data=data, out=tmp_path / "unet", epochs=1, batch_size=8, device="cpu", workers=0,
                   progress=False, image_size=64)
    summary = retrieval.train_retrieval(data, tmp_path / "r", encoder="unet", encoder_checkpoint=str(tmp_path / "unet"),
                                        device="cpu", workers=0)
    assert summary["encoder"] == "unet"
    with pytest.raises(BenchmarkError, match="not a localizer"):
        retrieval.train_retrieval(data, tmp_path / "r2", encoder="prior", device="cpu")
    model = retrieval.build_retrieval(tmp_path / "r", k=3, encoder_checkpoint=str(tmp_path / "unet"))
    assert model.describer.localizer.name == "unet" and "+" in model.checkpoint_id
    log = run(model, data, tmp_path / "sub")
    train_captions = {r.caption for r in load_split(data, "train").records}
    lines = [json.loads(x) for x in (tmp_path / "sub" / "predictions.jsonl").read_text().splitlines()]
    assert log["n_predicted"] == 16 and all(x["caption"] in train_captions for x in lines)


def test_template_names_the_parts_the_mask_covers(data: Path, tmp_path: Path) -> None:
    boxes = part_boxes()
    x0, y0, x1, y1 = boxes["nose"]
    mask = torch.zeros(1, 64, 64)
    mask[0, round(y0 * 64):round(y1 * 64), round(x0 * 64):round(x1 * 64)] = 1
    feats = template.region_features(mask, boxes)[0]
    names = list(boxes)
    assert float(feats[names.index("nose")]) > 0.9               # the nose box is covered
    assert float(feats[len(names) + names.index("nose")]) == 1.0  # all of the mask is in it
    assert float(feats[names.index("hair")]) == 0.0
    template.train_template(data, tmp_path / "t", localizer="centre-ellipse")
    model = registry.build("template", checkpoint=str(tmp_path / "t"))
    meta = json.loads((tmp_path / "t" / META).read_text())
    assert meta["localizer"] == "centre-ellipse" and meta["classifier"]["labels"]
    log = run(model, data, tmp_path / "sub")
    assert log["n_predicted"] == 16
    lines = [json.loads(x) for x in (tmp_path / "sub" / "predictions.jsonl").read_text().splitlines()]
    train_sentences = {s for r in load_split(data, "train").records for s in r.caption.split(". ")}
    assert all(line["caption"] for line in lines)
    assert any(any(s.strip(".") in line["caption"] for s in train_sentences) for line in lines)
    summary = score_submission(tmp_path / "sub", load_split(data, "test"), FAST).summary
    assert summary["tasks"] == ["localization", "interpretation"]
