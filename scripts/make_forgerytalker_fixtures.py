"""Make the ForgeryTalker parity fixtures by running the *official* DFF code at tiny sizes.

    python3 -m venv /tmp/offenv
    /tmp/offenv/bin/pip install torch==2.13.0 transformers==4.33.2 "numpy<2" sentencepiece scipy \
        omegaconf ml_collections safetensors
    git clone https://github.com/NattyLianJc/Generating-Attribution-Reports /tmp/official
    /tmp/offenv/bin/python scripts/make_forgerytalker_fixtures.py --official /tmp/official \
        --out tests/fixtures/forgerytalker_official

Run it with the release's transformers (4.33.2), never with this project's environment: the point
is that the model code, the T5 copy, the Q-Former, the Face-ViT, the mask decoder, the freezing
rule, LAVIS's checkpoint save rule and 4.33.2's beam search are the official ones. Nothing of the
official repository is copied here; it is imported from `--official` as it is, with these changes
made at run time only:

- imports the model never uses at inference are stubbed: LAVIS's registry (its decorator only
  records the class), dist/logging/file utilities and `clip_vit` (fairscale), and the three helpers
  `eva_vit.py` takes from timm
  (`drop_path`, `to_2tuple`, `trunc_normal_`, which have no torchvision-free install here);
- hard-coded sizes are shrunk: `create_eva_vit_g`'s ViT (width 1408 -> 32, depth 39 -> 2, heads,
  patch 14 -> 32), the Face-ViT config `CONFIGS["ViT-H_14"]` (mutated in place), and in
  `blip2_t5_instruct.py` the literal widths 1408 / 768 / 224*224 and 8 heads of its `nn.Linear`,
  `nn.MultiheadAttention`, `TwoWayTransformer` and `MaskDecoder` (mask 224x224 -> 16x16), through
  a size-translating stand-in for that module's `nn` and constructor wrappers;
- the component files the official code loads from hard-coded relative paths
  (`model_parameter/bert-base-uncased/...`, `eva_vit_g.pth`) are written, with random weights, in a
  scratch working directory; Flan-T5 and bert-base are replaced by tiny random models and tiny
  tokenizers (weights rounded to bfloat16-representable values, so the official cast of T5 to bf16
  is lossless);
- EVA is built with `vit_precision="fp32"` (a constructor argument) and, for the reference
  outputs only, T5 is cast back to fp32 after construction: the fixtures compare maths in fp32;
  mixed precision is tested separately.

What it does: build the official model; give it an "InstructBLIP" starting point (random Q-Former,
queries, ln_vision, t5_proj, saved as `instructblip.pth` like `instruct_blip_flanxl_trimmed.pth`);
apply the official `apply_training_strategy` (read from `train.py`) for "pretrain", take one SGD
step on the official loss, save with LAVIS's `RunnerBase._save_checkpoint` (read from
`runner_base.py`) -> `dff_pretrain.pth`; the same for "finetune" -> `dff_finetune.pth`. For each
file, a fresh official model is loaded as the official evaluation does (components, then the
InstructBLIP file, then the DFF file, `strict=False`), and its outputs on fixed images are saved
(`reference_<stage>.pt`): vision embeddings, Face-ViT logits, kept labels, prompts, gates, mask
probabilities, Q-Former outputs projected by `t5_proj`, T5 teacher-forced logits, and the token ids
of the official `generate` (beam search of transformers 4.33.2). A plain T5 beam-search fixture
(`beam_t5/`, `beam_search.pt`) covers the decoding rule on many inputs. Finally the full-size
official model is built on the meta device and its state-dict names and shapes, and the keys
LAVIS's save rule keeps in each stage, are written to `official_state_dict.json`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gzip
import json
import logging
import os
import platform
import sys
import types
from pathlib import Path

import torch

# ---------------------------------------------------------------------- tiny sizes
W = 32            # EVA width (1408)
VIT_DEPTH = 2     # (39)
VIT_HEADS = 4     # (16)
VIT_PATCH = 16    # (14)
IMAGE = 224
B = 32            # BERT / Q-Former width (768)
BERT_LAYERS = 2
QFORMER_LAYERS = 3
BERT_HEADS = 4
BERT_FF = 64
BERT_POSITIONS = 160
N_QUERY = 8
HEADS_8 = 4       # every "num_heads=8" of blip2_t5_instruct.py (mask cross-attention, gate, two-way transformer)
MASK_MLP = 64     # two-way transformer mlp_dim (2048)
MASK = 16         # mask side (224)
FACE = dict(hidden=32, mlp=64, heads=4, layers=4, patch=16)  # >= 4: its forward reads block layers // 2 >= 2
T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
N_IMAGES = 4
GENERATION = dict(num_beams=5, max_length=12, min_length=5)   # official generate() argument names
EOS_BOOST = 4.0   # EOS logit lift (x mean |lm_head|): captions end at different lengths
SEED = 0

CORPUS = [
    "The nose looks smeared and the left cheek has a repeated texture.",
    "The lips are waxy and the skin tone changes around the mouth.",
    "A seam runs around the eyes and the eyebrows look airbrushed.",
    "The forehead shows wrinkles that are too clean and the chin is blurred.",
]
REGIONS = ["eye", "pupil", "lip", "mouth", "nose", "ear", "cheek", "forehead", "chin", "jaw", "eyebrow", "tooth",
           "tongue", "beard", "mustache", "skin", "hair", "wrinkle", "freckle", "scar", "dimple"]


# ---------------------------------------------------------------------- stubs for imports
def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def install_stubs(official: Path) -> None:
    """Package shells for `lavis` and `vit` (their __init__ files import the whole training stack)
    and stand-ins for what the model modules import but never use at this point."""
    sys.path.insert(0, str(official))

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)

    def drop_path(x, drop_prob=0.0, training=False):
        if drop_prob == 0.0 or not training:
            return x
        raise NotImplementedError("drop path is not used here")

    _module("timm", None)
    _module("timm.models", None)
    _module("timm.models.layers", None, drop_path=drop_path, to_2tuple=lambda x: x if isinstance(x, tuple) else (x, x),
            trunc_normal_=trunc_normal_)
    _module("timm.models.registry", None, register_model=lambda f: f)
    _module("timm.models.hub", None)
    _module("lavis", official / "lavis")
    _module("lavis.common", official / "lavis" / "common")
    registry = types.SimpleNamespace(register_model=lambda name: (lambda cls: cls),
                                     register_processor=lambda name: (lambda cls: cls))
    _module("lavis.common.registry", None, registry=registry)
    _module("lavis.common.dist_utils", None, download_cached_file=lambda *a, **k: None,
            is_dist_avail_and_initialized=lambda: False, get_rank=lambda: 0, main_process=lambda f: f)
    _module("lavis.common.utils", None, is_url=lambda s: False, get_abs_path=lambda p: p)
    _module("lavis.common.logger", None, MetricLogger=object)
    _module("lavis.models", official / "lavis" / "models")
    _module("lavis.models.blip2_models", official / "lavis" / "models" / "blip2_models")
    _module("lavis.models.clip_vit", None, create_clip_vit_L=None)
    _module("vit", official / "vit")
    _module("vit.models", official / "vit" / "models")


def official_function(path: Path, name: str, cls: str | None = None, **globals_):
    """A function of the official code, compiled from its file as it is (decorators dropped), so a
    rule is run rather than re-typed: `apply_training_strategy` (train.py), `_save_checkpoint`
    (runner_base.py)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = tree.body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == name)
    node.decorator_list = []
    module = ast.Module(body=[node], type_ignores=[])
    namespace = dict(globals_)
    exec(compile(module, str(path), "exec"), namespace)  # noqa: S102 - the official file, by design
    return namespace[name]


