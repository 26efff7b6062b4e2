"""Where mmtt-bench keeps what it can rebuild: truth caches, compiled helpers."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$MMTT_CACHE_DIR`, else `~/.cache/mmtt-bench`."""
    env = os.environ.get("MMTT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mmtt-bench"
