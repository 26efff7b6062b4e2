"""Official ForgeryTalker weights -> this implementation, checked against an independent forward.

A random state dict with the official key names and shapes (for a tiny configuration) is split
into the files the release ships (DFF LAVIS checkpoint, eva_vit_g.pth, Face-ViT .bin, Flan-T5 and
bert-base folders), converted, loaded strictly from the output folder, and every path is compared
with a plain functional re-implementation of the official modules computed on the official-named
tensors: EVA ViT + ln_vision, Q-Former, t5_proj, Face-ViT (with its CNN branch), tag gate, mask
path (cross-attention + two-way transformer + MLPs), the T5 logits and the generated text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.forgerytalker.config import ForgeryTalkerConfig
from baselines.forgerytalker.convert import Sources, convert, map_name, official_keys
from baselines.forgerytalker.gating import build_prompt, label_string
from baselines.forgerytalker.tokenization import build_tiny_tokenizers
from benchmark.data.regions import REGIONS
from benchmark.errors import BenchmarkError

CORPUS = ["The nose looks smeared and the left cheek has a repeated texture.",
          "The lips are waxy, the skin tone changes and the eyes do not match."]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_official_config(tok) -> ForgeryTalkerConfig:
    cfg = ForgeryTalkerConfig.tiny(t5_vocab_size=len(tok.t5), bert_vocab_size=len(tok.bert), hidden=32, patch_size=16,
                                   mask_size=12, coord_conv=True)
    cfg.vision.image_size = cfg.prompter.image_size = 64
    cfg.vision.num_hidden_layers = 2
    cfg.prompter.num_hidden_layers = 3
    cfg.qformer.num_hidden_layers = 3
    cfg.language.tie_word_embeddings = False  # Flan-T5: a separate lm_head
    cfg.tag_encoder.num_hidden_layers = 2
    cfg.generation.max_new_tokens = 6
    cfg.generation.num_beams = 2
    cfg.generation.min_length = 2
    return cfg


def random_official_state(cfg: ForgeryTalkerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, spec in official_keys(cfg).items():
        shape = spec.shape
        if name.endswith("position_ids"):
            state[name] = torch.arange(shape[-1]).view(shape)
        elif name.endswith("token_type_ids"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "norm4.weight", "LayerNorm.weight",
                            "layer_norm.weight", "ln_vision.weight", "norm_final_attn.weight", "_norm.weight",
                            "encoder_norm.weight", "branch2.1.weight", "conv_branch.1.weight")):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(("pos_embed", "cls_token", "position_embeddings", "query_tokens", "mask_tokens")):
            state[name] = 0.5 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[-1] if len(shape) > 1 else 16
            if len(shape) == 4:
                fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return state


# ---------------------------------------------------------------------- independent reference
def ln(x, sd, pre, eps):
    return F.layer_norm(x, x.shape[-1:], sd[pre + ".weight"], sd[pre + ".bias"], eps)


def lin(x, sd, pre, bias=True):
    return F.linear(x, sd[pre + ".weight"], sd[pre + ".bias"] if bias else None)


def heads_attention(q, k, v, heads, mask=None):
    b, lq, d = q.shape
    lk = k.shape[1]
    q = q.view(b, lq, heads, -1).transpose(1, 2)
    k = k.view(b, lk, heads, -1).transpose(1, 2)
    v = v.view(b, lk, heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, lq, -1)


def ref_eva(sd, cfg, x):
    v = cfg.vision
    h = F.conv2d(x, sd["visual_encoder.patch_embed.proj.weight"], sd["visual_encoder.patch_embed.proj.bias"],
                 stride=v.patch_size).flatten(2).transpose(1, 2)
    h = torch.cat([sd["visual_encoder.cls_token"].expand(x.shape[0], -1, -1), h], 1) + sd["visual_encoder.pos_embed"]
    for i in range(v.num_hidden_layers):
        p = f"visual_encoder.blocks.{i}"
        y = ln(h, sd, f"{p}.norm1", 1e-6)
        bias = torch.cat([sd[f"{p}.attn.q_bias"], torch.zeros_like(sd[f"{p}.attn.v_bias"]), sd[f"{p}.attn.v_bias"]])
        q, k, val = F.linear(y, sd[f"{p}.attn.qkv.weight"], bias).chunk(3, dim=-1)
        h = h + lin(heads_attention(q, k, val, v.num_attention_heads), sd, f"{p}.attn.proj")
        y = ln(h, sd, f"{p}.norm2", 1e-6)
        h = h + lin(F.gelu(lin(y, sd, f"{p}.mlp.fc1")), sd, f"{p}.mlp.fc2")
    return ln(h, sd, "ln_vision", 1e-5)


def ref_bert(sd, pre, ids, mask, layers, heads, *, query=None, enc=None, cross_every=0, token_types=False):
    """BERT encoder; with `query`, the Q-Former variant (queries first, cross-attention, own FFN)."""
    eps = 1e-12
    h = sd[f"{pre}embeddings.word_embeddings.weight"][ids] + sd[f"{pre}embeddings.position_embeddings.weight"][
        : ids.shape[1]]
    if token_types:
        h = h + sd[f"{pre}embeddings.token_type_embeddings.weight"][0]
    n_q = 0
    if query is not None:
        n_q = query.shape[1]
        h = torch.cat([query, h], 1)
        mask = torch.cat([torch.ones(mask.shape[0], n_q, dtype=mask.dtype), mask], 1)
    h = ln(h, sd, f"{pre}embeddings.LayerNorm", eps)
    ext = (1.0 - mask[:, None, None, :].float()) * -10000.0
    for i in range(layers):
        p = f"{pre}encoder.layer.{i}"
        a = heads_attention(lin(h, sd, f"{p}.attention.self.query"), lin(h, sd, f"{p}.attention.self.key"),
                            lin(h, sd, f"{p}.attention.self.value"), heads, ext)
        a = ln(lin(a, sd, f"{p}.attention.output.dense") + h, sd, f"{p}.attention.output.LayerNorm", eps)

        def ffn(x, suffix):
            y = lin(F.gelu(lin(x, sd, f"{p}.intermediate{suffix}.dense")), sd, f"{p}.output{suffix}.dense")
            return ln(y + x, sd, f"{p}.output{suffix}.LayerNorm", eps)

        if query is None:
            h = ffn(a, "")
            continue
        qa = a[:, :n_q]
        if cross_every and i % cross_every == 0:
            c = heads_attention(lin(qa, sd, f"{p}.crossattention.self.query"), lin(enc, sd, f"{p}.crossattention.self.key"),
                                lin(enc, sd, f"{p}.crossattention.self.value"), heads)
            qa = ln(lin(c, sd, f"{p}.crossattention.output.dense") + qa, sd, f"{p}.crossattention.output.LayerNorm", eps)
        h = torch.cat([ffn(qa, "_query"), ffn(a[:, n_q:], "")], 1)
    return h


def add_coordinates(x):
    """The official AddCoords: a row plane then a column plane, each arange / (n - 1) * 2 - 1."""
    b, _, rows, cols = x.shape
    r = (torch.arange(rows).float() / (rows - 1) * 2 - 1).view(1, 1, rows, 1).expand(b, 1, rows, cols)
    c = (torch.arange(cols).float() / (cols - 1) * 2 - 1).view(1, 1, 1, cols).expand(b, 1, rows, cols)
    return torch.cat([x, r, c], 1)


def ref_face_vit(sd, cfg, x):
    p = cfg.prompter
    pre = "multi_label_classifier."

    def bn(t, name):
        return F.batch_norm(t, sd[pre + name + ".running_mean"], sd[pre + name + ".running_var"],
                            sd[pre + name + ".weight"], sd[pre + name + ".bias"], False, 0.0, 1e-5)

    f1 = F.conv2d(add_coordinates(add_coordinates(x)), sd[pre + "coord_conv_branch.0.conv.weight"],
                  sd[pre + "coord_conv_branch.0.conv.bias"], stride=2, padding=1)
    f1 = F.max_pool2d(F.leaky_relu(bn(f1, "coord_conv_branch.1")), 2, 2)
    f2 = F.conv2d(f1, sd[pre + "conv_branch2.0.weight"], sd[pre + "conv_branch2.0.bias"], stride=2, padding=2)
    f2 = F.max_pool2d(F.relu(bn(f2, "conv_branch2.1")), 2, 2)
    e = pre + "transformer.embeddings."
    h = F.conv2d(x, sd[e + "patch_embeddings.weight"], sd[e + "patch_embeddings.bias"], stride=p.patch_size)
    h = torch.cat([sd[e + "cls_token"].expand(x.shape[0], -1, -1), h.flatten(2).transpose(1, 2)], 1)
    h = h + sd[e + "position_embeddings"]
    n = h.shape[1] - 1
    extras = [F.adaptive_avg_pool1d(f.flatten(2), n).transpose(1, 2) for f in (f1, f2)]

    def block(t, i):
        b = f"{pre}transformer.encoder.layer.{i}"
        y = ln(t, sd, f"{b}.attention_norm", 1e-6)
        t = t + lin(heads_attention(lin(y, sd, f"{b}.attn.query"), lin(y, sd, f"{b}.attn.key"),
                                    lin(y, sd, f"{b}.attn.value"), p.num_attention_heads), sd, f"{b}.attn.out")
        y = ln(t, sd, f"{b}.ffn_norm", 1e-6)
        return t + lin(F.gelu(lin(y, sd, f"{b}.ffn.fc1")), sd, f"{b}.ffn.fc2")

    for i in range(p.num_hidden_layers):
        if i < 2:
            h = torch.cat([h[:, :1], h[:, 1:] + extras[i]], 1)
        h = block(h, i)
    h = ln(h, sd, pre + "transformer.encoder.encoder_norm", 1e-6)
    return lin(h[:, 0], sd, pre + "head")


def torch_mha(q, k, v, sd, pre, heads):
    """nn.MultiheadAttention's maths on its (in_proj, out_proj) tensors."""
    wq, wk, wv = sd[pre + ".in_proj_weight"].chunk(3)
    bq, bk, bv = sd[pre + ".in_proj_bias"].chunk(3)
    out = heads_attention(F.linear(q, wq, bq), F.linear(k, wk, bk), F.linear(v, wv, bv), heads)
    return lin(out, sd, pre + ".out_proj")