# ---------------------------------------------------------------------- size patches
SIZES = {1408: W, 768: B, 224 * 224: MASK * MASK}


class SizedNN(types.ModuleType):
    """`torch.nn` for blip2_t5_instruct.py, with its literal widths translated to the tiny ones."""

    def __init__(self) -> None:
        super().__init__("sized_nn")

    def __getattr__(self, name):
        return getattr(torch.nn, name)

    @staticmethod
    def Linear(in_features, out_features, *args, **kwargs):  # noqa: N802 - torch's name
        return torch.nn.Linear(SIZES.get(in_features, in_features), SIZES.get(out_features, out_features),
                               *args, **kwargs)

    @staticmethod
    def MultiheadAttention(embed_dim, num_heads, *args, **kwargs):  # noqa: N802
        return torch.nn.MultiheadAttention(SIZES.get(embed_dim, embed_dim), HEADS_8 if num_heads == 8 else num_heads,
                                           *args, **kwargs)


def patch_sizes(full: bool) -> None:
    import lavis.models.blip2_models.blip2_t5_instruct as dff
    import lavis.models.eva_vit as eva
    from vit.models.modeling import CONFIGS

    if full:
        return
    original_vit = eva.VisionTransformer

    def tiny_eva(**kwargs):
        kwargs.update(embed_dim=W, depth=VIT_DEPTH, num_heads=VIT_HEADS, patch_size=VIT_PATCH)
        return original_vit(**kwargs)

    eva.VisionTransformer = tiny_eva
    face = CONFIGS["ViT-H_14"]
    face.patches.size = (FACE["patch"], FACE["patch"])
    face.hidden_size = FACE["hidden"]
    face.transformer.mlp_dim = FACE["mlp"]
    face.transformer.num_heads = FACE["heads"]
    face.transformer.num_layers = FACE["layers"]
    dff.nn = SizedNN()
    original_decoder, original_two_way = dff.MaskDecoder, dff.TwoWayTransformer
    dff.TwoWayTransformer = lambda depth, embedding_dim, mlp_dim, num_heads: original_two_way(
        depth=depth, embedding_dim=SIZES[embedding_dim], mlp_dim=MASK_MLP, num_heads=HEADS_8)
    dff.MaskDecoder = lambda transformer, transformer_dim: original_decoder(
        transformer=transformer, transformer_dim=SIZES[transformer_dim], mask_spatial_size=MASK)


