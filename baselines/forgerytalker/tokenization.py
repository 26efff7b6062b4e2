"""The two tokenizers ForgeryTalker needs, loaded from local folders or built offline.

- `t5`: the language model's tokenizer (instruction, target explanation, mask-path label string).
  The full model uses Flan-T5's SentencePiece tokenizer from its local folder.
- `bert`: bert-base-uncased's WordPiece tokenizer, for the Q-Former's instruction input and the
  tag encoder's label embeddings (LAVIS adds a `[DEC]` bos token for the Q-Former, which only
  grows its embedding table by one row: the ids of ordinary text are the same).

No hub access: the tiny model gets a byte-pair (SentencePiece-style boundaries) T5-like tokenizer and a
WordLevel BERT-like tokenizer trained on the training explanations, both wrapped in
`PreTrainedTokenizerFast` so the same code path loads and saves them.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from transformers import PreTrainedTokenizerBase

from baselines.forgerytalker.gating import PROMPT_NO_LABELS, PROMPT_WITH_LABELS

T5_DIR = "t5_tokenizer"
BERT_DIR = "bert_tokenizer"


@dataclass
class Tokenizers:
    t5: PreTrainedTokenizerBase
    bert: PreTrainedTokenizerBase

    def save(self, out: Path) -> None:
        self.t5.save_pretrained(str(Path(out) / T5_DIR))
        self.bert.save_pretrained(str(Path(out) / BERT_DIR))

    @classmethod
    def load(cls, folder: Path) -> "Tokenizers":
        """Both tokenizers from `<folder>/t5_tokenizer` and `<folder>/bert_tokenizer`."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        missing = [d for d in (T5_DIR, BERT_DIR) if not (folder / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{folder}: tokenizer folder(s) missing: {', '.join(missing)}")
        return cls(t5=AutoTokenizer.from_pretrained(str(folder / T5_DIR)),
                   bert=AutoTokenizer.from_pretrained(str(folder / BERT_DIR)))


@contextlib.contextmanager
def truncation_side(tokenizer: PreTrainedTokenizerBase, side: str) -> Iterator[PreTrainedTokenizerBase]:
    """Temporarily truncate on `side` (LAVIS keeps left- and right-truncating copies)."""
    old = tokenizer.truncation_side
    tokenizer.truncation_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.truncation_side = old


def _corpus(texts: Iterable[str], labels: Iterable[str]) -> list[str]:
    labels = list(labels)
    extra = [PROMPT_NO_LABELS, PROMPT_WITH_LABELS.format(labels=", ".join(labels)), " ".join(labels)]
    return list(texts) + extra


def build_tiny_t5_tokenizer(texts: Iterable[str], labels: Iterable[str], vocab_size: int = 1024):
    """A byte-pair tokenizer with SentencePiece-style word boundaries (Metaspace, so it decodes back
    to normal text) and T5's special tokens (<pad>=0, </s>=1, <unk>=2) and '$A </s>' template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], min_frequency=1,
                                  show_progress=False)
    tok.train_from_iterator(_corpus(texts, labels), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def build_tiny_bert_tokenizer(texts: Iterable[str], labels: Iterable[str]):
    """A lower-casing WordLevel tokenizer with BERT's specials and the '[CLS] $A [SEP]' template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words: dict[str, None] = {}
    for text in _corpus(texts, labels):
        for w in re.findall(r"\w+|[^\w\s]", text.lower()):
            words.setdefault(w, None)
    vocab = {t: i for i, t in enumerate(specials + sorted(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def build_tiny_tokenizers(texts: Iterable[str], labels: Iterable[str], t5_vocab_size: int = 1024) -> Tokenizers:
    texts = list(texts)
    labels = list(labels)
    return Tokenizers(t5=build_tiny_t5_tokenizer(texts, labels, t5_vocab_size),
                      bert=build_tiny_bert_tokenizer(texts, labels))
