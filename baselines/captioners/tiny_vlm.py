"""Tiny random BLIP / BLIP-2 / InstructBLIP checkpoints, built offline, for smoke tests.

No model hub is reachable here, so the real loading path of `vlm.py` (`from_pretrained` on a
local folder holding the model, its processor and tokenizers) is exercised on folders written
by `write_tiny_checkpoint`: a few-thousand-parameter model with the real architecture, a word-
level tokenizer over a small vocabulary, and an image processor at 32 px. Their captions are
random words — the point is that every piece loads and runs, not what it says.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("blip", "blip2", "instructblip")
WORDS = ("the a an of and is are looks look seems too very nose eye eyes mouth lips lip skin cheek hair "
         "forehead chin jaw eyebrows smooth blurred fake edited seam waxy smeared colour area face image "
         "photo picture region texture border unnatural artificial question which parts this digitally "
         "manipulated why answer").split()
IMAGE = 32


def _bert_tokenizer():
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "[DEC]"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    tok.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token, special as in the real one
    return tok


def _word_tokenizer(bos: str | None, eos: str, pad: str, unk: str):
    """A word-level fast tokenizer (what a language model's tokenizer does, minus the subwords)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(t for t in (pad, eos, unk, bos) if t))
    vocab = {w: i for i, w in enumerate([*specials, *WORDS, ".", ",", ":", "?"])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if bos:
        tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    else:
        tk.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)


def _image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": IMAGE, "width": IMAGE})


def _vision(**kw) -> dict:
    return dict(hidden_size=32, image_size=IMAGE, patch_size=8, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=37, **kw)


def _qformer(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                encoder_hidden_size=32, max_position_embeddings=64, pad_token_id=0)


def write_tiny_checkpoint(family: str, out: Path, seed: int = 0) -> Path:
    """Write a random tiny `family` model + processor to `out` (loadable by `vlm.build_*`)."""
    from transformers import (
        Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipConfig, BlipForConditionalGeneration,
        BlipProcessor, InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor,
    )

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    torch.manual_seed(seed)
    out = Path(out)
    n_query = 4
    if family == "blip":
        tok = _bert_tokenizer()
        processor = BlipProcessor(image_processor=_image_processor(), tokenizer=tok)
        text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=37, max_position_embeddings=160, bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
                    sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)
        model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=_vision(), projection_dim=32))
    elif family == "blip2":
        tok = _word_tokenizer(bos="</s>", eos="</s>", pad="<pad>", unk="<unk>")
        processor = Blip2Processor(image_processor=_image_processor(), tokenizer=tok, num_query_tokens=n_query)
        image_id = tok.convert_tokens_to_ids("<image>")
        text = dict(model_type="opt", vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, ffn_dim=37,
                    num_attention_heads=2, max_position_embeddings=160, word_embed_proj_dim=32,
                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model = Blip2ForConditionalGeneration(Blip2Config(vision_config=_vision(), qformer_config=_qformer(30),
                                                          text_config=text, num_query_tokens=n_query,
                                                          image_token_index=image_id))
    else:
        tok = _word_tokenizer(bos=None, eos="</s>", pad="<pad>", unk="<unk>")
        qtok = _bert_tokenizer()
        processor = InstructBlipProcessor(image_processor=_image_processor(), tokenizer=tok, qformer_tokenizer=qtok,
                                          num_query_tokens=n_query)
        image_id = tok.convert_tokens_to_ids("<image>")
        text = dict(model_type="t5", vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_decoder_layers=1,
                    num_heads=2, relative_attention_num_buckets=8, decoder_start_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model = InstructBlipForConditionalGeneration(InstructBlipConfig(
            vision_config=_vision(), qformer_config=_qformer(len(qtok)), text_config=text, num_query_tokens=n_query,
            image_token_index=image_id))
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out