# ---------------------------------------------------------------------- component files
def perturb(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.1) -> None:
    """Move every float tensor away from its (often trivial) initial value, so that a wrongly mapped
    norm weight or bias cannot go unnoticed; variances stay positive."""
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            noise = scale * torch.randn(t.shape, generator=generator)
            if name.endswith("running_var"):
                t.copy_((t + noise).abs() + 0.5)
            else:
                t.add_(noise.to(t.dtype))


def bf16_representable(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.copy_(t.bfloat16().float())


def write_tokenizers(bert_dir: Path, t5_dir: Path) -> None:
    """bert: a WordPiece vocab.txt (BertTokenizer); t5: a tokenizer.json (T5TokenizerFast) whose
    ids follow T5's specials (<pad>=0, </s>=1, <unk>=2) and its '$A </s>' template."""
    import re

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    prompt_words = ("the following facial areas may have been modified by ai these might manipulated either "
                    "replacing entire face or altering specific features please identify and describe why they "
                    "appear unnatural")
    words = sorted({w for text in CORPUS + [prompt_words, " ".join(REGIONS)]
                    for w in re.findall(r"\w+|[^\w\s]", text.lower())} | {".", ",", ":"})
    bert_dir.mkdir(parents=True, exist_ok=True)
    (bert_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    (bert_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512,
                                                                "tokenizer_class": "BertTokenizer"}))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    texts = CORPUS + [prompt_words.capitalize(), "The following facial areas may have been modified by AI: "
                      + ", ".join(REGIONS) + ".", " ".join(REGIONS)]
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    t5_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(t5_dir / "tokenizer.json"))
    (t5_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
        "model_max_length": 512}))
    (t5_dir / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<pad>", "eos_token": "</s>",
                                                                "unk_token": "<unk>"}))


