"""The submission format (CONTRACT) and the limits every submission is checked against.

A submission is a directory (or a .zip / .tar.gz of one) holding:
- `predictions.jsonl`: one object per line, `{"image_id": str, "caption": str}` with an optional
  `"mask": "relative/path.png"`;
- `masks/`: 8-bit greyscale PNGs, any size with the truth's aspect ratio; > 127 is forged;
- `manifest.json` (optional to score, required to submit): model, team, split, tasks, urls.
Without `"mask"`, a line's mask is `masks/<truth img_path with its extension replaced by .png>`,
which is where the official harness writes it — so its output (a captions JSONL with `img_path`
plus a mask folder) is a submission as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREDICTIONS = "predictions.jsonl"
MASKS_DIR = "masks"
MANIFEST = "manifest.json"
TASKS = ("localization", "interpretation")


@dataclass(frozen=True)
class Limits:
    """Caps a submission must respect; all configurable, all checked before any work is done."""

    max_caption_chars: int = 4000
    max_caption_words: int = 400
    max_archive_files: int = 200_000
    max_archive_bytes: int = 8 * 1024**3      # uncompressed
    max_line_bytes: int = 64 * 1024
    max_problems: int = 50                    # problems listed in one report


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Prediction:
    """One line of predictions.jsonl, as read (fields that were absent are None)."""

    image_id: str
    line: int
    caption: str | None = None
    mask: str | None = None          # the explicit "mask" path, if given
    img_path: str | None = None      # present in the official harness's output


@dataclass
class Manifest:
    """manifest.json: who made the predictions and what they cover."""

    model: str
    team: str
    split: str | None = None
    tasks: tuple[str, ...] = TASKS
    authors: str = ""
    paper_url: str = ""
    code_url: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
