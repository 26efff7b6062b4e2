"""ForgeryTalker: config, prompt, gating, shapes, save/load, the harness adapter, training smoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.forgerytalker.config import ForgeryTalkerConfig
from baselines.forgerytalker.gating import (
    PROMPT_NO_LABELS, PROMPT_WITH_LABELS, TagGate, build_prompt, gate_loss, kept_labels, label_string,
)
from baselines.forgerytalker.tokenization import build_tiny_tokenizers
from benchmark.data.regions import REGIONS
from benchmark.errors import BenchmarkError

CAPTIONS = [
    "The nose looks smeared and the left cheek has a repeated texture.",
    "The lips are waxy and over-smooth, and the skin tone changes.",
    "A seam runs around the eyes and the eyebrows look airbrushed.",
    "The forehead shows wrinkles that are too clean and flat.",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(tokenizers, **kw) -> ForgeryTalkerConfig:
    cfg = ForgeryTalkerConfig.tiny(t5_vocab_size=len(tokenizers.t5), bert_vocab_size=len(tokenizers.bert),
                                   hidden=32, patch_size=32, mask_size=16, **kw)
    cfg.generation.max_new_tokens = 6
    cfg.generation.num_beams = 2
    return cfg


@pytest.fixture(scope="module")
def tokenizers():
    return build_tiny_tokenizers(CAPTIONS, REGIONS, t5_vocab_size=200)


@pytest.fixture(scope="module")
def tiny_model(tokenizers):
    from baselines.forgerytalker.model import ForgeryTalker

    torch.manual_seed(0)
    return ForgeryTalker(small_config(tokenizers), tokenizers).eval()


# ---------------------------------------------------------------------- config
def test_config_round_trip(tmp_path: Path) -> None:
    for cfg in (ForgeryTalkerConfig.full(), ForgeryTalkerConfig.tiny(t5_vocab_size=300, bert_vocab_size=200)):
        cfg.save(tmp_path / "config.json")
        again = ForgeryTalkerConfig.load(tmp_path / "config.json")
        assert again == cfg
        assert json.loads((tmp_path / "config.json").read_text())["vision"]["hidden_size"] == cfg.vision.hidden_size


def test_config_full_matches_the_official_sizes() -> None:
    cfg = ForgeryTalkerConfig.full()
    assert (cfg.vision.hidden_size, cfg.vision.num_hidden_layers, cfg.vision.patch_size) == (1408, 39, 14)
    assert (cfg.qformer.num_query_tokens, cfg.qformer.vocab_size) == (32, 30523)
    assert (cfg.language.d_model, cfg.language.num_layers, cfg.language.dense_act_fn) == (2048, 24, "gelu")
    assert (cfg.prompter.hidden_size, cfg.prompter.num_hidden_layers, cfg.prompter.patch_size) == (1280, 32, 14)
    assert (cfg.mask.depth, cfg.mask.mlp_dim, cfg.mask.num_heads, cfg.mask.label_max_tokens) == (2, 2048, 8, 21)
    g = cfg.generation
    assert (g.num_beams, g.max_new_tokens, g.min_length) == (5, 100, 5)
    assert cfg.labels == list(REGIONS)
    assert cfg.hf_t5().dense_act_fn == "gelu"


def test_config_rejects_unknown_keys() -> None:
    data = ForgeryTalkerConfig.full().to_dict()
    data["vision"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        ForgeryTalkerConfig.from_dict(data)


# ---------------------------------------------------------------------- prompt and labels
def test_prompt_word_for_word() -> None:
    assert build_prompt(["eye", "nose"]) == (
        "The following facial areas may have been modified by AI: eye, nose. These areas might have been manipulated "
        "either by replacing the entire face or by altering specific facial features. Please identify these areas and "
        "describe why they appear unnatural.")
    assert build_prompt([]) == (
        "The following facial areas may have been modified by AI. These areas might have been manipulated either by "
        "replacing the entire face or by altering specific facial features. Please identify these areas and describe "
        "why they appear unnatural.")
    assert build_prompt([]) == PROMPT_NO_LABELS and "{labels}" in PROMPT_WITH_LABELS
    assert label_string(["eye", "nose", "skin"]) == "eye nose skin"
    assert label_string([]) == ""


def test_kept_labels_threshold_and_order() -> None:
    probs = torch.zeros(2, 21)
    probs[0, [4, 0, 15]] = torch.tensor([0.9, 0.51, 0.7])
    probs[0, 2] = 0.5  # not strictly above the threshold
    assert kept_labels(probs, REGIONS) == [["eye", "nose", "skin"], []]


def test_tag_gate_averages_over_each_images_padding() -> None:
    torch.manual_seed(0)
    gate = TagGate(vision_width=16, tag_width=8, heads=2).eval()
    image = torch.randn(2, 5, 16)
    states = torch.randn(3, 4, 8)
    owner = torch.tensor([0, 0, 1])
    counts = torch.tensor([3, 3, 2])
    got = gate(states, counts, image, owner)
    # per-label reference, as the official per-image loop computes it
    for p in range(3):
        keys = gate.image_proj(image[owner[p], 1:])[None]
        out, _ = gate.attention(states[p:p + 1, : counts[p]], keys, keys)
        expect = torch.sigmoid(gate.gate(out)).mean()
        assert torch.allclose(got[p], expect, atol=1e-6)
    loss = gate_loss(got, torch.tensor([1.0, 0.0, 1.0]), owner, batch_size=2)
    assert loss.ndim == 0 and loss > 0


# ---------------------------------------------------------------------- the model
def test_tiny_forward_losses_and_generate_shapes(tiny_model) -> None:
    model = tiny_model
    images = torch.rand(2, 3, 224, 224)
    pixels = model.normalize(images)
    multilabel = torch.zeros(2, 21)
    multilabel[0, 4] = 1
    masks = torch.zeros(2, 224, 224)
    masks[:, 50:100, 60:120] = 1
    model.train()
    losses = model(pixels, CAPTIONS[:2], multilabel, masks, truth_labels=True)
    model.eval()
    assert {"loss", "lm_loss", "seg_loss"} <= set(losses) and torch.isfinite(losses["loss"])
    pred = model.generate(pixels)
    assert pred.masks.shape == (2, 224, 224)
    assert float(pred.masks.min()) >= 0 and float(pred.masks.max()) <= 1
    assert len(pred.captions) == 2 and all(isinstance(c, str) for c in pred.captions)
    assert pred.probabilities.shape == (2, 21)
    for labels, gates in zip(pred.labels, pred.gates):
        assert set(gates) == set(labels)


def test_labels_drive_prompt_and_mask_path(tiny_model) -> None:
    model = tiny_model
    pixels = model.normalize(torch.rand(2, 3, 224, 224))
    embeds = model.encode_image(pixels)
    ctx = model.context(pixels, embeds, labels=[["eye", "nose"], []])
    assert ctx.prompts == [build_prompt(["eye", "nose"]), PROMPT_NO_LABELS]
    assert ctx.label_strings == ["eye nose", ""]
    assert ctx.gates is not None and ctx.gates.shape == (2,) and ctx.gate_owner.tolist() == [0, 0]
    a = model.mask_logits(embeds, ["eye nose", ""])
    b = model.mask_logits(embeds, ["skin", ""])
    assert a.shape == (2, 16, 16)
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_save_and_load_a_local_checkpoint(tmp_path: Path, tiny_model, tokenizers) -> None:
    from baselines.forgerytalker.build import build_forgerytalker_tiny, load_checkpoint, save_checkpoint
    from benchmark.harness.interface import Batch

    save_checkpoint(tiny_model, tokenizers, tmp_path / "ck", {"note": "test"}, name="forgerytalker-tiny")
    assert {"config.json", "model.safetensors", "t5_tokenizer", "bert_tokenizer", "mmtt_model.json"} <= {
        p.name for p in (tmp_path / "ck").iterdir()}
    loaded = load_checkpoint(tmp_path / "ck")
    for (k, v), (k2, v2) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    lm = loaded.language_model
    assert lm.encoder.embed_tokens.weight is lm.shared.weight  # ties restored
    images = torch.rand(2, 3, 224, 224)
    pixels = tiny_model.normalize(images)
    a, b = tiny_model.generate(pixels), loaded.generate(pixels)
    assert a.captions == b.captions and torch.allclose(a.masks, b.masks)

    runner = build_forgerytalker_tiny(checkpoint=str(tmp_path / "ck"))
    assert (runner.name, runner.kind, runner.image_size) == ("forgerytalker-tiny", "both", 224)
    assert runner.checkpoint_id
    out = runner.to("cpu").predict(Batch(images=torch.rand(3, 3, 224, 224), ids=["a", "b", "c"],
                                         sizes=[(256, 256)] * 3))
    assert out.masks.shape == (3, 224, 224) and len(out.captions) == 3
    # the bf16 autocast path (what the harness uses on CUDA) runs through the same code on CPU
    runner.precision = "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = runner.predict(Batch(images=torch.rand(2, 3, 200, 200), ids=["a", "b"], sizes=[(200, 200)] * 2))
    assert out.masks.dtype == torch.float32 and out.masks.shape == (2, 224, 224) and len(out.captions) == 2


def test_load_refuses_a_broken_checkpoint(tmp_path: Path, tiny_model, tokenizers) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from baselines.forgerytalker.build import build_forgerytalker, load_checkpoint, save_checkpoint

    with pytest.raises(BenchmarkError, match="no checkpoint"):
        build_forgerytalker(checkpoint=str(tmp_path / "nothing"))
    save_checkpoint(tiny_model, tokenizers, tmp_path / "ck")
    state = load_file(str(tmp_path / "ck" / "model.safetensors"))
    state.pop("query_tokens")
    state["extra.weight"] = torch.zeros(1)
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    save_file(state, str(tmp_path / "ck" / "model.safetensors"), metadata=metadata)
    with pytest.raises(BenchmarkError, match=r"1 missing key\(s\): query_tokens; 1 unexpected key\(s\): extra.weight"):
        load_checkpoint(tmp_path / "ck")


def test_registry_names_resolve() -> None:
    import baselines.catalog  # noqa: F401
    from baselines import registry

    for name in ("forgerytalker", "forgerytalker-tiny"):
        entry = registry.get_entry(name)
        registry._load(entry.target)
    assert registry._load(registry.get_entry("forgerytalker-tiny").trainer).__name__ == "train_tiny"


# ---------------------------------------------------------------------- training
def test_training_smoke_loss_decreases(tmp_path: Path) -> None:
    from conftest import make_random_dataset

    from baselines.forgerytalker.build import load_checkpoint
    from baselines.forgerytalker.train import train_tiny

    root = tmp_path / "data"
    make_random_dataset(root, n=16, size=64, split="train")
    summary = train_tiny(root, tmp_path / "ck", device="cpu", epochs=4, batch_size=8, seed=0, progress=False,
                         prompter_epochs=2, teacher_epochs=1, prompter_from_vision=True, hidden=32, mask_size=16,
                         lr=3e-3, t5_vocab_size=150)
    history = summary["joint_history"]
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"]
    assert len(summary["prompter_history"]) == 2 and len(summary["teacher_history"]) == 1
    model = load_checkpoint(tmp_path / "ck")
    assert model.config.variant == "tiny"
    meta = json.loads((tmp_path / "ck" / "mmtt_model.json").read_text())
    assert meta["model"] == "forgerytalker-tiny"


def test_train_tiny_rejects_unknown_options(tmp_path: Path) -> None:
    from baselines.forgerytalker.train import train_tiny

    with pytest.raises(BenchmarkError, match="bogus"):
        train_tiny(tmp_path, tmp_path / "ck", bogus=1)
