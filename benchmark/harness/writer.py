"""Stream a run's predictions to disk as they are made, so that a killed run resumes exactly.

While a run is in progress, its output folder holds:
- `masks/<img_path with .png>`: each mask, written to a temporary name and renamed into place;
- `.partial/rank<r>.jsonl`: an append-only journal per rank, one line per finished batch
  (`{"batch": j, "items": [{"i", "image_id", "caption"?} | {"i", "image_id", "error"}]}`),
  written and flushed only after all of that batch's masks are in place;
- `.partial/config.json`: what the run is (model, options, split file hash, batch size, ...).

A SIGKILL can tear at most the last journal line; on resume it is cut off and that batch is
recomputed (its masks are simply rewritten). When every batch is journaled, `finalize` writes
`predictions.jsonl` in split order, `manifest.json` and the run log `run.json`, then removes
`.partial/`. Nothing in these files depends on timing, so interrupted and uninterrupted runs give
identical bytes (only `run.json` records timings).
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.split import Split
from benchmark.errors import BenchmarkError
from submissions.format import MANIFEST, MASKS_DIR, PREDICTIONS

PARTIAL = ".partial"
CONFIG = "config.json"
RUN_LOG = "run.json"
OWNED = (PREDICTIONS, MANIFEST, RUN_LOG, MASKS_DIR, PARTIAL)  # what --overwrite may remove


def journal_path(out: Path, rank: int) -> Path:
    return Path(out) / PARTIAL / f"rank{rank:03d}.jsonl"


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete entries of a journal and the byte length they span.

    A line counts only when it ends with a newline and parses: a torn tail (the run was killed
    while appending) is ignored here and cut off by `repair_journal`.
    """
    entries: list[dict[str, Any]] = []
    good = 0
    if not path.is_file():
        return entries, good
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if not isinstance(entry, dict) or "batch" not in entry or "items" not in entry:
                break
            entries.append(entry)
            good += len(raw)
    return entries, good


def repair_journal(path: Path) -> int:
    """Cut a torn last line off the journal; returns how many bytes were dropped."""
    if not path.is_file():
        return 0
    _, good = read_journal(path)
    size = path.stat().st_size
    if size > good:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return size - good


def journaled_items(out: Path) -> dict[int, dict[str, Any]]:
    """Every journaled item of every rank's journal, by split index.

    The same item journaled twice must say the same thing; a conflict means two runs with
    different settings wrote into one folder, and is an error rather than a silent pick.
    """
    items: dict[int, dict[str, Any]] = {}
    for path in sorted((Path(out) / PARTIAL).glob("rank*.jsonl")):
        entries, _ = read_journal(path)
        for entry in entries:
            for item in entry["items"]:
                index = int(item["i"])
                if index in items and items[index] != item:
                    raise BenchmarkError(f"{path}: image_id {item.get('image_id')!r} was journaled twice with "
                                         "different results; remove the output folder (or pass --overwrite) and re-run")
                items[index] = item
    return items


def journaled_batches(out: Path) -> set[int]:
    done: set[int] = set()
    for path in sorted((Path(out) / PARTIAL).glob("rank*.jsonl")):
        entries, _ = read_journal(path)
        done.update(int(e["batch"]) for e in entries)
    return done


def save_mask(path: Path, mask: np.ndarray) -> None:
    """An 8-bit grey PNG, written under a temporary name and renamed (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(tmp, format="PNG", compress_level=3)
    os.replace(tmp, path)


class StreamWriter:
    """Writes each batch's masks on a small thread pool, then journals the batch.

    Mask encoding (zlib) releases the GIL, so it overlaps the model's next batch; at most
    `max_pending` batches are in flight, which bounds memory when the disk is the bottleneck.
    """

    def __init__(self, out: Path, rank: int, *, threads: int = 4, max_pending: int = 8) -> None:
        self.out = Path(out)
        self.masks_dir = self.out / MASKS_DIR
        self.path = journal_path(self.out, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mmtt-writer")
        self._pending: deque[Future] = deque()
        self._max_pending = max_pending

    def submit(self, batch_index: int, items: list[dict[str, Any]], masks: dict[str, np.ndarray]) -> None:
        """Queue a finished batch: `masks` maps a relative mask path to its uint8 array."""
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, batch_index, items, masks))

    def _write(self, batch_index: int, items: list[dict[str, Any]], masks: dict[str, np.ndarray]) -> None:
        for rel, mask in masks.items():
            save_mask(self.masks_dir / rel, mask)
        line = json.dumps({"batch": batch_index, "items": items}, ensure_ascii=False) + "\n"
        with self._lock:
            self._fh.write(line.encode("utf-8"))
            self._fh.flush()

    def close(self) -> None:
        """Wait for every queued batch (re-raising a write error) and close the journal."""
        if self._fh.closed:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def finalize(out: Path, split: Split, *, manifest: dict[str, Any], log: dict[str, Any], with_masks: bool,
             with_captions: bool) -> dict[str, Any]:
    """Merge the journals into the submission; returns the run log written to `run.json`.

    Every item of the split must be journaled exactly once (as a prediction or a recorded skip);
    anything else is an error naming the missing ids — a submission is never silently partial.
    """
    out = Path(out)
    items = journaled_items(out)
    missing = [rec.image_id for i, rec in enumerate(split.records) if i not in items]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise BenchmarkError(f"{out}: the run is incomplete: {len(missing)} item(s) have no result ({shown}); "
                             "re-run the same command to finish it")
    lines: list[str] = []
    skipped: list[dict[str, str]] = []
    absent: list[str] = []
    for index, rec in enumerate(split.records):
        item = items[index]
        if item.get("image_id") != rec.image_id:
            raise BenchmarkError(f"{out / PARTIAL}: item {index} is {item.get('image_id')!r} but the split has "
                                 f"{rec.image_id!r}: the split changed since the run started; pass --overwrite")
        if "error" in item:
            skipped.append({"image_id": rec.image_id, "error": item["error"]})
            continue
        row: dict[str, Any] = {"image_id": rec.image_id, "img_path": rec.img_path}
        if with_captions:
            row["caption"] = item["caption"]
        if with_masks and not (out / MASKS_DIR / rec.pred_mask_path).is_file():
            absent.append(rec.image_id)
        lines.append(json.dumps(row, ensure_ascii=False))
    if absent:
        raise BenchmarkError(f"{out / MASKS_DIR}: {len(absent)} mask file(s) are missing (first: image_id "
                             f"{absent[0]!r}); remove the output folder (or pass --overwrite) and re-run")
    write_atomic(out / PREDICTIONS, "".join(line + "\n" for line in lines))
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    log = dict(log, n_items=len(split), n_predicted=len(lines), n_skipped=len(skipped), skipped=skipped,
               complete=True)
    write_atomic(out / RUN_LOG, json.dumps(log, indent=2, ensure_ascii=False) + "\n")
    partial = out / PARTIAL
    for path in sorted(partial.iterdir()):
        path.unlink()
    partial.rmdir()
    return log