def sam_attention(q, k, v, sd, pre, heads):
    out = heads_attention(lin(q, sd, pre + ".q_proj"), lin(k, sd, pre + ".k_proj"), lin(v, sd, pre + ".v_proj"), heads)
    return lin(out, sd, pre + ".out_proj")


def mlp3(x, sd, pre, layers):
    for k in range(layers):
        x = lin(x, sd, f"{pre}.layers.{k}")
        if k < layers - 1:
            x = F.relu(x)
    return x


def ref_mask(sd, cfg, image_embeds, label_ids):
    m = cfg.mask
    prompts = lin(sd["t5_model.shared.weight"][label_ids], sd, "prompt_proj")
    patches = image_embeds[:, 1:]
    attended = torch_mha(prompts, patches, patches, sd, "cross_attention_layer", m.cross_attention_heads)
    tokens = torch.cat([image_embeds[:, :1], attended], 1)
    pe, queries = tokens, sd["mask_decoder.mask_tokens"].expand(tokens.shape[0], -1, -1)
    qpe, keys = queries, tokens
    for i in range(m.depth):
        p = f"mask_decoder.transformer.layers.{i}"
        if i == 0:
            queries = sam_attention(queries, queries, queries, sd, f"{p}.self_attn", m.num_heads)
        else:
            q = queries + qpe
            queries = queries + sam_attention(q, q, queries, sd, f"{p}.self_attn", m.num_heads)
        queries = ln(queries, sd, f"{p}.norm1", 1e-5)
        queries = ln(queries + sam_attention(queries + qpe, keys + pe, keys, sd, f"{p}.cross_attn_token_to_image",
                                             m.num_heads), sd, f"{p}.norm2", 1e-5)
        queries = ln(queries + lin(F.relu(lin(queries, sd, f"{p}.mlp.lin1")), sd, f"{p}.mlp.lin2"), sd, f"{p}.norm3", 1e-5)
        keys = ln(keys + sam_attention(keys + pe, queries + qpe, queries, sd, f"{p}.cross_attn_image_to_token",
                                       m.num_heads), sd, f"{p}.norm4", 1e-5)
    queries = ln(queries + sam_attention(queries + qpe, keys + pe, keys, sd,
                                         "mask_decoder.transformer.final_attn_token_to_image", m.num_heads),
                 sd, "mask_decoder.transformer.norm_final_attn", 1e-5)
    upscaled = mlp3(keys, sd, "mask_decoder.output_upscaling_mlp", m.mlp_layers)
    hyper = mlp3(queries, sd, "mask_decoder.output_hypernetworks_mlps", m.mlp_layers)
    return (hyper @ upscaled).view(-1, m.output_size, m.output_size)  # logits


