"""From predicted region labels to the instruction, the mask-path label string and the tag gate.

Word for word as the official `blip2_t5_instruct.py`:
- kept labels = the regions whose prompter probability is > threshold (0.5), in region order;
- instruction = `PROMPT_WITH_LABELS` with the labels joined by ", " (or `PROMPT_NO_LABELS`);
- mask-path label string = the labels joined by a single space ("" when none).

The tag gate embeds each kept label with BERT, lets its tokens cross-attend the image patch
tokens (projected from the vision width to the BERT width), and turns each token into a sigmoid
gate, averaged over the label's (padded) tokens. As released, the gate is trained against the
truth multilabel (the gate loss) but does not filter the labels that reach the prompt: the
instruction keeps every label above threshold. `filter_by_gate=True` is an opt-in variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PROMPT_WITH_LABELS = (
    "The following facial areas may have been modified by AI: {labels}. These areas might have been manipulated "
    "either by replacing the entire face or by altering specific facial features. Please identify these areas and "
    "describe why they appear unnatural."
)
PROMPT_NO_LABELS = (
    "The following facial areas may have been modified by AI. These areas might have been manipulated either by "
    "replacing the entire face or by altering specific facial features. Please identify these areas and describe "
    "why they appear unnatural."
)


def kept_labels(probabilities: torch.Tensor, names: Sequence[str], threshold: float = 0.5) -> list[list[str]]:
    """Per image, the label names whose probability is strictly above `threshold`, in label order."""
    keep = (probabilities > threshold).cpu().tolist()
    return [[n for n, k in zip(names, row) if k] for row in keep]


def build_prompt(labels: Sequence[str]) -> str:
    """The instruction given to the Q-Former and the language model."""
    return PROMPT_WITH_LABELS.format(labels=", ".join(labels)) if labels else PROMPT_NO_LABELS


def label_string(labels: Sequence[str]) -> str:
    """The text the mask path embeds (T5 token embeddings)."""
    return " ".join(labels)


@dataclass
class GateResult:
    """Per image: the gate value of each kept label (1-D tensor, same order), or None if none."""

    gates: list[torch.Tensor | None]


class TagGate(nn.Module):
    """Sigmoid gate per predicted label from BERT label tokens cross-attending the image tokens.

    Official names: `trans_layer` -> `image_proj`, `gate_cross_attention_layer` -> `attention`,
    `fc_layer` -> `gate`.
    """

    def __init__(self, vision_width: int, tag_width: int, heads: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(vision_width, tag_width)
        self.attention = nn.MultiheadAttention(tag_width, heads, batch_first=True)
        self.gate = nn.Linear(tag_width, 1)

    def forward(self, tag_states: torch.Tensor, token_counts: torch.Tensor, image_embeds: torch.Tensor,
                owner: torch.Tensor) -> torch.Tensor:
        """Gate values (P,) for P labels.

        `tag_states` (P, L, D): BERT states of each label, padded to a common length L;
        `token_counts` (P,): the length each label was padded to in its own image's group (the
        official code tokenizes each image's labels with padding='longest' and averages the gate
        over all of those positions, padding included); `image_embeds` (B, 1+N, W) with the [CLS]
        first; `owner` (P,): the image each label belongs to.
        """
        keys = self.image_proj(image_embeds[:, 1:, :])[owner]                     # (P, N, D)
        attended, _ = self.attention(tag_states, keys, keys, need_weights=False)  # (P, L, D)
        token_gates = torch.sigmoid(self.gate(attended).squeeze(-1))             # (P, L)
        positions = torch.arange(token_gates.shape[1], device=token_gates.device)
        valid = (positions[None, :] < token_counts[:, None]).to(token_gates.dtype)
        return (token_gates * valid).sum(1) / valid.sum(1)


def gate_loss(gates: torch.Tensor, truth: torch.Tensor, owner: torch.Tensor, batch_size: int,
              official_double_sigmoid: bool = False) -> torch.Tensor:
    """Mean over images (divided by the batch size, as released) of the per-image BCE between the
    gates of its kept labels and the truth of those labels.

    The official code feeds the (already sigmoid) gate values to `binary_cross_entropy_with_logits`;
    `official_double_sigmoid=True` reproduces that, the default uses plain BCE on probabilities.
    """
    total = gates.new_zeros(())
    for b in range(batch_size):
        sel = owner == b
        if bool(sel.any()):
            g, t = gates[sel].float(), truth[sel].float()
            if official_double_sigmoid:
                total = total + F.binary_cross_entropy_with_logits(g, t)
            else:
                total = total + F.binary_cross_entropy(g.clamp(1e-6, 1 - 1e-6), t)
    return total / batch_size
