"""ForgeryTalker against fixtures made by the official code (`scripts/make_forgerytalker_fixtures.py`).

The fixtures were produced by the official repository's own model code at tiny sizes under
transformers 4.33.2 (see `meta.json`): release files of both training stages written with LAVIS's
save rule, per-path reference outputs of the official model loaded as its evaluation loads it, the
token ids of its beam search, and the full-size official state dict's names and shapes. Here those
files go through our converter and our model; every path must agree to 1e-4 and the token ids
exactly.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from baselines.forgerytalker.config import (
    ForgeryTalkerConfig, LanguageConfig, MaskConfig, PrompterConfig, QFormerConfig, TagEncoderConfig, VisionConfig,
)
from baselines.forgerytalker.convert import (
    Sources, convert, detect_stage, is_saved_regardless, official_keys, read_state_dict, trainable_in,
)
from benchmark.errors import BenchmarkError

FIXTURES = Path(__file__).parent / "fixtures" / "forgerytalker_official"
RELEASE = FIXTURES / "release"
ATOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_thread")


def fixture_config() -> ForgeryTalkerConfig:
    """Our config for the sizes the fixture script gave the official code (T5 and BERT sizes are
    read by the converter from their folders)."""
    meta = json.loads((FIXTURES / "meta.json").read_text())
    s = meta["sizes"]
    v, b, f, m = s["vision"], s["bert"], s["face_vit"], s["mask"]
    g = meta["generation"]
    cfg = ForgeryTalkerConfig(
        vision=VisionConfig(image_size=v["image"], patch_size=v["patch"], hidden_size=v["hidden"],
                            num_hidden_layers=v["depth"], num_attention_heads=v["heads"], intermediate_size=v["mlp"]),
        qformer=QFormerConfig(hidden_size=b["hidden"], num_hidden_layers=s["qformer_layers"],
                              num_attention_heads=b["heads"], intermediate_size=b["ff"],
                              max_position_embeddings=b["positions"], num_query_tokens=s["num_query_tokens"],
                              vocab_size=1),  # set from the BERT vocabulary below
        language=LanguageConfig(),
        prompter=PrompterConfig(image_size=v["image"], patch_size=f["patch"], hidden_size=f["hidden"],
                                num_hidden_layers=f["layers"], num_attention_heads=f["heads"],
                                intermediate_size=f["mlp"], coord_conv=True),
        tag_encoder=TagEncoderConfig(gate_heads=s["heads_8"]),
        mask=MaskConfig(cross_attention_heads=s["heads_8"], mlp_dim=m["mlp"], num_heads=s["heads_8"],
                        output_size=m["side"]),
        variant="official-fixture",
    )
    cfg.qformer.vocab_size = len((RELEASE / "bert-base-uncased" / "vocab.txt").read_text().split()) + 1  # + [DEC]
    cfg.generation.max_new_tokens = g["max_length"]   # the official generate() passes max_length as max_new_tokens
    cfg.generation.min_length = g["min_length"]
    cfg.generation.num_beams = g["num_beams"]
    return cfg


def sources(stage: str, **overrides) -> Sources:
    base = dict(lavis=RELEASE / f"dff_{stage}.pth", t5=RELEASE / "flan-t5", bert=RELEASE / "bert-base-uncased",
                eva_vit=RELEASE / "eva_vit_g.pth", face_vit=RELEASE / "face_vit.bin",
                instructblip=RELEASE / "instructblip.pth")
    base.update(overrides)
    return Sources(**base)


@pytest.fixture(scope="module", params=["pretrain", "finetune"])
def converted(request, tmp_path_factory):
    from baselines.forgerytalker.build import load_checkpoint

    stage = request.param
    out = tmp_path_factory.mktemp(f"converted_{stage}")
    report = convert(sources(stage), out, config=fixture_config())
    return {"stage": stage, "report": report, "model": load_checkpoint(out),
            "reference": torch.load(FIXTURES / f"reference_{stage}.pt", weights_only=True)}


@pytest.fixture(scope="module")
def samples():
    return torch.load(FIXTURES / "samples.pt", weights_only=True)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


# ---------------------------------------------------------------------- the fixtures are what they say
def test_fixtures_were_made_by_the_release_transformers() -> None:
    meta = json.loads((FIXTURES / "meta.json").read_text())
    assert meta["transformers"] == "4.33.2"
    assert meta["official_commit"]


# ---------------------------------------------------------------------- inventory at full size
def test_official_keys_equal_the_official_state_dict_at_full_size() -> None:
    with gzip.open(FIXTURES / "official_state_dict.json.gz", "rt", encoding="utf-8") as f:
        inventory = json.load(f)
    official = {k: tuple(v) for k, v in inventory["keys"].items()}
    ours = {k: spec.shape for k, spec in official_keys(ForgeryTalkerConfig.full()).items()}
    assert len(official) == 2253
    assert ours == official


def test_stage_rule_reproduces_what_lavis_saves_in_each_stage() -> None:
    with gzip.open(FIXTURES / "official_state_dict.json.gz", "rt", encoding="utf-8") as f:
        inventory = json.load(f)
    parameters = set(inventory["parameters"])
    for stage in ("pretrain", "finetune"):
        saved = set(inventory["saved_by_stage"][stage])
        predicted = {k for k in inventory["keys"]
                     if is_saved_regardless(k) or (k in parameters and trainable_in(stage, k))}
        assert predicted == saved, stage
        assert detect_stage(saved)[0] == stage


# ---------------------------------------------------------------------- conversion of both stages
def test_both_stages_convert_and_the_report_names_the_stage(converted) -> None:
    report, stage = converted["report"], converted["stage"]
    assert report["stage"] == stage
    dff = read_state_dict(RELEASE / f"dff_{stage}.pth")
    if stage == "pretrain":
        assert not any(k.startswith(("seg_proj.", "trans_layer.", "ln_vision.", "bert_model.")) for k in dff)
        assert set(report["initialised"]) == {"trans_layer.weight", "trans_layer.bias"}
        assert report["sources"]["instructblip"] == 3  # ln_vision.weight, ln_vision.bias, query_tokens
        assert "seg_proj.weight" in report["absent_optional"]
    else:
        assert report["initialised"] == {}
        assert report["sources"]["instructblip"] == 0 and report["sources"]["face_vit"] == 0
    # the Face-ViT's batch-norm statistics are buffers, saved in both stages (and moved by the
    # finetune stage's training, which runs the Face-ViT in train mode); the DFF file's values win
    # over the Face-ViT file's, as LAVIS loads the DFF file last
    face = read_state_dict(RELEASE / "face_vit.bin")
    key = "coord_conv_branch.1.running_mean"
    ours = converted["model"].prompter.coord_bn.running_mean
    assert torch.equal(ours, dff["multi_label_classifier." + key])
    assert torch.equal(ours, face[key]) == (stage == "pretrain")


def test_pretrain_stage_needs_instructblip_for_ln_vision_and_query_tokens(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError) as err:
        convert(sources("pretrain", instructblip=None), tmp_path / "out", config=fixture_config())
    message = str(err.value)
    assert "pretrain-stage" in message and "ln_vision and query_tokens from --instructblip" in message
    assert "\n" not in message and not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_names_the_stage_it_converted(tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    src = sources("pretrain")
    fixture_config().save(tmp_path / "config.json")
    rc = main(["convert", "forgerytalker", "--lavis", str(src.lavis), "--eva-vit", str(src.eva_vit), "--face-vit",
               str(src.face_vit), "--t5", str(src.t5), "--bert", str(src.bert), "--instructblip", str(src.instructblip),
               "--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "ck")])
    out = capsys.readouterr().out
    assert rc == 0 and "pretrain-stage DFF checkpoint" in out and "2 initialised as the official code does" in out
    report = json.loads((tmp_path / "ck" / "conversion.json").read_text())
    assert report["stage"] == "pretrain" and "trans_layer.weight" in report["initialised"]


def test_q_former_position_ids_come_from_the_checkpoint(converted) -> None:
    dff = read_state_dict(RELEASE / f"dff_{converted['stage']}.pth")
    kept = converted["model"].qformer.embeddings.position_ids
    assert torch.equal(kept, dff["Qformer.bert.embeddings.position_ids"])


# ---------------------------------------------------------------------- every path, as the official code computes it
@torch.no_grad()
def test_every_path_equals_the_official_code(converted, samples) -> None:
    model, ref, stage = converted["model"], converted["reference"], converted["stage"]
    pixels = model.normalize(samples["pixels"].float() / 255)
    diffs = {}
    embeds = model.encode_image(pixels)
    diffs["vision_embeds"] = max_diff(embeds, ref["vision_embeds"])
    diffs["face_vit_logits"] = max_diff(model.prompter(pixels), ref["face_vit_logits"])
    ctx = model.context(pixels, embeds)
    assert ctx.prompts == ref["prompts"] and ctx.label_strings == ref["label_strings"]
    if stage == "finetune":  # a pretrain-stage file lacks trans_layer: the official gate is random there
        diffs["gates"] = max_diff(ctx.gates, ref["gates"])
    diffs["mask_probabilities"] = max_diff(torch.sigmoid(model.mask_logits(embeds, ctx.label_strings)),
                                           ref["mask_probabilities"])
    queries = model.query_outputs(ctx.prompts, embeds)
    diffs["qformer_t5_inputs"] = max_diff(queries, ref["qformer_t5_inputs"])
    inputs, attention = model.encoder_inputs(ctx.prompts, queries)
    tok = model.tokenizers.t5
    target = tok(ref["captions_teacher"], padding="longest", truncation=True,
                 max_length=model.config.language.max_output_txt_len, return_tensors="pt")
    labels = target["input_ids"].masked_fill(target["input_ids"] == tok.pad_token_id, -100)
    logits = model.language_model(inputs_embeds=inputs, attention_mask=attention,
                                  decoder_attention_mask=target["attention_mask"], labels=labels).logits
    diffs["t5_logits"] = max_diff(logits, ref["t5_logits"])
    print(f"\n{stage}: max abs diff per path: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert all(v <= ATOL for v in diffs.values()), diffs


@torch.no_grad()
def test_generated_token_ids_equal_the_official_beam_search(converted, samples) -> None:
    model, ref = converted["model"], converted["reference"]
    pixels = model.normalize(samples["pixels"].float() / 255)
    embeds = model.encode_image(pixels)
    ctx = model.context(pixels, embeds)
    inputs, attention = model.encoder_inputs(ctx.prompts, model.query_outputs(ctx.prompts, embeds))
    want = ref["generated_ids"]
    eos = model.config.language.eos_token_id
    finished = (want == eos).any(dim=1)
    assert finished.any() and want.shape[1] < 1 + model.config.generation.max_new_tokens  # beams end by EOS
    ids = model.generate_ids(inputs, attention)
    assert torch.equal(ids, want)
    assert model.generate(pixels).captions == ref["generated_text"]