def ref_gates(sd, cfg, tok, image_embeds, labels):
    """Per image, as the official loop: BERT over that image's labels (padding='longest')."""
    b = cfg.tag_encoder
    out = []
    for i, names in enumerate(labels):
        if not names:
            continue
        enc = tok.bert(names, padding="longest", return_tensors="pt")
        states = ref_bert(sd, "bert_model.", enc["input_ids"], enc["attention_mask"], b.num_hidden_layers,
                          b.num_attention_heads, token_types=True)
        keys = lin(image_embeds[i, 1:], sd, "trans_layer").expand(len(names), -1, -1)
        att = torch_mha(states, keys, keys, sd, "gate_cross_attention_layer", b.gate_heads)
        out.append(torch.sigmoid(lin(att, sd, "fc_layer")).mean(dim=1).squeeze(-1))
    return torch.cat(out)


def reference_t5(sd, cfg):
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration(cfg.hf_t5()).eval()
    state = {k[len("t5_model."):]: v for k, v in sd.items() if k.startswith("t5_model.")}
    model.load_state_dict(state, strict=False, assign=True)
    model.lm_head.weight = torch.nn.Parameter(state["lm_head.weight"].clone())
    model.encoder.embed_tokens.weight = model.shared.weight
    model.decoder.embed_tokens.weight = model.shared.weight
    assert model.config.dense_act_fn == "gelu"
    return model


