"""SegFormer localizer (transformers' `SegformerForSemanticSegmentation`), fine-tuned on the train split.

`mmtt train segformer --data DIR --option pretrained=PATH` starts from a local pretrained
SegFormer folder (e.g. a downloaded `nvidia/mit-b0`; its head is replaced by a 1-label one);
without `pretrained` it starts from a small random configuration, which trains on a CPU in
minutes. As for the U-Net, the two noise-trace maps of `forensic.residual_maps` are given
beside RGB (the first patch embedding is widened, zero-initialised for a pretrained model;
`--option forensic=false` keeps plain RGB). The checkpoint is the model's own `save_pretrained` folder (config.json +
model.safetensors) plus `mmtt_model.json`. Masks come out at a quarter of the input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines import checkpoint as ckpt
from baselines.forensic import residual_maps
from baselines.training import SegmentationLocalizer, TrainConfig, fit
from benchmark.errors import BenchmarkError

NAME = "segformer"
FORENSIC_CHANNELS = 2  # forensic.residual_maps, beside RGB
# a small MiT: 4 stages of one block each, ~1/8 of mit-b0's parameters and compute
SMALL = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 2, 4],
         "decoder_hidden_size": 64, "sr_ratios": [8, 4, 2, 1], "drop_path_rate": 0.0}


class LogitsOnly(nn.Module):
    """Normalised RGB (+ the two noise-trace maps when the model takes 5 channels) -> (B, 1, S/4,
    S/4) logits: the plain module the harness and the trainer want."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forensic = model.config.num_channels == 3 + FORENSIC_CHANNELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forensic:
            x = torch.cat([x, residual_maps(x, 1).to(x.dtype)], dim=1)
        return self.model(pixel_values=x).logits


def add_forensic_channels(model: nn.Module) -> None:
    """Widen the first patch embedding of a pretrained RGB SegFormer to take the noise-trace maps;
    their weights start at zero, so the pretrained behaviour is where fine-tuning starts."""
    channels = model.config.num_channels
    name, proj = next((n, m) for n, m in model.segformer.named_modules()
                      if isinstance(m, nn.Conv2d) and m.in_channels == channels)  # the first one
    wider = nn.Conv2d(channels + FORENSIC_CHANNELS, proj.out_channels, proj.kernel_size, proj.stride,
                      proj.padding, bias=proj.bias is not None)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :channels] = proj.weight
        if proj.bias is not None:
            wider.bias.copy_(proj.bias)
    parent = model.segformer.get_submodule(name.rpartition(".")[0]) if "." in name else model.segformer
    setattr(parent, name.rpartition(".")[2], wider)
    if hasattr(parent, "num_channels"):
        parent.num_channels = channels + FORENSIC_CHANNELS
    model.config.num_channels = channels + FORENSIC_CHANNELS


def small_config(**overrides: Any):
    from transformers import SegformerConfig

    return SegformerConfig(**{"num_labels": 1, "num_channels": 3 + FORENSIC_CHANNELS, **SMALL, **overrides})


def build_segformer(checkpoint: str | Path | None = None) -> SegmentationLocalizer:
    path = ckpt.require(NAME, checkpoint)
    meta = ckpt.read_meta(path)
    from transformers import SegformerForSemanticSegmentation

    model = SegformerForSemanticSegmentation.from_pretrained(str(path))
    return SegmentationLocalizer(NAME, LogitsOnly(model), meta["image_size"], checkpoint=path,
                                 checkpoint_id=ckpt.checkpoint_id(path))


def train_segformer(data: Path, out: Path | None = None, *, epochs: int = 6, batch_size: int = 16,
                    lr: float = 1e-3, device: str = "auto", workers: int | None = None, seed: int = 0,
                    progress: bool = True, image_size: int = 256, pretrained: str | None = None,
                    forensic: bool = True) -> dict[str, Any]:
    """Fine-tune from `pretrained` (a local folder) or train the small random config from scratch;
    `forensic` adds the two noise-trace input channels (as the U-Net has)."""
    from transformers import SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    if pretrained:
        if not (Path(pretrained) / "config.json").is_file():
            raise BenchmarkError(f"--option pretrained={pretrained}: not a local transformers model folder (no config.json)")
        model = SegformerForSemanticSegmentation.from_pretrained(
            str(pretrained), num_labels=1, ignore_mismatched_sizes=True, id2label={0: "forged"}, label2id={"forged": 0})
        if forensic and model.config.num_channels == 3:
            add_forensic_channels(model)
    else:
        model = SegformerForSemanticSegmentation(small_config(num_channels=3 + (FORENSIC_CHANNELS if forensic else 0)))
    net = LogitsOnly(model)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, workers=workers, seed=seed,
                      progress=progress)
    summary = fit(net, Path(data), cfg, image_size=image_size, mask_size=image_size // 4)
    path = ckpt.resolve(NAME, out)
    model.save_pretrained(str(path))
    ckpt.write_meta(path, NAME, {"arch": "SegformerForSemanticSegmentation", "image_size": image_size,
                                 "pretrained": str(pretrained) if pretrained else None, "train": summary})
    return {"checkpoint": str(path), **summary}
