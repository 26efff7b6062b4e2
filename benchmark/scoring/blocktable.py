"""Every image's truth blocks for one prediction size, as flat arrays on disk.

A mask pass looks up one image's `TruthBlocks` per predicted mask. Kept as raw arrays and
memory-mapped, that lookup is slicing: no per-image decompression or unpickling, and each worker
of the pass reads only the pages of its own images (shared, read-only, with the other workers).

Image i's entirely forged blocks are `full_words[full_offsets[i]:full_offsets[i + 1]]` starting at
word `full_start[i]` of its packed grid; its partial blocks are
`partial_index/partial_forged[partial_offsets[i]:partial_offsets[i + 1]]`.
"""

from __future__ import annotations

import mmap
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.metrics.mask import TruthBlocks

FORMAT = 1
STREAMED = {"full_words": np.uint64, "partial_index": np.uint32, "partial_forged": np.uint32}
PER_IMAGE = {"full_start": np.int64, "full_offsets": np.int64, "partial_offsets": np.int64}


class BlockTable:
    """The blocks of every image of a split for one prediction size (read-only)."""

    def __init__(self, pred_hw: tuple[int, int], arrays: dict[str, np.ndarray], maps: Sequence[mmap.mmap] = ()) -> None:
        self.pred_hw = pred_hw
        self._maps = list(maps)   # kept open while the arrays that view them live
        self.full_words = arrays["full_words"]
        self.partial_index = arrays["partial_index"]
        self.partial_forged = arrays["partial_forged"]
        # plain lists: indexing them per image is cheaper than indexing numpy arrays
        self._start = arrays["full_start"].tolist()
        self._full = arrays["full_offsets"].tolist()
        self._partial = arrays["partial_offsets"].tolist()

    def get(self, i: int, rows: np.ndarray, cols: np.ndarray, truth_hw: tuple[int, int], positives: int) -> TruthBlocks:
        """Image i's blocks (views into the table)."""
        a, b = self._full[i], self._full[i + 1]
        c, d = self._partial[i], self._partial[i + 1]
        return TruthBlocks(rows, cols, self._start[i], self.full_words[a:b], self.partial_index[c:d],
                           self.partial_forged[c:d], positives, truth_hw)

    @classmethod
    def load(cls, folder: Path, ids: Sequence[str], pred_hw: tuple[int, int]) -> BlockTable | None:
        """The table kept in `folder`, if complete and made for exactly these ids; else None
        (a damaged or foreign table is rebuilt, never trusted)."""
        try:
            with open(folder / "meta.pkl", "rb") as fh:
                meta = pickle.load(fh)
            if meta.get("format") != FORMAT or meta.get("ids") != list(ids) or tuple(meta.get("pred_hw", ())) != pred_hw:
                return None
            arrays: dict[str, np.ndarray] = {}
            maps: list[mmap.mmap] = []
            for name, dtype in PER_IMAGE.items():
                arrays[name] = np.fromfile(folder / f"{name}.bin", dtype=dtype)
            for name, dtype in STREAMED.items():
                arrays[name], mapped = _map(folder / f"{name}.bin", np.dtype(dtype), meta["lengths"][name])
                maps.extend(mapped)
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, pickle.UnpicklingError):
            return None
        n = len(ids)
        if len(arrays["full_start"]) != n:
            return None
        for offsets, data in (("full_offsets", "full_words"), ("partial_offsets", "partial_index")):
            o = arrays[offsets]
            if len(o) != n + 1 or o[0] != 0 or o[-1] != len(arrays[data]) or (np.diff(o) < 0).any():
                return None
        if len(arrays["partial_forged"]) != len(arrays["partial_index"]):
            return None
        return cls(pred_hw, arrays, maps)


def _map(path: Path, dtype: np.dtype, length: int) -> tuple[np.ndarray, list[mmap.mmap]]:
    if os.path.getsize(path) != length * dtype.itemsize:
        raise ValueError(f"{path}: wrong size")
    if length == 0:
        return np.zeros(0, dtype), []
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype=dtype), [mapped]


class BlockTableWriter:
    """Takes each image's `TruthBlocks`, in split order, into a new table. With a `folder` they are
    streamed to disk and `close()` publishes the folder in one rename (a reader sees a whole table
    or none); without one (a cache that cannot be written) they are kept in memory."""

    def __init__(self, folder: Path | None, ids: Sequence[str], pred_hw: tuple[int, int]) -> None:
        self.folder, self.ids, self.pred_hw = folder, list(ids), pred_hw
        self._tmp: Path | None = None
        self._files: dict = {}
        self._kept: dict[str, list[np.ndarray]] = {name: [] for name in STREAMED}
        if folder is not None:
            folder.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            self._files = {name: open(self._tmp / f"{name}.bin", "wb") for name in STREAMED}
        self._lengths = dict.fromkeys(STREAMED, 0)
        self._start: list[int] = []
        self._full = [0]
        self._partial = [0]

    def add(self, blocks: TruthBlocks) -> None:
        parts = {"full_words": blocks.full_words, "partial_index": blocks.partial_index,
                 "partial_forged": blocks.partial_forged}
        for name, values in parts.items():
            values = np.ascontiguousarray(values, dtype=STREAMED[name])
            if self._files:
                self._files[name].write(values.tobytes())
            else:
                self._kept[name].append(values)
            self._lengths[name] += len(values)
        self._start.append(blocks.full_start)
        self._full.append(self._lengths["full_words"])
        self._partial.append(self._lengths["partial_index"])

    def close(self) -> BlockTable:
        """The table: published and mapped (or, when another process published the same one
        first, that one), or the one kept in memory."""
        if len(self._start) != len(self.ids):
            self.abort()
            raise ValueError(f"block table: {len(self._start)} images taken for {len(self.ids)} ids")
        per_image = {name: np.asarray(values, dtype=PER_IMAGE[name]) for name, values in
                     (("full_start", self._start), ("full_offsets", self._full), ("partial_offsets", self._partial))}
        if self.folder is None or self._tmp is None:
            kept = {name: np.concatenate(parts) if parts else np.zeros(0, STREAMED[name])
                    for name, parts in self._kept.items()}
            return BlockTable(self.pred_hw, {**kept, **per_image})
        try:
            for fh in self._files.values():
                fh.close()
            for name, values in per_image.items():
                values.tofile(self._tmp / f"{name}.bin")
            with open(self._tmp / "meta.pkl", "wb") as fh:
                pickle.dump({"format": FORMAT, "ids": self.ids, "pred_hw": self.pred_hw, "lengths": self._lengths},
                            fh, protocol=pickle.HIGHEST_PROTOCOL)
            if self.folder.exists() and BlockTable.load(self.folder, self.ids, self.pred_hw) is None:
                shutil.rmtree(self.folder, ignore_errors=True)   # a damaged table: replaced
            try:
                os.rename(self._tmp, self.folder)
            except OSError:
                pass   # the same table, published by another process meanwhile
            table = BlockTable.load(self.folder, self.ids, self.pred_hw)
            if table is None:
                raise OSError(f"{self.folder}: the block table could not be read back")
            return table
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was written and not published."""
        for fh in self._files.values():
            fh.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