def write_components(root: Path, generator: torch.Generator) -> dict[str, Path]:
    """EVA, Face-ViT, BERT and T5 files where (and as) the official code reads them."""
    import lavis.models.eva_vit as eva
    from lavis.models.blip2_models.modeling_t5 import T5Config, T5ForConditionalGeneration
    from transformers import BertConfig, BertModel
    from vit.models.modeling import CONFIGS, VisionTransformer

    bert_dir = root / "model_parameter" / "bert-base-uncased"   # official hard-coded relative path
    t5_dir = root / "flan-t5"
    write_tokenizers(bert_dir, t5_dir)
    n_bert = len((bert_dir / "vocab.txt").read_text().split())
    bert_cfg = BertConfig(vocab_size=n_bert, hidden_size=B, num_hidden_layers=BERT_LAYERS,
                          num_attention_heads=BERT_HEADS, intermediate_size=BERT_FF,
                          max_position_embeddings=BERT_POSITIONS)
    torch.manual_seed(SEED + 1)
    bert = BertModel(bert_cfg)
    perturb(bert, generator)
    bert.save_pretrained(str(bert_dir), safe_serialization=False)
    # EVA: the official create_eva_vit_g loads this file (strict=False) after building the ViT
    torch.manual_seed(SEED + 2)
    vit = eva.VisionTransformer(img_size=IMAGE, patch_size=14, use_mean_pooling=False, embed_dim=1408, depth=39,
                                num_heads=16, mlp_ratio=4.3637, qkv_bias=True,
                                norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6))
    perturb(vit, generator)
    torch.save(vit.state_dict(), bert_dir / "eva_vit_g.pth")
    torch.manual_seed(SEED + 3)
    face = VisionTransformer(CONFIGS["ViT-H_14"], img_size=IMAGE, num_classes=21)
    perturb(face, generator, 0.3)
    torch.save(face.state_dict(), root / "face_vit.bin")
    n_t5 = json.loads((t5_dir / "tokenizer.json").read_text())["model"]["vocab"].__len__()
    t5_cfg = T5Config(vocab_size=n_t5, d_model=T5["d_model"], d_kv=T5["d_kv"], d_ff=T5["d_ff"],
                      num_layers=T5["num_layers"], num_decoder_layers=T5["num_layers"], num_heads=T5["num_heads"],
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1, dropout_rate=0.1)
    torch.manual_seed(SEED + 4)
    t5 = T5ForConditionalGeneration(t5_cfg)
    perturb(t5, generator)
    with torch.no_grad():  # make EOS likely, so that finished and length-cut beams compete in generate()
        t5.lm_head.weight[t5_cfg.eos_token_id] += EOS_BOOST * t5.lm_head.weight.abs().mean()
    bf16_representable(t5)
    t5.save_pretrained(str(t5_dir), safe_serialization=True)
    return {"bert": bert_dir, "t5": t5_dir, "face_vit": root / "face_vit.bin", "eva_vit": bert_dir / "eva_vit_g.pth"}


def build_official(files: dict[str, Path]):
    from lavis.models.blip2_models.blip2_t5_instruct import Blip2T5Instruct

    return Blip2T5Instruct(vit_model="eva_clip_g", img_size=IMAGE, vit_precision="fp32", freeze_vit=True,
                           num_query_token=N_QUERY, t5_model=str(files["t5"]), max_txt_len=128,
                           max_output_txt_len=60, qformer_text_input=True, num_classes=21,
                           multi_label_classifier_path=str(files["face_vit"]), bert_folder=str(files["bert"]),
                           num_hidden_layers=QFORMER_LAYERS)


# ---------------------------------------------------------------------- data
def make_samples(generator: torch.Generator) -> dict:
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)   # blip_image_eval normalisation
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    pixels = torch.randint(0, 256, (N_IMAGES, 3, IMAGE, IMAGE), generator=generator, dtype=torch.uint8)
    images = pixels.float() / 255
    multilabel = (torch.rand(N_IMAGES, 21, generator=generator) > 0.6).float()
    masks = (torch.rand(N_IMAGES, 1, MASK, MASK, generator=generator) > 0.5).float()
    return {"pixels": pixels, "image": (images - mean) / std, "multilabel": multilabel, "mask": masks,
            "caption": [CORPUS[i % len(CORPUS)] for i in range(N_IMAGES)]}


