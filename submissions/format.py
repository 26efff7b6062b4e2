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

from dataclasses import dataclass, field, replace
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
    max_archive_files: int = 200_000          # members of an archive, entries of a folder
    max_archive_bytes: int = 8 * 1024**3      # uncompressed; `for_split` lowers it to the split's need
    archive_bytes_per_item: int = 2 * 1024**2 # budget per split item (its mask and its line) ...
    archive_bytes_base: int = 64 * 1024**2    # ... plus this (manifest, README, odd extras)
    max_compression_ratio: int = 200          # uncompressed / compressed, for archives over ...
    ratio_free_bytes: int = 16 * 1024**2      # ... this many uncompressed bytes
    max_line_bytes: int = 64 * 1024
    max_predictions_bytes: int = 128 * 1024**2  # predictions.jsonl (or .json) as a whole
    max_prediction_lines: int = 1_000_000     # `for_split` lowers it to twice the split's size
    max_mask_bytes: int = 64 * 1024**2        # one mask file
    max_mask_pixels: int = 64 * 1024 * 1024   # one mask's width x height (8k x 8k), checked before decoding
    max_manifest_bytes: int = 1024**2
    max_description_chars: int = 10_000       # manifest "description"
    max_field_chars: int = 500                # every other manifest text field
    max_problems: int = 50                    # problems listed in one report

    def for_split(self, n_items: int) -> "Limits":
        """These limits with the archive cap derived from the split's size: a submission for
        `n_items` images never needs more than a per-item budget each (a 512 px mask is well
        under 1 MiB), so a bomb is refused long before the fixed 8 GiB cap."""
        n = max(0, n_items)
        derived = self.archive_bytes_base + self.archive_bytes_per_item * n
        # a line per item is what a submission needs; twice that (plus slack) leaves room for
        # mistakes to be reported, not for a file of millions of lines to fill the memory
        return replace(self, max_archive_bytes=min(self.max_archive_bytes, derived),
                       max_prediction_lines=min(self.max_prediction_lines, 2 * n + 1000),
                       max_predictions_bytes=min(self.max_predictions_bytes, 2 * n * self.max_line_bytes + 2**20))


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
