"""The two scoring protocols: which ids are scored, which submission problems are fatal.

- `official` reproduces the official `evaluate_metrics.py`: only ids present in both truth and
  predictions are scored; a missing or unreadable mask is skipped (and counted); masks of any
  mode and size are accepted; CIDEr's IDF comes from the scored ids' references; numbers are
  rounded to 6 decimals. Use it to compare with the paper.
- `strict` (leaderboard default): the whole split is scored. Unknown, duplicate or missing ids and
  any malformed file reject the submission with the full list of problems — unless
  `--allow-missing`, which scores a missing item as an empty mask and an empty explanation.
  Corpus statistics (CIDEr's IDF) therefore always come from the whole split.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("strict", "official")

# Problems that make a submission unusable under any protocol: the official script itself would
# crash on them (bad JSON, wrong types, missing captions) or silently misalign its tokenizer
# (a newline inside a caption), or they point outside the submission.
ALWAYS_FATAL = frozenset({"json", "utf8", "type", "line_long", "caption_control", "caption_missing",
                          "mask_path", "no_task", "task_missing"})


@dataclass(frozen=True)
class Protocol:
    name: str
    allow_missing: bool = False

    @property
    def strict(self) -> bool:
        return self.name == "strict"

    def fatal(self, code: str) -> bool:
        """Whether a problem with this code rejects the submission."""
        if code in ALWAYS_FATAL:
            return True
        if code == "missing":
            return self.strict and not self.allow_missing
        return self.strict

    @property
    def description(self) -> str:
        if self.strict:
            missing = ("missing items scored as an empty mask and an empty explanation"
                       if self.allow_missing else "a submission must cover every id")
            return f"strict: the whole split is scored ({missing}); IDF from the whole split's references"
        return ("official: ids in both truth and predictions are scored; missing or unreadable masks are "
                "skipped; IDF from the scored ids' references; rounded to 6 decimals (evaluate_metrics.py)")


def get_protocol(name: str, allow_missing: bool = False) -> Protocol:
    if name not in PROTOCOLS:
        from benchmark.errors import BenchmarkError

        raise BenchmarkError(f"unknown protocol '{name}' (choose from {', '.join(PROTOCOLS)})")
    return Protocol(name, allow_missing)
