"""The mask path: label tokens attend the image, a SAM-style two-way decoder draws the mask.

As the official `_get_mask_prediction` + `MaskDecoder` + `TwoWayTransformer`:
1. the label string's T5 token embeddings (padded to 21 tokens) are projected to the vision width
   and cross-attend the image patch tokens (8 heads); the image [CLS] token is prepended -> 22
   tokens;
2. a two-way transformer (depth 2) runs with those 22 tokens as the "image" side (they are also
   their own positional encoding) and one learned mask token as the query side;
3. a 3-layer MLP maps each of the 22 refined tokens to a full 224x224 map; a 3-layer hypernetwork
   MLP maps the mask token to 22 mixing weights; the mask logits are their product.

The two-way transformer is transformers' `SamTwoWayTransformer` (same blocks, names and maths as
the official one: ReLU MLP, attention downsample 2, first-layer PE skip, final token-to-image
attention); the MLPs are `SamFeedForward` (proj_in, hidden layers, proj_out, ReLU).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.forgerytalker.config import ForgeryTalkerConfig


class TwoWayMaskDecoder(nn.Module):
    """tokens (B, T, C) -> mask logits (B, S, S); T must equal `1 + label_max_tokens`."""

    def __init__(self, config: ForgeryTalkerConfig) -> None:
        super().__init__()
        from transformers.models.sam.modeling_sam import SamFeedForward, SamTwoWayTransformer

        m = config.mask
        dim = config.vision.hidden_size
        self.size = m.output_size
        self.n_tokens = 1 + m.label_max_tokens
        self.transformer = SamTwoWayTransformer(config.hf_mask_decoder())
        self.mask_tokens = nn.Parameter(torch.randn(1, m.num_mask_tokens, dim) * 0.02)
        self.output_upscaling_mlp = SamFeedForward(dim, dim, m.output_size ** 2, m.mlp_layers)
        self.output_hypernetworks_mlps = SamFeedForward(dim, dim, self.n_tokens, m.mlp_layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, c = tokens.shape
        grid = tokens.transpose(1, 2).unsqueeze(-1)  # (B, C, T, 1): SAM flattens (H, W) -> T tokens
        queries = self.mask_tokens.to(tokens.dtype).expand(b, -1, -1).unsqueeze(1)  # (B, 1, M, C)
        hs, src = self.transformer(point_embeddings=queries, image_embeddings=grid, image_positional_embeddings=grid,
                                   attention_similarity=None)
        upscaled = self.output_upscaling_mlp(src[:, 0])             # (B, T, S*S)
        hyper = self.output_hypernetworks_mlps(hs[:, 0])            # (B, M, T)
        masks = hyper @ upscaled                                    # (B, M, S*S)
        return masks[:, 0].view(b, self.size, self.size)


class LabelMaskHead(nn.Module):
    """Label-token embeddings + image tokens -> mask logits (B, S, S).

    Official names: `prompt_proj` -> `prompt_proj`, `cross_attention_layer` -> `cross_attention`,
    `mask_decoder` -> `decoder`.
    """

    def __init__(self, config: ForgeryTalkerConfig) -> None:
        super().__init__()
        width = config.vision.hidden_size
        self.prompt_proj = nn.Linear(config.language.d_model, width)
        self.cross_attention = nn.MultiheadAttention(width, config.mask.cross_attention_heads, batch_first=True)
        self.decoder = TwoWayMaskDecoder(config)

    def forward(self, label_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """`label_embeds` (B, 21, d_model) T5 token embeddings; `image_embeds` (B, 1+N, W)."""
        prompts = self.prompt_proj(label_embeds.to(self.prompt_proj.weight.dtype))
        patches = image_embeds[:, 1:, :].to(prompts.dtype)
        attended, _ = self.cross_attention(prompts, patches, patches, need_weights=False)
        tokens = torch.cat([image_embeds[:, :1, :].to(attended.dtype), attended], dim=1)
        return self.decoder(tokens)
