"""The Face-ViT forgery prompter: which of the 21 facial regions look manipulated.

The released classifier (`LianJC/Face-ViT-MultiLabel`, "ViT-H_14-add_cnn_branch_3_5-add_max_pool")
is not a plain ViT: a small CNN on the image plus coordinate channels produces two feature maps
that are added to the patch tokens entering the first and second transformer blocks. That branch
is reproduced here (`coord_conv=True`) around transformers' `ViTModel`, so the released weights
convert one to one; the [CLS] token of the final norm feeds a linear multi-label head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.forgerytalker.config import ForgeryTalkerConfig


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """Append two channels: the row and the column coordinate, each scaled to [-1, 1].

    (The official `AddCoords` computes exactly these two planes, row first.)
    """
    b, _, h, w = x.shape
    rows = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    cols = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([x, rows, cols], dim=1)


class FaceViTPrompter(nn.Module):
    """ViT multi-label classifier with the official coordinate-conv branch.

    forward(pixel_values) -> logits (B, n_labels); `probabilities` applies the sigmoid.
    """

    def __init__(self, config: ForgeryTalkerConfig) -> None:
        super().__init__()
        from transformers import ViTModel

        p = config.prompter
        self.threshold = p.threshold
        self.coord_conv_enabled = p.coord_conv
        self.vit = ViTModel(config.hf_prompter(), add_pooling_layer=False)
        h = p.hidden_size
        if p.coord_conv:
            # image (3) + coordinates (2), then the CoordConv layer adds its own two coordinate planes
            self.coord_conv = nn.Conv2d(3 + 2 + 2, h, kernel_size=3, stride=2, padding=1)
            self.coord_bn = nn.BatchNorm2d(h)
            self.conv2 = nn.Conv2d(h, h, kernel_size=5, stride=2, padding=2)
            self.conv2_bn = nn.BatchNorm2d(h)
        self.classifier = nn.Linear(h, len(config.labels))

    def _branch_features(self, x: torch.Tensor, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        f1 = F.max_pool2d(F.leaky_relu(self.coord_bn(self.coord_conv(add_coords(add_coords(x)))), 0.01), 2, 2)
        f2 = F.max_pool2d(F.relu(self.conv2_bn(self.conv2(f1))), 2, 2)
        # as released: the flattened maps are average-pooled along the sequence to the patch count
        t1 = F.adaptive_avg_pool1d(f1.flatten(2), n_tokens).transpose(1, 2)
        t2 = F.adaptive_avg_pool1d(f2.flatten(2), n_tokens).transpose(1, 2)
        return t1, t2

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        pixel_values = pixel_values.to(vit.embeddings.patch_embeddings.projection.weight.dtype)
        hidden = vit.embeddings(pixel_values)
        layers = list(vit.layers)
        if self.coord_conv_enabled:
            t1, t2 = self._branch_features(pixel_values, hidden.shape[1] - 1)
            for layer, extra in zip(layers[:2], (t1, t2)):
                hidden = torch.cat([hidden[:, :1], hidden[:, 1:] + extra.to(hidden.dtype)], dim=1)
                hidden = layer(hidden)
            layers = layers[2:]
        for layer in layers:
            hidden = layer(hidden)
        hidden = vit.layernorm(hidden)
        return self.classifier(hidden[:, 0])

    def probabilities(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(pixel_values).float())