# ---------------------------------------------------------------------- release files
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The official files for a tiny configuration, written as the release ships them."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("release")
    tok = build_tiny_tokenizers(CORPUS, REGIONS, t5_vocab_size=160)
    cfg = tiny_official_config(tok)
    sd = random_official_state(cfg)
    # DFF LAVIS checkpoint: only what requires grad in the finetune stage (+ buffers) -- no EVA, no T5
    dff = {k: v for k, v in sd.items() if not k.startswith(("visual_encoder.", "t5_model.", "multi_label_classifier."))}
    torch.save({"model": dff, "config": {"arch": "blip2_t5_instruct"}, "epoch": 3}, root / "dff.pth")
    eva = {k[len("visual_encoder."):]: v for k, v in sd.items() if k.startswith("visual_encoder.")}
    eva[f"blocks.{cfg.vision.num_hidden_layers}.norm1.weight"] = torch.ones(cfg.vision.hidden_size)  # EVA's last block
    torch.save(eva, root / "eva_vit_g.pth")
    face = {k[len("multi_label_classifier."):]: v for k, v in sd.items() if k.startswith("multi_label_classifier.")}
    (root / "face").mkdir()
    torch.save(face, root / "face" / "Fakeface-ViT-H_14.bin")
    t5 = root / "flant5"
    t5.mkdir()
    save_file({k[len("t5_model."):]: v.contiguous() for k, v in sd.items()
               if k.startswith("t5_model.") and "embed_tokens" not in k}, str(t5 / "model.safetensors"))
    lang = cfg.language
    (t5 / "config.json").write_text(json.dumps({
        "model_type": "t5", "vocab_size": lang.vocab_size, "d_model": lang.d_model, "d_kv": lang.d_kv, "d_ff": lang.d_ff,
        "num_layers": lang.num_layers, "num_decoder_layers": lang.num_decoder_layers, "num_heads": lang.num_heads,
        "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1,
        "decoder_start_token_id": 0}))
    tok.t5.save_pretrained(str(t5))
    bert = root / "bert"
    bert.mkdir()
    bert_state = {("bert." + k[len("bert_model."):]).replace("LayerNorm.weight", "LayerNorm.gamma")
                  .replace("LayerNorm.bias", "LayerNorm.beta"): v
                  for k, v in sd.items() if k.startswith("bert_model.") and not k.endswith(("_ids",))}
    bert_state["cls.predictions.bias"] = torch.zeros(len(tok.bert))
    torch.save(bert_state, bert / "pytorch_model.bin")
    b = cfg.tag_encoder
    (bert / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": b.vocab_size, "hidden_size": b.hidden_size,
        "num_hidden_layers": b.num_hidden_layers, "num_attention_heads": b.num_attention_heads,
        "intermediate_size": b.intermediate_size, "max_position_embeddings": b.max_position_embeddings,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12}))
    tok.bert.save_pretrained(str(bert))
    sources = Sources(lavis=root / "dff.pth", t5=t5, bert=bert, eva_vit=root / "eva_vit_g.pth", face_vit=root / "face")
    return {"root": root, "cfg": cfg, "sd": sd, "tok": tok, "sources": sources, "dff": dff}


