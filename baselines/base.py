"""What every baseline shares: the attributes the harness reads, and moving to a device."""

from __future__ import annotations

import torch

from benchmark.harness.interface import Batch, Output


class Baseline:
    """A model behind the harness interface (`benchmark.harness.interface.Model`).

    `checkpoint` is the folder the model was loaded from (None when it needs none) and
    `checkpoint_id` a hash of its metadata: both go into the run's identity, so resuming a run
    with a retrained model is refused instead of mixing two models' outputs.
    """

    name: str = ""
    kind: str = "localizer"
    image_size: int = 256
    batch_size: int = 32
    checkpoint: str | None = None
    checkpoint_id: str | None = None

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules to move with `to` (none for rule-based models)."""
        return []

    def to(self, device: torch.device | str) -> "Baseline":
        self.device = torch.device(device)
        for m in self.modules():
            m.to(self.device).eval()
        return self

    def predict(self, batch: Batch) -> Output:  # pragma: no cover - every baseline overrides it
        raise NotImplementedError