# ---------------------------------------------------------------------- steps
def train_and_save(official: Path, model, samples: dict, stage: str, out: Path) -> Path:
    apply_training_strategy = official_function(official / "train.py", "apply_training_strategy")
    save_checkpoint = official_function(official / "lavis" / "runners" / "runner_base.py", "_save_checkpoint",
                                        cls="RunnerBase", torch=torch, os=os, logging=logging)
    apply_training_strategy(model, stage)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05)   # no optimizer state: keeps the release file small
    loss = model(samples)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()
    runner = types.SimpleNamespace(unwrap_dist_model=lambda m: m, model=model, optimizer=optimizer,
                                   config=types.SimpleNamespace(to_dict=lambda: {"run": {"training_stage": stage}}),
                                   scaler=None, output_dir=str(out))
    save_checkpoint(runner, 1, is_best=True)
    target = out / f"dff_{stage}.pth"
    (out / "checkpoint_best.pth").rename(target)
    return target


@torch.no_grad()
def references(files: dict[str, Path], instructblip: Path, dff: Path, samples: dict) -> dict:
    """The official model as the evaluation loads it, and its outputs on `samples`."""
    torch.manual_seed(SEED + 10)
    model = build_official(files)
    model.load_from_pretrained(str(instructblip))
    model.load_checkpoint(str(dff))
    model.t5_model.float()
    model.eval()
    px = samples["image"]
    out: dict = {}
    out["vision_embeds"] = model.ln_vision(model.visual_encoder(px))
    out["face_vit_logits"] = model.multi_label_classifier(px)[0]
    token_gates: list[torch.Tensor] = []
    hook = model.fc_layer.register_forward_hook(lambda m, i, o: token_gates.append(o))
    image_embeds, prompts, labels = model._get_multimodal_context(px)
    hook.remove()
    # the official gate of each kept label: sigmoid(fc_layer(...)).mean over the label's tokens
    out["gates"] = torch.cat([torch.sigmoid(t).mean(dim=1).squeeze(-1) for t in token_gates]) if token_gates \
        else torch.empty(0)
    out["prompts"], out["label_strings"] = prompts, labels
    out["mask_probabilities"] = model._get_mask_prediction(image_embeds, labels)
    model.training_stage = "finetune"
    forward = model.forward_finetune(samples)
    out["captions_teacher"] = samples["caption"]
    out["qformer_t5_inputs"] = forward["qformer_features"]
    out["t5_logits"] = forward["t5_logits"]
    generated: list[torch.Tensor] = []
    t5_generate = model.t5_model.generate

    def recording_generate(*args, **kwargs):
        ids = t5_generate(*args, **kwargs)
        generated.append(ids)
        return ids

    model.t5_model.generate = recording_generate
    text, seg = model.generate({"image": px}, **GENERATION, return_seg=True)
    out["generated_ids"], out["generated_text"] = generated[0], text
    assert torch.allclose(seg, out["mask_probabilities"])
    return out