@pytest.fixture(scope="module")
def converted(release):
    from baselines.forgerytalker.build import load_checkpoint

    out = release["root"] / "converted"
    report = convert(release["sources"], out, config=release["cfg"])
    return {"report": report, "model": load_checkpoint(out), "out": out}


# ---------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def full_meta():
    """The paper-sized model, built on the meta device (no memory, no initialisation)."""
    from baselines.forgerytalker.model import ForgeryTalker

    with torch.device("meta"):
        return ForgeryTalker(ForgeryTalkerConfig.full())


def test_every_official_key_is_mapped_or_deliberately_unused(full_meta) -> None:
    from baselines.forgerytalker.model import ForgeryTalker

    with torch.device("meta"):
        tiny = ForgeryTalker(ForgeryTalkerConfig.tiny(coord_conv=True))
    for model in (full_meta, tiny):
        cfg = model.config
        targets: dict[str, list[str]] = {}
        for name in official_keys(cfg):
            new = map_name(name, cfg)  # raises KeyError for an unknown name
            if new is not None:
                targets.setdefault(new, []).append(name)
        mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert set(targets) == set(mine)
        merged = {k for k, v in targets.items() if len(v) > 1}
        assert merged and all(k.endswith("self_attn.qkv.bias") for k in merged)  # only EVA's q_bias + v_bias merge


def test_full_model_builds_on_meta_with_the_official_parameter_count(full_meta) -> None:
    from baselines.forgerytalker.model import count_parameters

    cfg = full_meta.config
    n = count_parameters(full_meta)
    keys = official_keys(cfg)
    buffers = ("position_ids", "token_type_ids", "running_mean", "running_var", "num_batches_tracked")
    official = sum(torch.Size(k.shape).numel() for name, k in keys.items()
                   if not name.endswith(buffers) and not name.endswith("embed_tokens.weight"))
    unused = sum(torch.Size(k.shape).numel() for name, k in keys.items() if map_name(name, cfg) is None
                 and not name.endswith(buffers))
    k_bias = cfg.vision.num_hidden_layers * cfg.vision.hidden_size  # transformers keeps a (zero) k bias
    assert n == official - unused + k_bias
    assert 4.9e9 < n < 5.0e9




