"""Every size of ForgeryTalker in one JSON-serialisable dataclass.

The same code builds the paper's model (`ForgeryTalkerConfig.full()`: EVA-ViT-g, Q-Former,
Flan-T5-XL, ViT-H/14 Face-ViT, bert-base tag encoder) and a tiny one trained on the embedded
mini-MMTT (`ForgeryTalkerConfig.tiny(...)`): only this file knows the numbers. The sub-configs
turn into transformers configs (`hf_*`), so nothing else hard-codes a dimension.

Values of `full()` come from the official `blip2_t5_instruct.py` / `eva_vit.py` / Face-ViT
config (ViT-H_14) / Flan-T5-XL / bert-base-uncased and the official inference settings
(`scripts/evaluation/evaluate.py`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from benchmark.data.regions import REGIONS

# How images are resized to the model's input size: LAVIS's `blip_image_eval` (and the training
# processors) resize with torchvision's BICUBIC on PIL images, i.e. PIL's bicubic filter.
RESIZE_FILTER = "bicubic"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # LAVIS blip_image_eval normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    """The image encoder (EVA-ViT-g in the paper): patch ViT, qkv without k-bias, no final norm
    inside the ViT; `post_layernorm_eps` is LAVIS's `ln_vision` (a plain LayerNorm, eps 1e-5)."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1408
    num_hidden_layers: int = 39
    num_attention_heads: int = 16
    intermediate_size: int = 6144
    layer_norm_eps: float = 1e-6
    post_layernorm_eps: float = 1e-5
    hidden_act: str = "gelu"

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class QFormerConfig:
    """BERT-style Q-Former with learned queries and the instruction as text input."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30523          # bert-base-uncased + the added [DEC] token
    max_position_embeddings: int = 512
    cross_attention_frequency: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    num_query_tokens: int = 32
    max_txt_len: int = 128           # instruction tokens (truncated on the left, as LAVIS)


@dataclass
class LanguageConfig:
    """The T5 language model. `dense_act_fn` is overridden to exact GELU, as LAVIS does."""

    vocab_size: int = 32128
    d_model: int = 2048
    d_kv: int = 64
    d_ff: int = 5120
    num_layers: int = 24
    num_decoder_layers: int = 24
    num_heads: int = 32
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "gated-gelu"
    dense_act_fn: str = "gelu"
    layer_norm_epsilon: float = 1e-6
    tie_word_embeddings: bool = False  # Flan-T5: untied lm_head, no d_model**-0.5 output scaling
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    dropout_rate: float = 0.1
    max_txt_len: int = 128           # instruction tokens fed to the encoder (left-truncated)
    max_output_txt_len: int = 60     # target tokens in training (LAVIS from_config default)


@dataclass
class PrompterConfig:
    """The Face-ViT forgery prompter: a ViT multi-label classifier over the 21 regions, with the
    official coordinate-conv branch whose features are added to the patch tokens of the first two
    blocks (`coord_conv=False` gives a plain ViT)."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1280
    num_hidden_layers: int = 32
    num_attention_heads: int = 16
    intermediate_size: int = 5120
    layer_norm_eps: float = 1e-6
    coord_conv: bool = True
    dropout: float = 0.1
    threshold: float = 0.5


