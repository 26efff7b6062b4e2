"""ForgeryTalker (the official code's DFF): InstructBLIP-T5 + Face-ViT prompter + tag gate + mask path.

The data flow is the official `blip2_t5_instruct.py` (finetune stage and `generate(return_seg=True)`):

    image -> vision encoder (+ ln_vision)            -> image tokens (B, 1+N, W)
    image -> Face-ViT prompter -> sigmoid > 0.5      -> kept region labels
    labels -> tag gate (BERT label tokens x image)  -> a gate per label (gate loss)
    labels -> instruction (PROMPT_WITH_LABELS)      -> Q-Former text input and T5 encoder text
    labels -> " ".join -> T5 embeddings -> mask head -> mask logits (B, 224, 224)
    queries x image tokens (Q-Former) -> projection -> prepended to the T5 encoder input -> T5

Built from transformers blocks (`InstructBlipVisionModel`, `InstructBlipQFormerModel`,
`T5ForConditionalGeneration`, `ViTModel`, `BertModel`, `SamTwoWayTransformer`); module names
follow transformers' InstructBLIP (`vision_model`, `qformer`, `query_tokens`,
`language_projection`, `language_model`) so the usual tooling recognises them.

transformers' InstructBLIP vision encoder is EVA-ViT-g's maths (pre-norm blocks, fused qkv with
q/v biases, exact GELU, absolute positions, no layer scale, 39 blocks without a final norm inside
the ViT) and its `post_layernorm` plays LAVIS's `ln_vision` (eps set to LAVIS's 1e-5). Known
differences from the released code, all deliberate and documented:
- the vision encoder's qkv bias is one parameter `[q_bias, k_bias, v_bias]` (transformers'
  layout) with k_bias converted as zeros (it cancels in the softmax anyway);
- transformers 5 ties T5's lm_head to its input embeddings; it is untied here (Flan-T5 has its own);
- the segmentation and gate losses use the logits/probabilities once (`official_double_sigmoid`
  reproduces the released code, which applies `BCEWithLogits` to already-sigmoid outputs);
- the Q-Former's attention mask uses -inf instead of -10000 for padding (identical after softmax).
What the release does and transformers no longer does by default is reproduced: beam search scored
as in transformers 4.33.2 (`decoding.py`) and, when a policy is set, the release's per-part
precision (`precision.py`). `tests/test_forgerytalker_official.py` checks all of it against outputs
of the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.forgerytalker.config import ForgeryTalkerConfig
from baselines.forgerytalker.gating import TagGate, build_prompt, gate_loss, kept_labels, label_string
from baselines.forgerytalker.mask_decoder import LabelMaskHead
from baselines.forgerytalker.precision import PrecisionPolicy, region
from baselines.forgerytalker.prompter import FaceViTPrompter
from baselines.forgerytalker.tokenization import Tokenizers, truncation_side

_RELEASE_BEAM_KEYS = ("num_beams", "max_new_tokens", "min_length", "repetition_penalty", "length_penalty", "do_sample")
SEG_POS_WEIGHT = 2.0   # official BCEWithLogitsLoss(pos_weight=2)
GATE_LOSS_WEIGHT = 0.5  # official finetune loss: lm + seg + 0.5 * gate


@dataclass
class Context:
    """What the prompter decided for a batch, and the text built from it."""

    image_embeds: torch.Tensor
    probabilities: torch.Tensor
    labels: list[list[str]]
    prompts: list[str]
    label_strings: list[str]
    gates: torch.Tensor | None = None          # (P,) one per kept label, flattened over the batch
    gate_owner: torch.Tensor | None = None     # (P,) image index of each gate
    gate_label: torch.Tensor | None = None     # (P,) label index of each gate


@dataclass
class Prediction:
    captions: list[str]
    masks: torch.Tensor                        # (B, S, S) probabilities
    labels: list[list[str]]
    probabilities: torch.Tensor                # (B, n_labels) prompter probabilities
    gates: list[dict[str, float]] = field(default_factory=list)


class ForgeryTalker(nn.Module):
    """The full model; sizes from `ForgeryTalkerConfig`. Tokenizers are attached, not owned."""

    def __init__(self, config: ForgeryTalkerConfig, tokenizers: Tokenizers | None = None) -> None:
        super().__init__()
        from transformers import BertModel, InstructBlipQFormerModel, InstructBlipVisionModel, T5ForConditionalGeneration

        config.validate()
        self.config = config
        self.vision_model = InstructBlipVisionModel(config.hf_vision())
        self.vision_model.post_layernorm.eps = config.vision.post_layernorm_eps  # LAVIS ln_vision
        q = config.qformer
        self.query_tokens = nn.Parameter(torch.randn(1, q.num_query_tokens, q.hidden_size) * 0.02)
        self.qformer = InstructBlipQFormerModel(config.hf_qformer())
        # LAVIS's Q-Former saves its position_ids buffer (transformers' does not): keep it in the
        # state dict, so a converted checkpoint carries the released tensor instead of a rebuilt one
        embeddings = self.qformer.embeddings
        embeddings.register_buffer("position_ids", embeddings.position_ids, persistent=True)
        self.language_projection = nn.Linear(q.hidden_size, config.language.d_model)
        self.language_model = T5ForConditionalGeneration(config.hf_t5())
        lm = self.language_model
        if not config.language.tie_word_embeddings and lm.lm_head.weight is lm.shared.weight:
            # transformers 5 ties T5's lm_head to the input embeddings; Flan-T5's is a separate matrix
            lm.lm_head.weight = nn.Parameter(lm.shared.weight.detach().clone())
        self.prompter = FaceViTPrompter(config)
        self.tag_encoder = BertModel(config.hf_tag_encoder(), add_pooling_layer=False)
        self.tag_gate = TagGate(config.vision.hidden_size, config.tag_encoder.hidden_size, config.tag_encoder.gate_heads)
        self.mask_head = LabelMaskHead(config)
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)
        self.tokenizers = tokenizers
        self.precision: PrecisionPolicy | None = None  # None: follow the caller's autocast (training)

    # ------------------------------------------------------------------ precision
    def set_precision(self, policy: PrecisionPolicy | None) -> "ForgeryTalker":
        """Run each part in the dtype `policy` gives it (see `precision.py`): T5's weights are cast to
        `policy.language_weights`, every other part's to fp32. Casting bf16 weights back to fp32 does
        not restore the rounded-off digits."""
        if policy is not None:
            for name, child in self.named_children():
                child.to(policy.language_weights if name == "language_model" else policy.other_weights)
            for tensor in [*self.parameters(recurse=False), *self.buffers(recurse=False)]:  # query_tokens, mean/std
                tensor.data = tensor.data.to(policy.other_weights)
        self.precision = policy
        return self

    def _region(self, dtype: torch.dtype | None):
        return region(self.precision, dtype, self.device)

    def _vision_dtype(self) -> torch.dtype | None:
        return self.precision.vision_autocast if self.precision else None

    def _language_dtype(self) -> torch.dtype | None:
        return self.precision.language_autocast if self.precision else None

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.query_tokens.device

    def _tok(self) -> Tokenizers:
        if self.tokenizers is None:
            raise RuntimeError("ForgeryTalker needs tokenizers: pass them at construction or set .tokenizers")
        return self.tokenizers

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the encoders' input (CLIP mean/std, as LAVIS's blip_image_eval)."""
        return (images.float() - self.image_mean) / self.image_std

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens after `ln_vision`: (B, 1 + N, W), [CLS] first (fp32 under a policy, as the
        release's residual stream and ln_vision leave them)."""
        with self._region(self._vision_dtype()):
            embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        return embeds.float() if self.precision else embeds

    # ------------------------------------------------------------------ the prompter's decision
    def context(self, pixel_values: torch.Tensor, image_embeds: torch.Tensor,
                labels: Sequence[Sequence[str]] | None = None) -> Context:
        """Predict the labels (unless given), gate them, and build the instruction and label string."""
        with torch.no_grad(), self._region(None):
            probs = self.prompter.probabilities(pixel_values)
        names = self.config.labels
        if labels is None:
            labels = kept_labels(probs, names, self.config.prompter.threshold)
        labels = [list(x) for x in labels]
        ctx = Context(image_embeds=image_embeds, probabilities=probs, labels=labels,
                      prompts=[build_prompt(x) for x in labels], label_strings=[label_string(x) for x in labels])
        self._gate(ctx)
        return ctx

    def _gate(self, ctx: Context) -> None:
        flat = [(b, name) for b, row in enumerate(ctx.labels) for name in row]
        if not flat:
            return
        tok = self._tok().bert
        enc = tok([name for _, name in flat], padding="longest", truncation=True, return_tensors="pt").to(self.device)
        lengths = enc["attention_mask"].sum(1)
        owner = torch.tensor([b for b, _ in flat], device=self.device)
        # the official code pads each image's labels to that image's longest label and averages over it
        per_image = torch.zeros(len(ctx.labels), dtype=lengths.dtype, device=self.device)
        per_image = per_image.scatter_reduce(0, owner, lengths, reduce="amax")
        with self._region(None):
            states = self.tag_encoder(**enc).last_hidden_state
            ctx.gates = self.tag_gate(states, per_image[owner], ctx.image_embeds, owner)
        ctx.gate_owner = owner
        index = {n: i for i, n in enumerate(self.config.labels)}
        ctx.gate_label = torch.tensor([index[name] for _, name in flat], device=self.device)

    # ------------------------------------------------------------------ mask path
    def label_embeddings(self, label_strings: Sequence[str]) -> torch.Tensor:
        """T5 token embeddings of each label string, padded/left-truncated to `label_max_tokens`."""
        tok = self._tok().t5
        with truncation_side(tok, "left"):
            enc = tok(list(label_strings), padding="max_length", truncation=True,
                      max_length=self.config.mask.label_max_tokens, return_tensors="pt")
        return self.language_model.get_input_embeddings()(enc["input_ids"].to(self.device))

    def mask_logits(self, image_embeds: torch.Tensor, label_strings: Sequence[str]) -> torch.Tensor:
        """Mask logits (B, s, s) at the decoder's own size `config.mask.output_size`."""
        with self._region(None):
            return self.mask_head(self.label_embeddings(label_strings), image_embeds)

    def mask_probabilities(self, image_embeds: torch.Tensor, label_strings: Sequence[str]) -> torch.Tensor:
        """Sigmoid masks (B, S, S) at the image size (logits upsampled bilinearly if drawn smaller,
        shifted by `config.mask.logit_bias`)."""
        logits = self.mask_logits(image_embeds, label_strings).float() + self.config.mask.logit_bias
        size = self.config.vision.image_size
        if logits.shape[-1] != size:
            logits = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        return torch.sigmoid(logits)

    # ------------------------------------------------------------------ language path
    def query_outputs(self, prompts: Sequence[str], image_embeds: torch.Tensor) -> torch.Tensor:
        """Q-Former query outputs projected to the T5 width: (B, Q, d_model)."""
        tok = self._tok().bert
        with truncation_side(tok, "left"):
            text = tok(list(prompts), padding="longest", truncation=True, max_length=self.config.qformer.max_txt_len,
                       return_tensors="pt").to(self.device)
        b = image_embeds.shape[0]
        queries = self.query_tokens.expand(b, -1, -1)
        n_q = queries.shape[1]
        attention = torch.cat([torch.ones(b, n_q, dtype=text["attention_mask"].dtype, device=self.device),
                               text["attention_mask"]], dim=1)
        with self._region(None):
            out = self.qformer(input_ids=text["input_ids"], attention_mask=attention, query_embeds=queries,
                               encoder_hidden_states=image_embeds,
                               encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long,
                                                                 device=self.device)).last_hidden_state
            return self.language_projection(out[:, :n_q, :])

    def encoder_inputs(self, prompts: Sequence[str], query_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[projected queries; instruction token embeddings] and its attention mask."""
        tok = self._tok().t5
        with truncation_side(tok, "left"):
            enc = tok(list(prompts), padding="longest", truncation=True, max_length=self.config.language.max_txt_len,
                      return_tensors="pt").to(self.device)
        text = self.language_model.get_input_embeddings()(enc["input_ids"])
        # as torch.cat in the release: fp32 queries + bf16 token embeddings -> fp32 (no rounding of the queries)
        dtype = torch.promote_types(query_embeds.dtype, text.dtype) if self.precision else text.dtype
        embeds = torch.cat([query_embeds.to(dtype), text.to(dtype)], dim=1)
        attention = torch.cat([torch.ones(query_embeds.shape[:2], dtype=enc["attention_mask"].dtype,
                                          device=self.device), enc["attention_mask"]], dim=1)
        return embeds, attention

    # ------------------------------------------------------------------ training
    def forward(self, pixel_values: torch.Tensor, captions: Sequence[str], multilabel: torch.Tensor | None = None,
                masks: torch.Tensor | None = None, *, truth_labels: bool = False,
                official_double_sigmoid: bool = False) -> dict[str, torch.Tensor]:
        """The official finetune objective: LM + segmentation BCE (pos_weight 2) + 0.5 x gate loss.

        Labels come from the (frozen) prompter as in the release; `truth_labels=True` uses the
        truth multilabel instead (teacher forcing, useful early in training a model from scratch).
        """
        image_embeds = self.encode_image(pixel_values)
        given = None
        if truth_labels and multilabel is not None:
            given = [[n for n, v in zip(self.config.labels, row) if v] for row in multilabel.tolist()]
        ctx = self.context(pixel_values, image_embeds, given)
        losses: dict[str, torch.Tensor] = {}
        total = image_embeds.new_zeros((), dtype=torch.float32)
        if masks is not None:
            logits = self.mask_logits(image_embeds, ctx.label_strings).float()
            target = masks.to(logits.device).float()
            if target.shape[-2:] != logits.shape[-2:]:  # soft (area) targets when the mask is drawn smaller
                target = F.interpolate(target[:, None], size=logits.shape[-2:], mode="area")[:, 0]
            pos_weight = torch.tensor([SEG_POS_WEIGHT], device=logits.device)
            scores = torch.sigmoid(logits) if official_double_sigmoid else logits
            losses["seg_loss"] = F.binary_cross_entropy_with_logits(scores, target, pos_weight=pos_weight)
            total = total + losses["seg_loss"]
        if multilabel is not None and ctx.gates is not None:
            truth = multilabel.to(self.device).float()[ctx.gate_owner, ctx.gate_label]
            losses["gate_loss"] = gate_loss(ctx.gates, truth, ctx.gate_owner, len(ctx.labels), official_double_sigmoid)
            total = total + GATE_LOSS_WEIGHT * losses["gate_loss"]
        embeds, attention = self.encoder_inputs(ctx.prompts, self.query_outputs(ctx.prompts, image_embeds))
        tok = self._tok().t5
        with truncation_side(tok, "right"):
            out = tok(list(captions), padding="longest", truncation=True,
                      max_length=self.config.language.max_output_txt_len, return_tensors="pt").to(self.device)
        targets = out["input_ids"].masked_fill(out["input_ids"] == tok.pad_token_id, -100)
        with self._region(self._language_dtype()):
            lm = self.language_model(inputs_embeds=embeds, attention_mask=attention,
                                     decoder_attention_mask=out["attention_mask"], labels=targets)
        losses["lm_loss"] = lm.loss.float()
        losses["loss"] = total + losses["lm_loss"]
        return losses

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate_ids(self, embeds: torch.Tensor, attention: torch.Tensor, **overrides: Any) -> torch.Tensor:
        """Token ids from the T5 encoder input: beam search with the release's scoring
        (`config.generation.beam_scoring == "release"`, see `decoding.py`) unless sampling or
        `beam_scoring="installed"` asks for the installed transformers' `generate`."""
        g = self.config.generation
        kwargs: dict[str, Any] = dict(num_beams=g.num_beams, max_new_tokens=g.max_new_tokens, min_length=g.min_length,
                                      repetition_penalty=g.repetition_penalty, length_penalty=g.length_penalty,
                                      do_sample=False)
        scoring = overrides.pop("beam_scoring", g.beam_scoring)
        if scoring not in ("release", "installed"):
            raise ValueError(f"beam_scoring {scoring!r}: expected 'release' or 'installed'")
        kwargs.update(overrides)
        if scoring == "release" and kwargs["num_beams"] > 1 and not kwargs["do_sample"]:
            from baselines.forgerytalker.decoding import release_beam_search

            other = sorted(set(kwargs) - set(_RELEASE_BEAM_KEYS))
            if other:
                raise ValueError(f"decoding option(s) {', '.join(other)} need beam_scoring='installed' "
                                 f"(the release's beam scoring takes {', '.join(_RELEASE_BEAM_KEYS)})")

            with self._region(self._language_dtype()):
                return release_beam_search(self.language_model, inputs_embeds=embeds, attention_mask=attention,
                                           **{k: kwargs[k] for k in _RELEASE_BEAM_KEYS if k != "do_sample"})
        with self._region(self._language_dtype()):
            return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention, **kwargs)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, *, return_masks: bool = True,
                 labels: Sequence[Sequence[str]] | None = None, **overrides: Any) -> Prediction:
        """Explanations and masks in one pass (the official `generate(..., return_seg=True)`).

        Decoding defaults come from `config.generation` (beam 5, 100 new tokens, min length 5,
        repetition penalty 1.5); keyword overrides go to `T5ForConditionalGeneration.generate`.
        `labels` replaces the prompter's decision (oracle / ablation studies).
        """
        image_embeds = self.encode_image(pixel_values)
        ctx = self.context(pixel_values, image_embeds, labels)
        if return_masks:
            masks = self.mask_probabilities(image_embeds, ctx.label_strings)
        else:
            masks = torch.empty(0)
        embeds, attention = self.encoder_inputs(ctx.prompts, self.query_outputs(ctx.prompts, image_embeds))
        ids = self.generate_ids(embeds, attention, **overrides)
        captions = self._tok().t5.batch_decode(ids, skip_special_tokens=True)  # as released: not stripped
        gates: list[dict[str, float]] = [{} for _ in ctx.labels]
        if ctx.gates is not None:
            for g_val, b, li in zip(ctx.gates.float().tolist(), ctx.gate_owner.tolist(), ctx.gate_label.tolist()):
                gates[b][self.config.labels[li]] = g_val
        return Prediction(captions=captions, masks=masks, labels=ctx.labels, probabilities=ctx.probabilities,
                          gates=gates)


def count_parameters(module: nn.Module) -> int:
    """Parameters, counting tied tensors once (works on the meta device)."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