def test_conversion_report_counts(converted, release) -> None:
    report = converted["report"]
    assert report["official_keys_present"] == report["mapped"] + report["unused"]
    assert set(report["unused_keys"]) == {
        "seg_proj.weight", "seg_proj.bias", "mlm_head.weight", "mlm_head.bias", "text_proj.weight", "text_proj.bias",
        "bert_model.pooler.dense.weight", "bert_model.pooler.dense.bias"}
    assert report["stage"] == "finetune" and report["initialised"] == {}
    assert report["sources"]["eva_vit"] > 0 and report["sources"]["t5"] > 0 and report["sources"]["face_vit"] > 0
    assert report["ignored"]["eva_vit"] == [f"visual_encoder.blocks.{release['cfg'].vision.num_hidden_layers}.norm1.weight"]
    assert (converted["out"] / "conversion.json").is_file()


def test_converted_model_equals_the_official_forward(converted, release) -> None:
    cfg, sd, tok = release["cfg"], release["sd"], release["tok"]
    model = converted["model"]
    torch.manual_seed(1)
    images = torch.rand(3, 3, 64, 64)
    pixels = model.normalize(images)
    with torch.no_grad():
        # vision encoder + ln_vision
        embeds = model.encode_image(pixels)
        ref_embeds = ref_eva(sd, cfg, pixels)
        assert torch.allclose(embeds, ref_embeds, atol=1e-4), (embeds - ref_embeds).abs().max()
        # Face-ViT prompter
        logits = model.prompter(pixels)
        ref_logits = ref_face_vit(sd, cfg, pixels)
        assert torch.allclose(logits, ref_logits, atol=1e-4), (logits - ref_logits).abs().max()
        ref_labels = [[n for n, p in zip(REGIONS, row) if p > 0.5] for row in torch.sigmoid(ref_logits).tolist()]
        ctx = model.context(pixels, embeds)
        assert ctx.labels == ref_labels and any(ctx.labels)
        assert ctx.prompts == [build_prompt(x) for x in ref_labels]
        # tag gate
        ref_g = ref_gates(sd, cfg, tok, ref_embeds, ref_labels)
        assert torch.allclose(ctx.gates, ref_g, atol=1e-5), (ctx.gates - ref_g).abs().max()
        # mask path (label strings as T5 ids, padded to 21, left-truncated)
        strings = [label_string(x) for x in ref_labels]
        tok.t5.truncation_side = "left"
        ids = tok.t5(strings, padding="max_length", truncation=True, max_length=21, return_tensors="pt")["input_ids"]
        tok.t5.truncation_side = "right"
        mask_logits = model.mask_logits(embeds, strings)
        ref_logits_mask = ref_mask(sd, cfg, ref_embeds, ids)
        assert torch.allclose(mask_logits, ref_logits_mask, atol=1e-4), (mask_logits - ref_logits_mask).abs().max()
        # Q-Former with the instruction + t5_proj
        q_ids = tok.bert(ctx.prompts, padding="longest", return_tensors="pt")
        ref_q = ref_bert(sd, "Qformer.bert.", q_ids["input_ids"], q_ids["attention_mask"], cfg.qformer.num_hidden_layers,
                         cfg.qformer.num_attention_heads, query=sd["query_tokens"].expand(3, -1, -1), enc=ref_embeds,
                         cross_every=cfg.qformer.cross_attention_frequency)
        ref_proj = lin(ref_q[:, : cfg.qformer.num_query_tokens], sd, "t5_proj")
        proj = model.query_outputs(ctx.prompts, embeds)
        assert torch.allclose(proj, ref_proj, atol=1e-4), (proj - ref_proj).abs().max()
        # T5: logits of a teacher-forced explanation, and the generated text
        t5_ids = tok.t5(ctx.prompts, padding="longest", return_tensors="pt")
        ref_inputs = torch.cat([ref_proj, sd["t5_model.shared.weight"][t5_ids["input_ids"]]], 1)
        ref_att = torch.cat([torch.ones(3, cfg.qformer.num_query_tokens, dtype=torch.long), t5_ids["attention_mask"]], 1)
        target = tok.t5(CORPUS + CORPUS[:1], padding="longest", return_tensors="pt")
        labels = target["input_ids"].masked_fill(target["input_ids"] == 0, -100)
        embeds_in, att = model.encoder_inputs(ctx.prompts, proj)
        assert torch.equal(att, ref_att)
        got = model.language_model(inputs_embeds=embeds_in, attention_mask=att,
                                   decoder_attention_mask=target["attention_mask"], labels=labels).logits
        t5_ref = reference_t5(sd, cfg)
        want = t5_ref(inputs_embeds=ref_inputs, attention_mask=ref_att, decoder_attention_mask=target["attention_mask"],
                      labels=labels).logits
        assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
        g = cfg.generation
        ref_text = tok.t5.batch_decode(t5_ref.generate(
            inputs_embeds=ref_inputs, attention_mask=ref_att, num_beams=g.num_beams, max_new_tokens=g.max_new_tokens,
            min_length=g.min_length, repetition_penalty=g.repetition_penalty, do_sample=False), skip_special_tokens=True)
        pred = model.generate(pixels)
        assert pred.captions == [t.strip() for t in ref_text]
        # the mask is drawn at 12x12 here and its logits upsampled bilinearly to the image size
        ref_up = torch.sigmoid(F.interpolate(ref_logits_mask[:, None], size=(64, 64), mode="bilinear")[:, 0])
        assert pred.masks.shape == (3, 64, 64) and torch.allclose(pred.masks, ref_up, atol=1e-5)


