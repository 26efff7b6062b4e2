"""Zero-shot vision-language explainers through transformers: BLIP, BLIP-2, InstructBLIP.

Each loads a local pretrained folder (`--checkpoint DIR`: the model, its processor and
tokenizers, as `save_pretrained` writes them — e.g. a downloaded
`Salesforce/instructblip-flan-t5-xl`) and is asked, without any fine-tuning, why the face looks
manipulated. Generation follows the official MMTT harness: beam search with 5 beams, at most
100 and at least 5 new tokens.

Images arrive from the harness already resized (bilinear) to the processor's size, so only
the processor's normalisation is applied here, in torch, on the harness's device; the prompt
is tokenised once (through the processor, which inserts the image placeholder tokens BLIP-2
and InstructBLIP expect) and repeated for each batch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import checkpoint as ckpt
from baselines.base import Baseline
from benchmark.errors import BenchmarkError
from benchmark.harness.interface import Batch, Output

QUESTION = "Which parts of this face look digitally manipulated, and why?"
FAMILIES: dict[str, dict[str, Any]] = {
    "blip": {"cls": "BlipForConditionalGeneration", "prompt": None,
             "example": "Salesforce/blip-image-captioning-large"},
    "blip2": {"cls": "Blip2ForConditionalGeneration", "prompt": f"Question: {QUESTION} Answer:",
              "example": "Salesforce/blip2-opt-2.7b"},
    "instructblip": {"cls": "InstructBlipForConditionalGeneration", "prompt": QUESTION,
                     "example": "Salesforce/instructblip-flan-t5-xl"},
}
FALLBACK = "The image looks manipulated."  # said when the model generates nothing but special tokens
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _size(image_processor) -> int:
    size = getattr(image_processor, "size", None) or {}
    if not isinstance(size, dict):
        size = dict(size)
    value = size.get("height") or size.get("shortest_edge") or size.get("width")
    if not value:
        raise BenchmarkError(f"image processor {type(image_processor).__name__}: no image size in its config")
    return int(value)


class VLMCaptioner(Baseline):
    kind = "captioner"

    def __init__(self, family: str, path: Path, *, prompt: str | None = None, num_beams: int = 5,
                 max_new_tokens: int = 100, min_new_tokens: int = 5, dtype: str = "float32", batch_size: int = 8) -> None:
        import transformers
        from transformers import AutoProcessor

        super().__init__()
        if dtype not in DTYPES:
            raise BenchmarkError(f"--option dtype={dtype}: expected one of {', '.join(DTYPES)}")
        spec = FAMILIES[family]
        self.name, self.family, self.batch_size = family, family, int(batch_size)
        self.processor = AutoProcessor.from_pretrained(str(path))
        self.model = getattr(transformers, spec["cls"]).from_pretrained(str(path), dtype=DTYPES[dtype]).eval()
        ip = self.processor.image_processor
        self.image_size = _size(ip)
        self.mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(ip.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.prompt = spec["prompt"] if prompt is None else (prompt or None)
        self.text_inputs = self._encode_prompt()
        self.generate_kwargs = {"num_beams": int(num_beams), "max_new_tokens": int(max_new_tokens),
                                "min_new_tokens": int(min_new_tokens), "do_sample": False}
        self.checkpoint = str(path)
        self.checkpoint_id = hashlib.sha256((Path(path) / "config.json").read_bytes()).hexdigest()[:16]
        self.n_fallback = 0

    def _encode_prompt(self) -> dict[str, torch.Tensor]:
        if self.prompt is None:
            return {}
        dummy = np.zeros((self.image_size, self.image_size, 3), dtype=np.uint8)
        enc = self.processor(images=[dummy], text=[self.prompt], return_tensors="pt")
        return {k: v for k, v in enc.items() if k != "pixel_values" and isinstance(v, torch.Tensor)}

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @property
    def _decoder_only(self) -> bool:
        text = getattr(self.model.config, "text_config", None)
        return self.family != "blip" and not getattr(text, "is_encoder_decoder", False)

    def predict(self, batch: Batch) -> Output:
        x = batch.images.float()
        pixels = ((x - self.mean.to(x.device)) / self.std.to(x.device)).to(self.model.dtype)
        b = x.shape[0]
        text = {k: v.to(x.device).expand(b, *v.shape[1:]) for k, v in self.text_inputs.items()}
        generated = self.model.generate(pixel_values=pixels, **text, **self.generate_kwargs)
        if self._decoder_only and "input_ids" in text and generated.shape[1] > text["input_ids"].shape[1] \
                and torch.equal(generated[:, : text["input_ids"].shape[1]], text["input_ids"]):
            generated = generated[:, text["input_ids"].shape[1]:]  # keep only the answer
        captions = [" ".join(c.split()) for c in self.processor.batch_decode(generated, skip_special_tokens=True)]
        if self.prompt and not self._decoder_only:
            captions = [c[len(self.prompt):].strip() if c.startswith(self.prompt) else c for c in captions]
        empty = sum(1 for c in captions if not c)
        if empty:
            if self.n_fallback == 0:
                print(f"warning: {self.name} generated no text for some images; they get the caption {FALLBACK!r}",
                      file=sys.stderr)
            self.n_fallback += empty
        return Output(captions=[c or FALLBACK for c in captions])


def _build(family: str, checkpoint: str | Path | None, **options: Any) -> VLMCaptioner:
    path = ckpt.resolve(family, checkpoint)
    if not (path / "config.json").is_file():
        raise BenchmarkError(f"model '{family}' needs a local pretrained checkpoint: no config.json in {path} "
                             f"(pass --checkpoint DIR, a folder saved by save_pretrained, e.g. a downloaded "
                             f"{FAMILIES[family]['example']}, with its processor)")
    return VLMCaptioner(family, path, **options)


def build_blip(checkpoint: str | Path | None = None, **options: Any) -> VLMCaptioner:
    return _build("blip", checkpoint, **options)


def build_blip2(checkpoint: str | Path | None = None, **options: Any) -> VLMCaptioner:
    return _build("blip2", checkpoint, **options)


def build_instructblip(checkpoint: str | Path | None = None, **options: Any) -> VLMCaptioner:
    return _build("instructblip", checkpoint, **options)