@torch.no_grad()
def beam_fixture(root: Path, generator: torch.Generator) -> dict:
    """Many inputs through a plain (transformers) T5's beam search, with EOS made likely, so that
    finished and cut hypotheses compete as in real captions."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=48, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
                   pad_token_id=0, eos_token_id=1)
    torch.manual_seed(SEED + 20)
    model = T5ForConditionalGeneration(cfg).eval()
    perturb(model, generator, 0.5)
    model.lm_head.weight[1] *= 0.0   # EOS gets a bias instead, varied per input through the encoder
    model.save_pretrained(str(root / "beam_t5"), safe_serialization=True)
    runs = []
    for eos_bias, max_new in ((1.5, 8), (2.5, 8), (3.5, 10), (2.0, 6)):
        model.lm_head.weight[1].zero_()
        model.lm_head.weight[1] += eos_bias * model.lm_head.weight.abs().mean()
        embeds = torch.randn(24, 6, 32, generator=generator)
        mask = torch.ones(24, 6, dtype=torch.long)
        mask[::3, 4:] = 0
        settings = dict(num_beams=5, max_new_tokens=max_new, min_length=3, repetition_penalty=1.5, length_penalty=1.0)
        ids = model.generate(inputs_embeds=embeds, attention_mask=mask, do_sample=False, **settings)
        runs.append({"eos_row": model.lm_head.weight[1].clone(), "inputs_embeds": embeds, "attention_mask": mask,
                     "settings": settings, "ids": ids})
    return {"runs": runs}


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter registered meanwhile moves to the meta device (accelerate's
    `init_empty_weights` trick): the 4.9 B-parameter model is built without its memory, while the
    constructors' small CPU computations (e.g. EVA's drop-path schedule) still run."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def full_size_inventory(official: Path, work: Path) -> dict:
    """Names and shapes of the full-size official model's state dict (parameters on the meta device, with
    the release's sizes), and the keys LAVIS's save rule keeps in each training stage."""
    import lavis.models.blip2_models.blip2_t5_instruct as dff
    from lavis.models.blip2_models.modeling_t5 import T5Config, T5ForConditionalGeneration
    from transformers import BertConfig, BertModel
    from vit.models.modeling import CONFIGS, VisionTransformer

    bert_dir = work / "full" / "model_parameter" / "bert-base-uncased"
    t5_dir = work / "full" / "flan-t5-xl"
    bert_dir.mkdir(parents=True, exist_ok=True)
    t5_dir.mkdir(parents=True, exist_ok=True)
    # bert-base-uncased's config and a vocabulary of its size; Flan-T5-XL's config
    BertConfig().save_pretrained(str(bert_dir))
    (bert_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                                  + [f"w{i}" for i in range(30522 - 5)]) + "\n")
    T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
             feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
             eos_token_id=1).save_pretrained(str(t5_dir))
    write_tokenizers(work / "full" / "tiny-bert-tokenizer", t5_dir)   # any tokenizer: only sizes matter here
    torch.save({}, bert_dir / "eva_vit_g.pth")
    # weights are not loaded on the meta device: from_pretrained builds from the config
    saved = (T5ForConditionalGeneration.from_pretrained, BertModel.from_pretrained,
             dff.Blip2T5Instruct.load_vit_pretrained_weights)
    T5ForConditionalGeneration.from_pretrained = classmethod(lambda cls, path, config: cls(config))
    BertModel.from_pretrained = classmethod(lambda cls, path: cls(BertConfig.from_pretrained(path)))
    dff.Blip2T5Instruct.load_vit_pretrained_weights = (
        lambda self, path, num_classes=21: VisionTransformer(CONFIGS["ViT-H_14"], img_size=224,
                                                             num_classes=num_classes))
    cwd = Path.cwd()
    os.chdir(work / "full")
    try:
        with parameters_on_meta():
            model = dff.Blip2T5Instruct(vit_model="eva_clip_g", img_size=224, vit_precision="fp16", freeze_vit=True,
                                        num_query_token=32, t5_model=str(t5_dir), qformer_text_input=True,
                                        num_classes=21, multi_label_classifier_path="face_vit.bin",
                                        bert_folder=str(bert_dir), num_hidden_layers=12)
    finally:
        os.chdir(cwd)
        T5ForConditionalGeneration.from_pretrained, BertModel.from_pretrained = saved[0], saved[1]
        dff.Blip2T5Instruct.load_vit_pretrained_weights = saved[2]
    state = model.state_dict()
    parameters = {n for n, _ in model.named_parameters()}
    inventory = {"keys": {k: list(v.shape) for k, v in state.items()}, "parameters": sorted(parameters),
                 "saved_by_stage": {}}
    apply_training_strategy = official_function(official / "train.py", "apply_training_strategy")
    captured: dict = {}
    torch_shim = types.SimpleNamespace(save=lambda obj, path: captured.update(obj))
    save_checkpoint = official_function(official / "lavis" / "runners" / "runner_base.py", "_save_checkpoint",
                                        cls="RunnerBase", torch=torch_shim, os=os, logging=logging)
    for stage in ("pretrain", "finetune"):
        apply_training_strategy(model, stage)
        captured.clear()
        runner = types.SimpleNamespace(unwrap_dist_model=lambda m: m, model=model,
                                       optimizer=types.SimpleNamespace(state_dict=lambda: {}),
                                       config=types.SimpleNamespace(to_dict=lambda: {}), scaler=None, output_dir="")
        save_checkpoint(runner, 0, is_best=True)
        inventory["saved_by_stage"][stage] = sorted(captured["model"])
    return inventory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="a checkout of the official repository")
    parser.add_argument("--out", required=True, type=Path, help="fixture folder to write")
    parser.add_argument("--official-commit", help="the commit of that checkout (recorded in meta.json)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/forgerytalker_fixture_work"),
                        help="scratch working directory (the official code reads relative paths)")
    args = parser.parse_args()
    import transformers

    official, out, work = args.official.resolve(), args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    install_stubs(official)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    os.chdir(work)
    inventory = full_size_inventory(official, work)
    data = json.dumps(inventory, sort_keys=True).encode("utf-8")
    (out / "official_state_dict.json.gz").write_bytes(gzip.compress(data, mtime=0))  # byte-reproducible
    patch_sizes(full=False)
    files = write_components(work, generator)
    torch.manual_seed(SEED + 5)
    model = build_official(files)
    # an "InstructBLIP" starting point for what the DFF model takes from instruct_blip_flanxl_trimmed.pth
    for part in (model.Qformer, model.ln_vision, model.t5_proj):
        perturb(part, generator)
    with torch.no_grad():
        model.query_tokens.add_(0.5 * torch.randn(model.query_tokens.shape, generator=generator))
    for part in (model.mask_decoder, model.cross_attention_layer, model.gate_cross_attention_layer, model.prompt_proj,
                 model.fc_layer, model.trans_layer):
        perturb(part, generator, 0.3)
    instructblip = work / "instructblip.pth"
    torch.save({"model": {k: v.clone() for k, v in model.state_dict().items()
                          if k.startswith(("Qformer.", "query_tokens", "ln_vision.", "t5_proj."))}}, instructblip)
    samples = make_samples(generator)
    torch.save({k: samples[k] for k in ("pixels", "multilabel", "mask", "caption")}, out / "samples.pt")
    stage_files = {stage: train_and_save(official, model, samples, stage, work) for stage in ("pretrain", "finetune")}
    release = out / "release"
    release.mkdir(exist_ok=True)
    for name, path in [("dff_pretrain.pth", stage_files["pretrain"]), ("dff_finetune.pth", stage_files["finetune"]),
                       ("instructblip.pth", instructblip), ("eva_vit_g.pth", files["eva_vit"]),
                       ("face_vit.bin", files["face_vit"])]:
        (release / name).write_bytes(path.read_bytes())
    for folder, name in ((files["t5"], "flan-t5"), (files["bert"], "bert-base-uncased")):
        (release / name).mkdir(exist_ok=True)
        for f in folder.iterdir():
            if f.name != "eva_vit_g.pth":
                (release / name / f.name).write_bytes(f.read_bytes())
    for stage, path in stage_files.items():
        torch.save(references(files, instructblip, path, samples), out / f"reference_{stage}.pt")
    torch.save(beam_fixture(out, generator), out / "beam_search.pt")
    meta = {
        "made_by": "scripts/make_forgerytalker_fixtures.py", "official_commit": args.official_commit,
        "transformers": transformers.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "sizes": {"vision": {"hidden": W, "depth": VIT_DEPTH, "heads": VIT_HEADS, "patch": VIT_PATCH,
                             "mlp": int(W * 4.3637), "image": IMAGE},
                  "bert": {"hidden": B, "layers": BERT_LAYERS, "heads": BERT_HEADS, "ff": BERT_FF,
                           "positions": BERT_POSITIONS},
                  "qformer_layers": QFORMER_LAYERS, "num_query_tokens": N_QUERY, "heads_8": HEADS_8,
                  "mask": {"side": MASK, "mlp": MASK_MLP}, "face_vit": FACE, "t5": T5},
        "generation": GENERATION, "samples": N_IMAGES,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