@dataclass
class TagEncoderConfig:
    """The BERT that embeds each predicted label for the tag gate (bert-base-uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    gate_heads: int = 8


@dataclass
class MaskConfig:
    """The mask path: label string (T5 tokens, padded to `label_max_tokens`) -> projection to the
    image width -> cross-attention to the patch tokens -> [CLS] prepended -> SAM two-way decoder."""

    label_max_tokens: int = 21
    cross_attention_heads: int = 8
    depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    attention_downsample_rate: int = 2
    mlp_layers: int = 3
    num_mask_tokens: int = 1
    output_size: int = 224           # the mask is drawn at this size (upsampled to the image size if smaller)
    layer_norm_eps: float = 1e-5     # torch LayerNorm default, as the official TwoWayTransformer
    logit_bias: float = 0.0          # added to the mask logits before the sigmoid (0 = official); the tiny
                                     # trainer fits it on the eval split for the harness's fixed 0.5 threshold


@dataclass
class GenerationConfig:
    """Decoding settings of the official harness (`evaluate.py`) and `generate()` defaults."""

    num_beams: int = 5
    max_new_tokens: int = 100
    min_length: int = 5
    repetition_penalty: float = 1.5
    length_penalty: float = 1.0
    beam_scoring: str = "release"    # "release": transformers 4.33.2's beam scoring, as pinned by the release
                                     # (`decoding.py`); "installed": the installed transformers' `generate`


@dataclass
class ForgeryTalkerConfig:
    """The whole model. `labels` is the region order of the multilabel vector and the prompt."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    prompter: PrompterConfig = field(default_factory=PrompterConfig)
    tag_encoder: TagEncoderConfig = field(default_factory=TagEncoderConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    labels: list[str] = field(default_factory=lambda: list(REGIONS))
    image_mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    variant: str = "full"

    # ------------------------------------------------------------------ presets
    @classmethod
    def full(cls) -> "ForgeryTalkerConfig":
        """The paper's ForgeryTalker (InstructBLIP Flan-T5-XL + Face-ViT-H/14 + bert-base)."""
        return cls()

    @classmethod
    def tiny(cls, *, t5_vocab_size: int = 512, bert_vocab_size: int = 512, hidden: int = 64,
             patch_size: int = 32, mask_size: int = 56, coord_conv: bool = False) -> "ForgeryTalkerConfig":
        """A small model that trains on CPU in minutes; vocab sizes come from its tokenizers.

        Same wiring as `full()`; only widths/depths shrink, dropout is off (a few epochs, no time to
        overfit), the mask is drawn at `mask_size` and upsampled (the 224x224 output MLP would
        dominate CPU time), and the prompter's coordinate-conv branch is off by default (a
        full-resolution CNN, the costliest part at this width).
        """
        h = hidden
        return cls(
            vision=VisionConfig(patch_size=patch_size, hidden_size=h, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=2 * h),
            qformer=QFormerConfig(hidden_size=h, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * h,
                                  vocab_size=bert_vocab_size + 1, max_position_embeddings=160, num_query_tokens=8,
                                  dropout=0.0),
            language=LanguageConfig(vocab_size=t5_vocab_size, d_model=h, d_kv=16, d_ff=2 * h, num_layers=2,
                                    num_decoder_layers=2, num_heads=4, max_output_txt_len=96, dropout_rate=0.0,
                                    tie_word_embeddings=True),
            prompter=PrompterConfig(patch_size=patch_size, hidden_size=h, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=2 * h, coord_conv=coord_conv, dropout=0.0),
            tag_encoder=TagEncoderConfig(vocab_size=bert_vocab_size, hidden_size=h, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=2 * h, max_position_embeddings=32,
                                         gate_heads=4, dropout=0.0),
            mask=MaskConfig(mlp_dim=2 * h, num_heads=4, cross_attention_heads=4, output_size=mask_size),
            variant="tiny",
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Fail early on sizes the official wiring cannot connect."""
        v, m = self.vision, self.mask
        problems = []
        if self.prompter.image_size != v.image_size:
            problems.append("prompter and vision encoder must see the same image size")
        if v.image_size % v.patch_size or self.prompter.image_size % self.prompter.patch_size:
            problems.append("image_size must be a multiple of patch_size")
        if v.hidden_size % m.cross_attention_heads or (v.hidden_size // m.attention_downsample_rate) % m.num_heads:
            problems.append("mask heads must divide the vision width (and its downsampled width)")
        if self.tag_encoder.hidden_size % self.tag_encoder.gate_heads:
            problems.append("gate heads must divide the tag-encoder width")
        if len(self.labels) == 0:
            problems.append("labels must not be empty")
        if problems:
            raise ValueError("invalid ForgeryTalker config: " + "; ".join(problems))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ForgeryTalkerConfig":
        """Inverse of `to_dict`; unknown keys are an error (a config from another model)."""
        return _from_dict(cls, data, "config")

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "ForgeryTalkerConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # ------------------------------------------------------------------ transformers configs
    def hf_vision(self):
        from transformers import InstructBlipVisionConfig

        v = self.vision
        return InstructBlipVisionConfig(
            hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_hidden_layers,
            num_attention_heads=v.num_attention_heads, image_size=v.image_size, patch_size=v.patch_size,
            hidden_act=v.hidden_act, layer_norm_eps=v.layer_norm_eps, attention_dropout=0.0, qkv_bias=True,
            initializer_range=0.02)  # transformers' default 1e-10 would leave a from-scratch encoder inert

    def hf_qformer(self):
        from transformers import InstructBlipQFormerConfig

        q = self.qformer
        return InstructBlipQFormerConfig(
            vocab_size=q.vocab_size, hidden_size=q.hidden_size, num_hidden_layers=q.num_hidden_layers,
            num_attention_heads=q.num_attention_heads, intermediate_size=q.intermediate_size,
            max_position_embeddings=q.max_position_embeddings, layer_norm_eps=q.layer_norm_eps,
            cross_attention_frequency=q.cross_attention_frequency, encoder_hidden_size=self.vision.hidden_size,
            pad_token_id=0, hidden_dropout_prob=q.dropout, attention_probs_dropout_prob=q.dropout)

    def hf_t5(self):
        from transformers import T5Config

        t = self.language
        cfg = T5Config(
            vocab_size=t.vocab_size, d_model=t.d_model, d_kv=t.d_kv, d_ff=t.d_ff, num_layers=t.num_layers,
            num_decoder_layers=t.num_decoder_layers, num_heads=t.num_heads,
            relative_attention_num_buckets=t.relative_attention_num_buckets,
            relative_attention_max_distance=t.relative_attention_max_distance, feed_forward_proj=t.feed_forward_proj,
            layer_norm_epsilon=t.layer_norm_epsilon, tie_word_embeddings=t.tie_word_embeddings,
            pad_token_id=t.pad_token_id, eos_token_id=t.eos_token_id, decoder_start_token_id=t.decoder_start_token_id,
            dropout_rate=t.dropout_rate)
        cfg.dense_act_fn = t.dense_act_fn  # LAVIS: t5_config.dense_act_fn = "gelu" (exact, not tanh)
        return cfg

    def hf_prompter(self):
        from transformers import ViTConfig

        p = self.prompter
        return ViTConfig(
            hidden_size=p.hidden_size, num_hidden_layers=p.num_hidden_layers, num_attention_heads=p.num_attention_heads,
            intermediate_size=p.intermediate_size, image_size=p.image_size, patch_size=p.patch_size,
            layer_norm_eps=p.layer_norm_eps, hidden_act="gelu", qkv_bias=True, num_labels=len(self.labels),
            problem_type="multi_label_classification", hidden_dropout_prob=p.dropout, attention_probs_dropout_prob=0.0)

    def hf_tag_encoder(self):
        from transformers import BertConfig

        b = self.tag_encoder
        return BertConfig(
            vocab_size=b.vocab_size, hidden_size=b.hidden_size, num_hidden_layers=b.num_hidden_layers,
            num_attention_heads=b.num_attention_heads, intermediate_size=b.intermediate_size,
            max_position_embeddings=b.max_position_embeddings, type_vocab_size=b.type_vocab_size,
            layer_norm_eps=b.layer_norm_eps, pad_token_id=0, hidden_dropout_prob=b.dropout,
            attention_probs_dropout_prob=b.dropout)

    def hf_mask_decoder(self):
        from transformers import SamMaskDecoderConfig

        m = self.mask
        cfg = SamMaskDecoderConfig(
            hidden_size=self.vision.hidden_size, hidden_act="relu", mlp_dim=m.mlp_dim, num_hidden_layers=m.depth,
            num_attention_heads=m.num_heads, attention_downsample_rate=m.attention_downsample_rate,
            layer_norm_eps=m.layer_norm_eps)
        cfg._attn_implementation = "sdpa"  # the two-way transformer is used outside a PreTrainedModel
        return cfg


def _from_dict(cls: type, data: Any, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None  # type: ignore[misc]
        if is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = list(value) if isinstance(value, tuple) else value
    return cls(**kwargs)
