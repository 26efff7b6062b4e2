"""Named checkpoints in `submit` and `rescore`, where fault tests stop or break a real process.

Off unless the environment asks (the cost is one dictionary lookup):
- `MMTT_STORE_PAUSE_AT=<step>[:<n>]`: at that step (its n-th time, default the first), touch `MMTT_STORE_PAUSE_FILE` (if set) and sleep
  `MMTT_STORE_PAUSE_SECONDS` (default 300) — a test then kills the process with SIGKILL;
- `MMTT_STORE_FAIL_AT=<step>`: raise `InjectedFault` at that step.
Steps: `stored` (files kept), `reserved` (submission row written), `scored` (scorer done),
`commit` (inside the final write transaction, everything written, not yet committed),
`rescore-commit` (the same for one re-scored entry).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STEPS = ("stored", "reserved", "scored", "commit", "rescore-commit")
_seen: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """Raised where `MMTT_STORE_FAIL_AT` asks."""


def checkpoint(step: str) -> None:
    if os.environ.get("MMTT_STORE_FAIL_AT") == step:
        raise InjectedFault(f"injected failure at step '{step}'")
    pause = os.environ.get("MMTT_STORE_PAUSE_AT")
    if not pause:
        return
    name, _, nth = pause.partition(":")
    if name != step:
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] == int(nth or 1):
        mark = os.environ.get("MMTT_STORE_PAUSE_FILE")
        if mark:
            Path(mark).write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("MMTT_STORE_PAUSE_SECONDS", "300")))
