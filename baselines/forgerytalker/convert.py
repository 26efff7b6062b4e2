"""Official ForgeryTalker (DFF) weights -> this implementation's checkpoint folder.

Sources, as the official code assembles its model (later sources only fill what earlier ones lack,
the precedence of LAVIS's loading order: DFF checkpoint > InstructBLIP checkpoint > components):

- `--lavis`: the released DFF checkpoint (`LianJC/DFF-InstructBLIP-Detection`, a LAVIS .pth with
  a "model" state dict). LAVIS saves only parameters that required grad (plus buffers and the tied
  T5 embedding copies), and what required grad depends on the training stage (see `trainable_in`):
  a "finetune"-stage file holds the Q-Former, `query_tokens`, `t5_proj`, `ln_vision`, the
  tag-encoder BERT, the gate, the mask path and the Face-ViT (with its batch-norm statistics); a
  "pretrain"-stage file holds the Q-Former, `t5_proj`, the mask path and the gate's attention and
  output layer only (plus the Face-ViT's batch-norm statistics, which are buffers). Neither holds
  the frozen EVA ViT or T5. The stage is detected from the keys and reported; `trans_layer`, never
  saved in the pretrain stage and loaded from no component file, is initialised as the official
  code initialises it (`RANDOMLY_INITIALISED`).
- `--eva-vit`: `eva_vit_g.pth` (the frozen vision encoder; LAVIS builds a 39-block ViT-g from it).
- `--instructblip`: optional `instruct_blip_flanxl_trimmed.pth`, for a DFF checkpoint saved in
  the "pretrain" stage (frozen `ln_vision` and `query_tokens` are not saved there; the official
  evaluation loads them from this file before the DFF checkpoint).
- `--face-vit`: the Face-ViT classifier .bin (`LianJC/Face-ViT-MultiLabel`), used when the DFF
  checkpoint lacks `multi_label_classifier.*`.
- `--t5`: the local Flan-T5-XL folder (frozen LM; also its tokenizer).
- `--bert`: the local bert-base-uncased folder (tokenizer; tag-encoder weights if absent).

Every official key is either mapped (`RULES`) or deliberately unused (`UNUSED`, never required); the DFF
checkpoint must hold official keys only (anything else is refused, naming the keys), and every
required key must come from some source (missing keys are refused, naming them). Shapes are
checked against the config (`ForgeryTalkerConfig.full()` unless another is given; the T5 and
BERT sizes are read from their folders' config.json). The result loads strictly into
`ForgeryTalker`; `conversion.json` in the output lists what came from where and what was left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from baselines.forgerytalker.config import ForgeryTalkerConfig, LanguageConfig, TagEncoderConfig
from benchmark.errors import BenchmarkError

Shape = tuple[int, ...]


# ---------------------------------------------------------------------- the official inventory
@dataclass(frozen=True)
class OfficialKey:
    shape: Shape
    required: bool = True   # False: may be absent (constant buffers, tied copies, version-dependent)


def official_keys(cfg: ForgeryTalkerConfig) -> dict[str, OfficialKey]:
    """Every entry of the official model's state dict (LAVIS `Blip2T5Instruct` with the DFF
    additions, transformers 4.33 as pinned by the release) and its shape, for `cfg`'s sizes."""
    keys: dict[str, OfficialKey] = {}

    def add(name: str, *shape: int, required: bool = True) -> None:
        keys[name] = OfficialKey(tuple(shape), required)

    def linear(name: str, out: int, inp: int, bias: bool = True) -> None:
        add(f"{name}.weight", out, inp)
        if bias:
            add(f"{name}.bias", out)

    def norm(name: str, dim: int) -> None:
        add(f"{name}.weight", dim)
        add(f"{name}.bias", dim)

    v, q, t, p, b, m = cfg.vision, cfg.qformer, cfg.language, cfg.prompter, cfg.tag_encoder, cfg.mask
    W = v.hidden_size
    # EVA ViT (lavis/models/eva_vit.py) + ln_vision
    add("visual_encoder.cls_token", 1, 1, W)
    add("visual_encoder.pos_embed", 1, v.num_patches + 1, W)
    add("visual_encoder.patch_embed.proj.weight", W, 3, v.patch_size, v.patch_size)
    add("visual_encoder.patch_embed.proj.bias", W)
    for i in range(v.num_hidden_layers):
        pre = f"visual_encoder.blocks.{i}"
        norm(f"{pre}.norm1", W)
        add(f"{pre}.attn.q_bias", W)
        add(f"{pre}.attn.v_bias", W)
        linear(f"{pre}.attn.qkv", 3 * W, W, bias=False)
        linear(f"{pre}.attn.proj", W, W)
        norm(f"{pre}.norm2", W)
        linear(f"{pre}.mlp.fc1", v.intermediate_size, W)
        linear(f"{pre}.mlp.fc2", W, v.intermediate_size)
    norm("ln_vision", W)
    # Q-Former (lavis/models/blip2_models/Qformer.py, BertLMHeadModel with cls=None)
    H = q.hidden_size
    add("Qformer.bert.embeddings.word_embeddings.weight", q.vocab_size, H)
    add("Qformer.bert.embeddings.position_embeddings.weight", q.max_position_embeddings, H)
    norm("Qformer.bert.embeddings.LayerNorm", H)
    add("Qformer.bert.embeddings.position_ids", 1, q.max_position_embeddings, required=False)
    for i in range(q.num_hidden_layers):
        pre = f"Qformer.bert.encoder.layer.{i}"
        blocks = ["attention"] + (["crossattention"] if i % q.cross_attention_frequency == 0 else [])
        for blk in blocks:
            kv = W if blk == "crossattention" else H
            linear(f"{pre}.{blk}.self.query", H, H)
            linear(f"{pre}.{blk}.self.key", H, kv)
            linear(f"{pre}.{blk}.self.value", H, kv)
            linear(f"{pre}.{blk}.output.dense", H, H)
            norm(f"{pre}.{blk}.output.LayerNorm", H)
        for suffix in ("", "_query"):
            linear(f"{pre}.intermediate{suffix}.dense", q.intermediate_size, H)
            linear(f"{pre}.output{suffix}.dense", H, q.intermediate_size)
            norm(f"{pre}.output{suffix}.LayerNorm", H)
    add("query_tokens", 1, q.num_query_tokens, H)
    linear("t5_proj", t.d_model, H)
    # T5 (lavis/models/blip2_models/modeling_t5.py == transformers T5ForConditionalGeneration)
    D, inner = t.d_model, t.num_heads * t.d_kv
    add("t5_model.shared.weight", t.vocab_size, D)
    add("t5_model.encoder.embed_tokens.weight", t.vocab_size, D, required=False)
    add("t5_model.decoder.embed_tokens.weight", t.vocab_size, D, required=False)
    add("t5_model.lm_head.weight", t.vocab_size, D, required=not t.tie_word_embeddings)

    def t5_attention(pre: str, bias: bool) -> None:
        for x in ("q", "k", "v"):
            add(f"{pre}.{x}.weight", inner, D)
        add(f"{pre}.o.weight", D, inner)
        if bias:
            add(f"{pre}.relative_attention_bias.weight", t.relative_attention_num_buckets, t.num_heads)

    def t5_ff(pre: str) -> None:
        if t.feed_forward_proj.startswith("gated"):
            add(f"{pre}.DenseReluDense.wi_0.weight", t.d_ff, D)
            add(f"{pre}.DenseReluDense.wi_1.weight", t.d_ff, D)
        else:
            add(f"{pre}.DenseReluDense.wi.weight", t.d_ff, D)
        add(f"{pre}.DenseReluDense.wo.weight", D, t.d_ff)
        add(f"{pre}.layer_norm.weight", D)

    for i in range(t.num_layers):
        pre = f"t5_model.encoder.block.{i}.layer"
        t5_attention(f"{pre}.0.SelfAttention", i == 0)
        add(f"{pre}.0.layer_norm.weight", D)
        t5_ff(f"{pre}.1")
    add("t5_model.encoder.final_layer_norm.weight", D)
    for i in range(t.num_decoder_layers):
        pre = f"t5_model.decoder.block.{i}.layer"
        t5_attention(f"{pre}.0.SelfAttention", i == 0)
        add(f"{pre}.0.layer_norm.weight", D)
        t5_attention(f"{pre}.1.EncDecAttention", False)
        add(f"{pre}.1.layer_norm.weight", D)
        t5_ff(f"{pre}.2")
    add("t5_model.decoder.final_layer_norm.weight", D)
    # heads of the official model that inference never uses: optional (a pretrain-stage file lacks seg_proj)
    for name, out, inp in (("seg_proj", m.output_size * m.output_size, H), ("mlm_head", q.vocab_size - 1, H),
                           ("text_proj", W, D)):
        add(f"{name}.weight", out, inp, required=False)
        add(f"{name}.bias", out, required=False)
    # tag encoder (transformers BertModel, bert-base-uncased) + gate
    B = b.hidden_size
    add("bert_model.embeddings.word_embeddings.weight", b.vocab_size, B)
    add("bert_model.embeddings.position_embeddings.weight", b.max_position_embeddings, B)
    add("bert_model.embeddings.token_type_embeddings.weight", b.type_vocab_size, B)
    norm("bert_model.embeddings.LayerNorm", B)
    # (transformers 4.33's BertModel keeps position_ids / token_type_ids out of its state dict;
    #  files from older versions that have them are accepted: see UNUSED)
    for i in range(b.num_hidden_layers):
        pre = f"bert_model.encoder.layer.{i}"
        for x in ("query", "key", "value"):
            linear(f"{pre}.attention.self.{x}", B, B)
        linear(f"{pre}.attention.output.dense", B, B)
        norm(f"{pre}.attention.output.LayerNorm", B)
        linear(f"{pre}.intermediate.dense", b.intermediate_size, B)
        linear(f"{pre}.output.dense", B, b.intermediate_size)
        norm(f"{pre}.output.LayerNorm", B)
    add("bert_model.pooler.dense.weight", B, B, required=False)  # the gate reads last_hidden_state only
    add("bert_model.pooler.dense.bias", B, required=False)
    add("gate_cross_attention_layer.in_proj_weight", 3 * B, B)
    add("gate_cross_attention_layer.in_proj_bias", 3 * B)
    linear("gate_cross_attention_layer.out_proj", B, B)
    linear("trans_layer", B, W)
    linear("fc_layer", 1, B)
    # mask path (mask_decoder.py / TwoWayTransformer.py) + its projections
    linear("prompt_proj", W, D)
    add("cross_attention_layer.in_proj_weight", 3 * W, W)
    add("cross_attention_layer.in_proj_bias", 3 * W)
    linear("cross_attention_layer.out_proj", W, W)
    add("mask_decoder.mask_tokens", 1, m.num_mask_tokens, W)
    half = W // m.attention_downsample_rate

    def sam_attention(pre: str, internal: int) -> None:
        for x in ("q_proj", "k_proj", "v_proj"):
            linear(f"{pre}.{x}", internal, W)
        linear(f"{pre}.out_proj", W, internal)

    for i in range(m.depth):
        pre = f"mask_decoder.transformer.layers.{i}"
        sam_attention(f"{pre}.self_attn", W)
        sam_attention(f"{pre}.cross_attn_token_to_image", half)
        sam_attention(f"{pre}.cross_attn_image_to_token", half)
        linear(f"{pre}.mlp.lin1", m.mlp_dim, W)
        linear(f"{pre}.mlp.lin2", W, m.mlp_dim)
        for k in range(1, 5):
            norm(f"{pre}.norm{k}", W)
    sam_attention("mask_decoder.transformer.final_attn_token_to_image", half)
    norm("mask_decoder.transformer.norm_final_attn", W)
    for mlp, out in (("output_upscaling_mlp", m.output_size ** 2), ("output_hypernetworks_mlps", 1 + m.label_max_tokens)):
        dims = [W] * m.mlp_layers + [out]
        for k in range(m.mlp_layers):
            linear(f"mask_decoder.{mlp}.layers.{k}", dims[k + 1], dims[k])
    # Face-ViT prompter (vit/models/modeling.py VisionTransformer, ViT-H_14 + CNN branch)
    P = p.hidden_size
    pre = "multi_label_classifier"
    add(f"{pre}.transformer.embeddings.patch_embeddings.weight", P, 3, p.patch_size, p.patch_size)
    add(f"{pre}.transformer.embeddings.patch_embeddings.bias", P)
    add(f"{pre}.transformer.embeddings.position_embeddings", 1, (p.image_size // p.patch_size) ** 2 + 1, P)
    add(f"{pre}.transformer.embeddings.cls_token", 1, 1, P)
    for i in range(p.num_hidden_layers):
        blk = f"{pre}.transformer.encoder.layer.{i}"
        norm(f"{blk}.attention_norm", P)
        norm(f"{blk}.ffn_norm", P)
        linear(f"{blk}.ffn.fc1", p.intermediate_size, P)
        linear(f"{blk}.ffn.fc2", P, p.intermediate_size)
        for x in ("query", "key", "value", "out"):
            linear(f"{blk}.attn.{x}", P, P)
    norm(f"{pre}.transformer.encoder.encoder_norm", P)
    linear(f"{pre}.head", len(cfg.labels), P)
    if p.coord_conv:
        add(f"{pre}.coord_conv_branch.0.conv.weight", P, 7, 3, 3)
        add(f"{pre}.coord_conv_branch.0.conv.bias", P)
        add(f"{pre}.conv_branch2.0.weight", P, P, 5, 5)
        add(f"{pre}.conv_branch2.0.bias", P)
        for bn in ("coord_conv_branch.1", "conv_branch2.1"):
            norm(f"{pre}.{bn}", P)
            add(f"{pre}.{bn}.running_mean", P)
            add(f"{pre}.{bn}.running_var", P)
            add(f"{pre}.{bn}.num_batches_tracked")
    return keys


# ---------------------------------------------------------------------- training stages
# LAVIS's `_save_checkpoint` writes the state dict minus every *parameter* that does not require
# grad (buffers and the tied T5 embedding copies, which `named_parameters` does not list, stay).
# What requires grad is decided by the official `train.py` (`apply_training_strategy`):
# - "pretrain": parameters whose name contains one of these words; everything else is frozen
#   (so the file lacks ln_vision, query_tokens, BERT, trans_layer, seg_proj and the Face-ViT's
#   weights -- but keeps the Face-ViT's batch-norm statistics, which are buffers);
# - "finetune": everything except the vision encoder and T5.
PRETRAIN_TRAINABLE = ("Qformer", "qformer", "text_proj", "fc_layer", "t5_proj", "mlm_head", "mask_decoder",
                      "prompt_proj", "cross_attention_layer")
STAGES = ("pretrain", "finetune")
_BUFFER_SUFFIXES = ("position_ids", "token_type_ids", "running_mean", "running_var", "num_batches_tracked")
_TIED_COPIES = ("t5_model.encoder.embed_tokens.weight", "t5_model.decoder.embed_tokens.weight")


def is_saved_regardless(name: str) -> bool:
    """Buffers and tied copies: in every LAVIS checkpoint whatever the stage."""
    return name.endswith(_BUFFER_SUFFIXES) or name in _TIED_COPIES


def trainable_in(stage: str, name: str) -> bool:
    """Whether the official training of `stage` lets parameter `name` require grad."""
    if stage == "pretrain":
        t5_frozen = name.startswith("t5_model.") and ("embed_tokens" in name or "lm_head" in name)
        return any(word in name for word in PRETRAIN_TRAINABLE) and not t5_frozen
    if stage == "finetune":
        return not name.startswith(("visual_encoder.", "t5_model."))
    raise ValueError(f"unknown training stage {stage!r}")


def detect_stage(names: Iterable[str]) -> tuple[str, str]:
    """The stage a DFF checkpoint was saved in, and why: a file holding any parameter that only the
    finetune stage trains is a finetune-stage file; otherwise it was saved in the pretrain stage."""
    finetune_only = sorted(k for k in names if not is_saved_regardless(k)
                           and trainable_in("finetune", k) and not trainable_in("pretrain", k))
    if finetune_only:
        return "finetune", (f"holds {len(finetune_only)} parameter(s) frozen in the pretrain stage "
                            f"(e.g. {', '.join(finetune_only[:3])})")
    return "pretrain", "holds no parameter outside the pretrain stage's trainable set"


# Parameters the official code creates with a random initialisation and never loads from a
# component file: absent from a pretrain-stage checkpoint, they are initialised the same way here
# (nn.Linear's default, from a fixed seed, so a conversion is reproducible).
RANDOM_INIT_SEED = 0
RANDOMLY_INITIALISED = {
    "trans_layer": "nn.Linear default initialisation (frozen, hence never saved, in the pretrain stage; "
                   "it only feeds the tag gate, whose values do not change captions or masks)",
}


def _random_linear(out_features: int, in_features: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        layer = torch.nn.Linear(in_features, out_features)
    return {"weight": layer.weight.detach(), "bias": layer.bias.detach()}


# ---------------------------------------------------------------------- the mapping table
# (official name pattern, this implementation's name) -- regular expressions, first match wins.
# Names are relative to the whole model (`ForgeryTalker.state_dict()`).
RULES: list[tuple[str, str]] = [
    # vision encoder (EVA-ViT-g) -> transformers InstructBlipVisionModel
    (r"visual_encoder\.cls_token", r"vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", r"vision_model.embeddings.position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\.(weight|bias)", r"vision_model.embeddings.patch_embedding.\1"),
    (r"visual_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)", r"vision_model.encoder.layers.\1.layer_norm\2.\3"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight", r"vision_model.encoder.layers.\1.self_attn.qkv.weight"),
    # q_bias and v_bias become one bias [q_bias, 0, v_bias] (see `_merge_qkv_bias`)
    (r"visual_encoder\.blocks\.(\d+)\.attn\.[qv]_bias", r"vision_model.encoder.layers.\1.self_attn.qkv.bias"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"vision_model.encoder.layers.\1.self_attn.projection.\2"),
    (r"visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"vision_model.encoder.layers.\1.mlp.\2.\3"),
    (r"ln_vision\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    # Q-Former -> transformers InstructBlipQFormerModel
    (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", r"qformer.embeddings.layernorm.\1"),
    (r"Qformer\.bert\.embeddings\.(word|position)_embeddings\.weight", r"qformer.embeddings.\1_embeddings.weight"),
    (r"Qformer\.bert\.embeddings\.position_ids", r"qformer.embeddings.position_ids"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
     r"qformer.encoder.layer.\1.\2.attention.\3.\4"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
     r"qformer.encoder.layer.\1.\2.output.\3.\4"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate|output)(_query)?\.(dense|LayerNorm)\.(weight|bias)",
     r"qformer.encoder.layer.\1.\2\3.\4.\5"),
    (r"query_tokens", r"query_tokens"),
    (r"t5_proj\.(weight|bias)", r"language_projection.\1"),
    # T5 -> transformers T5ForConditionalGeneration (same names)
    (r"t5_model\.(.+)", r"language_model.\1"),
    # Face-ViT -> FaceViTPrompter (transformers ViTModel + the CNN branch)
    (r"multi_label_classifier\.transformer\.embeddings\.patch_embeddings\.(weight|bias)",
     r"prompter.vit.embeddings.patch_embeddings.projection.\1"),
    (r"multi_label_classifier\.transformer\.embeddings\.(position_embeddings|cls_token)", r"prompter.vit.embeddings.\1"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.attention_norm\.(weight|bias)",
     r"prompter.vit.layers.\1.layernorm_before.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.ffn_norm\.(weight|bias)",
     r"prompter.vit.layers.\1.layernorm_after.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.ffn\.(fc[12])\.(weight|bias)",
     r"prompter.vit.layers.\1.mlp.\2.\3"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.attn\.query\.(weight|bias)",
     r"prompter.vit.layers.\1.attention.q_proj.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.attn\.key\.(weight|bias)",
     r"prompter.vit.layers.\1.attention.k_proj.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.attn\.value\.(weight|bias)",
     r"prompter.vit.layers.\1.attention.v_proj.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.layer\.(\d+)\.attn\.out\.(weight|bias)",
     r"prompter.vit.layers.\1.attention.o_proj.\2"),
    (r"multi_label_classifier\.transformer\.encoder\.encoder_norm\.(weight|bias)", r"prompter.vit.layernorm.\1"),
    (r"multi_label_classifier\.head\.(weight|bias)", r"prompter.classifier.\1"),
    (r"multi_label_classifier\.coord_conv_branch\.0\.conv\.(weight|bias)", r"prompter.coord_conv.\1"),
    (r"multi_label_classifier\.coord_conv_branch\.1\.(\w+)", r"prompter.coord_bn.\1"),
    (r"multi_label_classifier\.conv_branch2\.0\.(weight|bias)", r"prompter.conv2.\1"),
    (r"multi_label_classifier\.conv_branch2\.1\.(\w+)", r"prompter.conv2_bn.\1"),
    # tag encoder and gate
    (r"bert_model\.(embeddings|encoder)\.(.+)", r"tag_encoder.\1.\2"),
    (r"trans_layer\.(weight|bias)", r"tag_gate.image_proj.\1"),
    (r"gate_cross_attention_layer\.(.+)", r"tag_gate.attention.\1"),
    (r"fc_layer\.(weight|bias)", r"tag_gate.gate.\1"),
    # mask path
    (r"prompt_proj\.(weight|bias)", r"mask_head.prompt_proj.\1"),
    (r"cross_attention_layer\.(.+)", r"mask_head.cross_attention.\1"),
    (r"mask_decoder\.mask_tokens", r"mask_head.decoder.mask_tokens"),
    (r"mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(weight|bias)",
     r"mask_head.decoder.transformer.layers.\1.layer_norm\2.\3"),
    (r"mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token|mlp)\.(\w+)\.(weight|bias)",
     r"mask_head.decoder.transformer.layers.\1.\2.\3.\4"),
    (r"mask_decoder\.transformer\.final_attn_token_to_image\.(\w+)\.(weight|bias)",
     r"mask_head.decoder.transformer.final_attn_token_to_image.\1.\2"),
    (r"mask_decoder\.transformer\.norm_final_attn\.(weight|bias)", r"mask_head.decoder.transformer.layer_norm_final_attn.\1"),
    # official MLP layers.0 / layers.1..n-2 / layers.n-1 -> SamFeedForward proj_in / layers.k-1 / proj_out
    (r"mask_decoder\.(output_upscaling_mlp|output_hypernetworks_mlps)\.layers\.(\d+)\.(weight|bias)",
     r"mask_head.decoder.\1.<mlp:\2>.\3"),
]

# (official name pattern, why it is not carried over)
UNUSED: list[tuple[str, str]] = [
    (r"seg_proj\.(weight|bias)", "defined in the official model but never used by forward or generate"),
    (r"mlm_head\.(weight|bias)", "stage-1 masked-language-model head (pretraining only, unused at inference)"),
    (r"text_proj\.(weight|bias)", "stage-1 contrastive projection (pretraining only, unused at inference)"),
    (r"bert_model\.pooler\.dense\.(weight|bias)", "BERT pooler: the gate reads last_hidden_state only"),
    (r"bert_model\.embeddings\.(position_ids|token_type_ids)", "constant buffer (saved by transformers < 4.31 "
                                                                "only), rebuilt"),
]


def map_name(name: str, cfg: ForgeryTalkerConfig) -> str | None:
    """This implementation's name for an official key, or None if it is in `UNUSED`.
    Raises KeyError for a name no rule knows."""
    for pattern, _ in UNUSED:
        if re.fullmatch(pattern, name):
            return None
    for pattern, target in RULES:
        match = re.fullmatch(pattern, name)
        if match:
            new = match.expand(target)
            mlp = re.search(r"<mlp:(\d+)>", new)
            if mlp:
                k, last = int(mlp.group(1)), cfg.mask.mlp_layers - 1
                part = "proj_in" if k == 0 else "proj_out" if k == last else f"layers.{k - 1}"
                new = new.replace(mlp.group(0), part)
            return new
    raise KeyError(name)


def unused_reason(name: str) -> str | None:
    for pattern, why in UNUSED:
        if re.fullmatch(pattern, name):
            return why
    return None


# ---------------------------------------------------------------------- reading the sources
def _torch_load(path: Path, allow_pickle: bool) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure becomes one located line
        hint = "" if allow_pickle else " (if you trust the file, retry with --allow-pickle)"
        raise BenchmarkError(f"{path}: cannot read as a torch checkpoint: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}{hint}") from None


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.bin/.safetensors file (a LAVIS {'model': ...} dict is unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchmarkError(f"{path}: not a state dict (expected name -> tensor, or a LAVIS {{'model': ...}})")
    return dict(obj)


def read_hf_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a transformers model folder (safetensors or .bin, sharded or not)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: model folder not found")
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for f in files:
                state.update(read_state_dict(folder / f))
            return state
        if (folder / single).is_file():
            return read_state_dict(folder / single)
    raise BenchmarkError(f"{folder}: no model.safetensors / pytorch_model.bin (or sharded index) found")


def _single_weights_file(path: Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for ext in ("*.bin", "*.pth", "*.pt", "*.safetensors") for p in path.glob(ext))
        if len(found) == 1:
            return found[0]
        raise BenchmarkError(f"{path}: expected exactly one weights file (.bin/.pth/.safetensors), found {len(found)}")
    raise BenchmarkError(f"{path}: not found")


def _bert_component(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bert-base-uncased weights as BertModel names (drop the MLM/NSP heads, old gamma/beta names)."""
    out = {}
    for k, v in state.items():
        if k.startswith("cls."):
            continue
        k = k[len("bert."):] if k.startswith("bert.") else k
        k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)
        k = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)
        out[k] = v
    return out


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _name_keys(label: str, keys: Iterable[str], shown: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return f"{len(keys)} {label} key(s): {', '.join(keys[:shown])}{more}"


def _config_from_folders(base: ForgeryTalkerConfig, t5: Path | None, bert: Path | None) -> ForgeryTalkerConfig:
    """Take the T5 / BERT sizes from their folders' config.json (so e.g. Flan-T5-XXL converts too)."""
    cfg = ForgeryTalkerConfig.from_dict(base.to_dict())
    if t5 is not None and (Path(t5) / "config.json").is_file():
        c = json.loads((Path(t5) / "config.json").read_text())
        lang = cfg.language
        for f in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                  "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj",
                  "layer_norm_epsilon", "tie_word_embeddings", "pad_token_id", "eos_token_id",
                  "decoder_start_token_id"):
            if f in c and c[f] is not None:
                setattr(lang, f, c[f])
        if c.get("num_decoder_layers") is None:
            lang.num_decoder_layers = lang.num_layers
        cfg.language = LanguageConfig(**{**lang.__dict__})
    if bert is not None and (Path(bert) / "config.json").is_file():
        c = json.loads((Path(bert) / "config.json").read_text())
        tag = cfg.tag_encoder
        for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "layer_norm_eps"):
            if f in c:
                setattr(tag, f, c[f])
        cfg.tag_encoder = TagEncoderConfig(**{**tag.__dict__})
    return cfg


# ---------------------------------------------------------------------- the conversion
@dataclass
class Sources:
    lavis: Path
    t5: Path
    bert: Path
    eva_vit: Path | None = None
    face_vit: Path | None = None
    instructblip: Path | None = None


def assemble_official(sources: Sources, cfg: ForgeryTalkerConfig, *, allow_pickle: bool = False,
                      loaders: dict[str, Callable[[], dict[str, torch.Tensor]]] | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The official-named state dict, merged from all sources with LAVIS's precedence, validated.

    Returns it and a report (which source gave how many keys; keys ignored in supplementary files).
    """
    expected = official_keys(cfg)
    report: dict[str, Any] = {"sources": {}, "ignored": {}}
    dff = read_state_dict(sources.lavis, allow_pickle)
    unexpected = [k for k in dff if k not in expected and unused_reason(k) is None]
    if unexpected:
        raise BenchmarkError(f"{sources.lavis}: not a ForgeryTalker (DFF) checkpoint for this configuration: "
                             + _name_keys("unexpected", unexpected))
    merged: dict[str, torch.Tensor] = dict(dff)
    report["sources"]["lavis"] = len(dff)
    stage, evidence = detect_stage(dff)
    report["stage"] = stage
    report["stage_evidence"] = evidence

    def fill(label: str, state: dict[str, torch.Tensor], prefix: str) -> None:
        added, ignored = 0, []
        for k, v in state.items():
            name = prefix + k
            if name not in expected:
                ignored.append(name)
            elif name not in merged:
                merged[name] = v
                added += 1
        report["sources"][label] = added
        if ignored:
            report["ignored"][label] = sorted(ignored)

    if sources.instructblip is not None:
        fill("instructblip", read_state_dict(sources.instructblip, allow_pickle), "")
    if sources.eva_vit is not None:
        fill("eva_vit", _strip(read_state_dict(sources.eva_vit, allow_pickle), "visual_encoder."), "visual_encoder.")
    if sources.face_vit is not None:
        state = _strip(read_state_dict(_single_weights_file(sources.face_vit), allow_pickle), "module.")
        fill("face_vit", _strip(state, "multi_label_classifier."), "multi_label_classifier.")
    fill("bert", _bert_component(read_hf_folder_weights(sources.bert)), "bert_model.")
    fill("t5", read_hf_folder_weights(sources.t5), "t5_model.")

    report["initialised"] = {}
    if stage == "pretrain":
        for layer, why in RANDOMLY_INITIALISED.items():
            names = [f"{layer}.weight", f"{layer}.bias"]
            if any(n in merged for n in names):
                continue
            weights = _random_linear(*expected[names[0]].shape)
            for n in names:
                merged[n] = weights[n.rsplit(".", 1)[1]]
                report["initialised"][n] = why

    missing = [k for k, spec in expected.items() if spec.required and k not in merged]
    if missing:
        hint = []
        if any(k.startswith("visual_encoder.") for k in missing):
            hint.append("the EVA ViT comes from --eva-vit eva_vit_g.pth")
        if any(k.startswith("multi_label_classifier.") for k in missing):
            hint.append("the Face-ViT from --face-vit")
        frozen_in_pretrain = [k for k in ("ln_vision.weight", "query_tokens") if k in missing]
        if frozen_in_pretrain:
            hint.append(f"{' and '.join(k.split('.')[0] for k in frozen_in_pretrain)} from --instructblip "
                        f"(instruct_blip_flanxl_trimmed.pth; a {stage}-stage checkpoint lacks them)")
        raise BenchmarkError(f"the official weights are incomplete ({stage}-stage checkpoint): "
                             + _name_keys("missing", missing) + (f" ({'; '.join(hint)})" if hint else ""))
    wrong = [f"{k} {tuple(v.shape)} != {expected[k].shape}" for k, v in merged.items()
             if k in expected and tuple(v.shape) != expected[k].shape]
    if wrong:
        raise BenchmarkError(f"{len(wrong)} official tensor(s) have other shapes than the config: "
                             + "; ".join(wrong[:6]) + (f" (+{len(wrong) - 6} more)" if len(wrong) > 6 else ""))
    return merged, report


def _merge_qkv_bias(official: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    q = official[f"visual_encoder.blocks.{layer}.attn.q_bias"]
    v = official[f"visual_encoder.blocks.{layer}.attn.v_bias"]
    return torch.cat([q, torch.zeros_like(v), v])


def to_implementation(official: dict[str, torch.Tensor], cfg: ForgeryTalkerConfig
                      ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Rename (and merge the EVA q/v biases) to `ForgeryTalker` names; returns (state, counts)."""
    state: dict[str, torch.Tensor] = {}
    counts = {"mapped": 0, "unused": 0}
    for name, tensor in official.items():
        new = map_name(name, cfg)
        if new is None:
            counts["unused"] += 1
            continue
        counts["mapped"] += 1
        bias = re.fullmatch(r"visual_encoder\.blocks\.(\d+)\.attn\.[qv]_bias", name)
        state[new] = _merge_qkv_bias(official, bias.group(1)) if bias else tensor
    positions = "qformer.embeddings.position_ids"
    if positions not in state:  # always saved by LAVIS; rebuilt (arange) only for a file without it
        n = cfg.qformer.max_position_embeddings
        state[positions] = torch.arange(n).view(1, n)
    lm = "language_model."
    for tied in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        state.setdefault(lm + tied, state[lm + "shared.weight"])
    if cfg.language.tie_word_embeddings:
        state.setdefault(lm + "lm_head.weight", state[lm + "shared.weight"])
    return state, counts


def build_converted_model(state: dict[str, torch.Tensor], cfg: ForgeryTalkerConfig, tokenizers=None):
    """A `ForgeryTalker` holding exactly `state` (strict: the key sets and shapes must match)."""
    from baselines.forgerytalker.build import _materialize_buffers
    from baselines.forgerytalker.model import ForgeryTalker

    with torch.device("meta"):
        model = ForgeryTalker(cfg, tokenizers)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [_name_keys(lbl, ks) for lbl, ks in (("missing", missing), ("unexpected", unexpected)) if ks]
        raise BenchmarkError("converted weights do not fit the model: " + "; ".join(parts))
    bad = [k for k, v in expected.items() if tuple(v.shape) != tuple(state[k].shape)]
    if bad:
        raise BenchmarkError(f"converted weights have wrong shapes: {', '.join(bad[:6])}")
    model.load_state_dict(state, strict=True, assign=True)
    lm = model.language_model
    lm.encoder.embed_tokens.weight = lm.shared.weight  # T5 input embeddings are always shared
    lm.decoder.embed_tokens.weight = lm.shared.weight
    if state["language_model.lm_head.weight"] is state["language_model.shared.weight"]:
        lm.lm_head.weight = lm.shared.weight
    _materialize_buffers(model, torch.device("cpu"))
    return model.eval()


def convert(sources: Sources, out: Path, *, config: ForgeryTalkerConfig | None = None, dtype: str = "float32",
            allow_pickle: bool = False) -> dict[str, Any]:
    """Convert and write a checkpoint folder (weights, config, tokenizers, conversion report)."""
    from transformers import AutoTokenizer

    from baselines.forgerytalker.build import save_checkpoint
    from baselines.forgerytalker.tokenization import Tokenizers

    cfg = _config_from_folders(config or ForgeryTalkerConfig.full(), sources.t5, sources.bert)
    try:
        cfg.validate()
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None
    official, report = assemble_official(sources, cfg, allow_pickle=allow_pickle)
    target = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if target is None:
        raise BenchmarkError(f"--dtype {dtype}: expected float32, bfloat16 or float16")
    official = {k: v.to(target) if v.is_floating_point() else v for k, v in official.items()}
    state, counts = to_implementation(official, cfg)
    try:
        tokenizers = Tokenizers(t5=AutoTokenizer.from_pretrained(str(sources.t5)),
                                bert=AutoTokenizer.from_pretrained(str(sources.bert)))
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"cannot load the tokenizers from {sources.t5} / {sources.bert}: "
                             f"{str(exc).splitlines()[0]}") from None
    model = build_converted_model(state, cfg, tokenizers)
    expected = official_keys(cfg)
    report.update({
        "official_keys": len(expected),
        "official_keys_present": len(official),
        "mapped": counts["mapped"],
        "unused": counts["unused"],
        "unused_keys": {k: unused_reason(k) for k in sorted(official) if map_name(k, cfg) is None},
        "absent_optional": sorted(k for k, s in expected.items() if not s.required and k not in official),
        "dtype": dtype,
    })
    save_checkpoint(model, tokenizers, Path(out), {"converted_from": {k: str(v) for k, v in sources.__dict__.items()
                                                                      if v is not None}, "conversion": report},
                    name="forgerytalker")
    (Path(out) / "conversion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
