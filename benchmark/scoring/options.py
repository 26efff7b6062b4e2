"""Scoring options: one object, declared once with its command-line arguments.

`mmtt score`, `submit`, `serve`, `worker` and `rescore` all take (some of) these options; each
verb asks for the groups it needs and gets a `ScoreOptions` back, so no field is copied by hand
between request types. Kept light (no numpy, no metrics): the `mmtt` parser imports it.

Groups:
- `submission` — what a submitter chooses: `--protocol`, `--allow-missing`;
- `method` — how the numbers are computed, stamped with every stored score so a re-score repeats
  them: `--no-meteor`, `--n-boot`, `--seed`;
- `local` — this machine only, never stored: `--cache-dir`, `--progress`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from submissions.format import DEFAULT_LIMITS, Limits

PROTOCOLS = ("strict", "official")
GROUPS = ("submission", "method", "local")


@dataclass
class ScoreOptions:
    protocol: str = "strict"
    allow_missing: bool = False
    meteor: bool = True
    n_boot: int = 1000
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = False
    workers: int | None = None  # mask-pass processes (default: up to 4, one per core)
    limits: Limits = DEFAULT_LIMITS

    # ------------------------------------------------------------------ stored stamp
    def method_json(self) -> str:
        """The `method` options as stored with a submission (its `options` column)."""
        return json.dumps({"meteor": self.meteor, "n_boot": self.n_boot, "seed": self.seed}, sort_keys=True)

    def for_stored(self, protocol: str, allow_missing: bool, method_json: str | None) -> "ScoreOptions":
        """These (local) options with a stored submission's protocol and method options."""
        stored = json.loads(method_json or "{}")
        return replace(self, protocol=protocol, allow_missing=allow_missing,
                       meteor=bool(stored.get("meteor", True)), n_boot=int(stored.get("n_boot", 1000)),
                       seed=int(stored.get("seed", 0)))

    # ------------------------------------------------------------------ command line
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, groups: Sequence[str] = GROUPS) -> None:
        """Declare the options of `groups` on `parser` (the one place they are declared)."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown option groups {sorted(unknown)}")
        if "submission" in groups:
            parser.add_argument("--protocol", choices=PROTOCOLS, default="strict")
            parser.add_argument("--allow-missing", action="store_true",
                                help="strict: score ids without a prediction as an empty mask and explanation")
        if "method" in groups:
            parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (the slowest metric)")
            parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the 95%% CIs")
            parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        if "local" in groups:
            parser.add_argument("--cache-dir", help="truth cache (default $MMTT_CACHE_DIR or ~/.cache/mmtt-bench)")
            parser.add_argument("--progress", action="store_true",
                                help="show progress even when stderr is not a terminal")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ScoreOptions":
        """The options parsed by `add_arguments` (defaults for groups a verb does not declare)."""
        get: Any = lambda name, default: getattr(args, name, default)  # noqa: E731
        cache_dir = get("cache_dir", None)
        return cls(protocol=get("protocol", "strict"), allow_missing=bool(get("allow_missing", False)),
                   meteor=not get("no_meteor", False), n_boot=int(get("n_boot", 1000)), seed=int(get("seed", 0)),
                   cache_dir=Path(cache_dir) if cache_dir else None,
                   progress=bool(get("progress", False)) or sys.stderr.isatty())