def test_conversion_refuses_unexpected_keys(release, tmp_path: Path) -> None:
    bad = dict(release["dff"])
    bad["Qformer.cls.predictions.bias"] = torch.zeros(3)
    torch.save({"model": bad}, tmp_path / "bad.pth")
    sources = Sources(**{**release["sources"].__dict__, "lavis": tmp_path / "bad.pth"})
    with pytest.raises(BenchmarkError, match=r"1 unexpected key\(s\): Qformer\.cls\.predictions\.bias") as err:
        convert(sources, tmp_path / "out", config=release["cfg"])
    assert "\n" not in str(err.value)


def test_conversion_refuses_missing_keys(release, tmp_path: Path) -> None:
    bad = {k: v for k, v in release["dff"].items() if not k.startswith("mask_decoder.transformer.layers.1.")}
    torch.save({"model": bad}, tmp_path / "bad.pth")
    sources = Sources(**{**release["sources"].__dict__, "lavis": tmp_path / "bad.pth", "eva_vit": None})
    with pytest.raises(BenchmarkError, match=r"missing key\(s\): mask_decoder\.transformer\.layers\.1\.") as err:
        convert(sources, tmp_path / "out", config=release["cfg"])
    message = str(err.value)
    assert "\n" not in message and "--eva-vit" in message and "more)" in message


def test_cli_convert_reports_one_line_errors(release, tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    src = release["sources"]
    rc = main(["convert", "forgerytalker", "--lavis", str(tmp_path / "absent.pth"), "--t5", str(src.t5),
               "--bert", str(src.bert), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "absent.pth" in err and err.count("\n") == 1


def test_cli_convert_writes_a_checkpoint(release, tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    src = release["sources"]
    release["cfg"].save(tmp_path / "config.json")
    rc = main(["convert", "forgerytalker", "--lavis", str(src.lavis), "--eva-vit", str(src.eva_vit), "--face-vit",
               str(src.face_vit), "--t5", str(src.t5), "--bert", str(src.bert), "--out", str(tmp_path / "ck"),
               "--config", str(tmp_path / "config.json"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mapped"] + report["unused"] == report["official_keys_present"]
    assert (tmp_path / "ck" / "model.safetensors").is_file() and (tmp_path / "ck" / "t5_tokenizer").is_dir()


def test_heads_inference_never_uses_are_not_required(release, tmp_path: Path) -> None:
    unused = ("seg_proj.", "mlm_head.", "text_proj.", "bert_model.pooler.")
    dff = {k: v for k, v in release["dff"].items() if not k.startswith(unused)}
    torch.save({"model": dff}, tmp_path / "dff.pth")
    sources = Sources(**{**release["sources"].__dict__, "lavis": tmp_path / "dff.pth"})
    report = convert(sources, tmp_path / "out", config=release["cfg"])
    assert report["stage"] == "finetune"
    assert {"seg_proj.weight", "mlm_head.weight", "text_proj.weight"} <= set(report["absent_optional"])
