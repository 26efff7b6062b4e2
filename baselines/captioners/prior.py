"""The prior captioner: one explanation for every image, the most representative of the train split.

`mmtt train prior` picks the train explanation with the highest mean TF-IDF (1-4-gram) similarity
to all the others — the medoid, which is what maximises CIDEr-style consensus without looking at
the image (`--option strategy=frequent` takes the most frequent explanation instead). It is the
floor an image-aware explainer must clear.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from baselines import checkpoint as ckpt
from baselines.base import Baseline
from baselines.captioners.text import consensus_index
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.interface import Batch, Output

NAME = "prior"


class PriorCaptioner(Baseline):
    kind = "captioner"
    image_size = 32  # the image is not looked at
    batch_size = 256

    def __init__(self, caption: str, checkpoint: Path | None = None) -> None:
        super().__init__()
        self.name, self.caption = NAME, caption
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.checkpoint_id = ckpt.checkpoint_id(checkpoint)

    def predict(self, batch: Batch) -> Output:
        return Output(captions=[self.caption] * len(batch.ids))


def build_prior(checkpoint: str | Path | None = None) -> PriorCaptioner:
    path = ckpt.require(NAME, checkpoint)
    return PriorCaptioner(ckpt.read_meta(path)["caption"], path)


def train_prior(data: Path, out: Path | None = None, *, strategy: str = "medoid", seed: int = 0,
                device: str = "auto", workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Pick the explanation (text only: `device` and `workers` are accepted and unused)."""
    if strategy not in ("medoid", "frequent"):
        raise BenchmarkError(f"--option strategy={strategy}: expected medoid or frequent")
    captions = [r.caption for r in load_split(data, "train", check_files=False).records if r.caption.strip()]
    if not captions:
        raise BenchmarkError(f"{data}: the train split has no explanations")
    caption, count = Counter(captions).most_common(1)[0]
    if strategy == "medoid" or count == 1:
        caption = captions[consensus_index(captions, seed=seed)]
        strategy = "medoid"
    path = ckpt.resolve(NAME, out)
    ckpt.write_meta(path, NAME, {"caption": caption, "strategy": strategy, "train_items": len(captions)})
    return {"checkpoint": str(path), "caption": caption, "strategy": strategy, "seconds": 0.0}
