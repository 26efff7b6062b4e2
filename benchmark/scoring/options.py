"""Scoring options: one object, declared once with its command-line arguments.

`score`, `submit`, `rescore` (and any verb that scores) add the same arguments with
`add_arguments(parser)` and build the object with `ScoreOptions.from_args(args)`; the object is
then passed whole down to the scorer, never copied field by field.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from submissions.format import DEFAULT_LIMITS, Limits

PROTOCOL_CHOICES = ("strict", "official")
DEFAULT_REPLICATES = 1000


@dataclass(frozen=True)
class ScoreOptions:
    """How to score. `metrics` None: the registry's defaults for the protocol (see
    `benchmark.metrics.registry.select`); `skip` removes scorers by name or metric key."""

    protocol: str = "strict"
    allow_missing: bool = False
    metrics: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    embed_model: Path | None = None
    n_boot: int | None = None   # bootstrap replicates; None: 1000 under strict, none under official
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = False
    workers: int | None = None  # mask-pass processes (default: one per core, at most 4)
    limits: Limits = field(default=DEFAULT_LIMITS, repr=False)

    @property
    def replicates(self) -> int:
        """Bootstrap replicates to draw (the official script reports no intervals: none by default)."""
        if self.n_boot is not None:
            return self.n_boot
        return 0 if self.protocol == "official" else DEFAULT_REPLICATES

    def with_(self, **changes: Any) -> "ScoreOptions":
        return replace(self, **changes)

    def fingerprint(self) -> dict[str, Any]:
        """What of these options can move a stored number (kept with each evaluation)."""
        return {"metrics": list(self.metrics) if self.metrics is not None else None, "skip": sorted(self.skip),
                "embed_model": str(self.embed_model) if self.embed_model else None,
                "n_boot": self.replicates, "seed": self.seed}

    @classmethod
    def from_stored(cls, stored: dict[str, Any], **base: Any) -> "ScoreOptions":
        """Options of a stored evaluation (older rows kept `meteor: false` instead of a skip list)."""
        skip = tuple(stored.get("skip") or ())
        if stored.get("meteor") is False and "meteor" not in skip:
            skip += ("meteor",)
        metrics = stored.get("metrics")
        embed = stored.get("embed_model")
        return cls(metrics=tuple(metrics) if metrics is not None else None, skip=skip,
                   embed_model=Path(embed) if embed else None, n_boot=int(stored.get("n_boot", 1000)),
                   seed=int(stored.get("seed", 0)), **base)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ScoreOptions":
        skip = tuple(n for group in (args.skip or []) for n in _split(group))
        if getattr(args, "no_meteor", False) and "meteor" not in skip:
            skip += ("meteor",)
        metrics = tuple(n for group in args.metrics for n in _split(group)) if args.metrics else None
        return cls(protocol=getattr(args, "protocol", "strict"), allow_missing=getattr(args, "allow_missing", False),
                   metrics=metrics, skip=skip, embed_model=Path(args.embed_model) if args.embed_model else None,
                   n_boot=args.n_boot, seed=args.seed, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                   progress=args.progress or sys.stderr.isatty(), workers=args.workers)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(group: str) -> list[str]:
    return [n.strip() for n in group.split(",") if n.strip()]


def add_arguments(p: argparse.ArgumentParser, *, protocol: bool = True) -> None:
    """The scoring arguments, declared once for every verb that scores."""
    if protocol:
        p.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="strict")
        p.add_argument("--allow-missing", action="store_true",
                       help="strict: score ids without a prediction as an empty mask and explanation")
    p.add_argument("--metrics", action="append", metavar="NAMES",
                   help="only these metrics (scorer names or metric keys, comma-separated; see `mmtt metrics`); "
                        "default: every default metric of the protocol")
    p.add_argument("--skip", action="append", metavar="NAMES", help="leave these metrics out (e.g. --skip meteor)")
    p.add_argument("--no-meteor", action="store_true", help=argparse.SUPPRESS)  # = --skip meteor (older scripts)
    p.add_argument("--embed-model", metavar="DIR",
                   help="local transformers encoder folder for the semantic-similarity metric (off without one)")
    p.add_argument("--n-boot", type=int, default=None,
                   help=f"bootstrap replicates for the 95%% CIs (default {DEFAULT_REPLICATES} under strict, 0 = none "
                        "under official)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=None, help="mask-pass processes (default: one per core, at most 4)")
    p.add_argument("--cache-dir", help="truth cache (default $MMTT_CACHE_DIR or ~/.cache/mmtt-bench)")
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
