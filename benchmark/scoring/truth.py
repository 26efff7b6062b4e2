"""Truth-side work done once per dataset fingerprint and kept on disk, so that scoring the N-th
submission pays only for its own files.

What is kept, per split fingerprint:
- every truth mask, decoded and bit-packed (zlib), with its size and forged-pixel count;
- for each prediction size seen, the *block counts*: how many truth pixels, and how many forged
  truth pixels, a prediction pixel covers once the prediction is resized to the truth size with
  PIL's NEAREST filter (the official rule), as a memory-mapped `BlockTable`. A mask is then
  scored at its own resolution (224 px instead of 512 px) with results identical to resizing it;
- the tokenized references and their n-gram statistics (`TextReference`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmark.cache import default_cache_dir
from benchmark.data.imageio import load_mask
from benchmark.data.split import Split
from benchmark.metrics.mask import TruthBlocks, covers, nearest_index
from benchmark.scoring.blocktable import BlockTable, BlockTableWriter

CACHE_VERSION = 3
STANDARD_PRED_HW = (224, 224)  # the official harness's mask size: its blocks are built with the masks


def _pack_chunk(jobs: list[tuple[str, str]], pred_hw: tuple[int, int]) -> list[tuple]:
    """Worker: (shape, forged-pixel count, packed mask, blocks) for each (id, mask file)."""
    out = []
    for image_id, path in jobs:
        mask = load_mask(Path(path), image_id)
        out.append((mask.shape, int(np.count_nonzero(mask)),
                    zlib.compress(np.packbits(mask).tobytes(), 1), TruthBlocks.of(mask, pred_hw)))
    return out


def _blocks_name(pred_hw: tuple[int, int]) -> str:
    return f"blocks-{pred_hw[0]}x{pred_hw[1]}"


def resize_nearest(grey: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`Image.resize(hw[::-1], NEAREST)` on an (h, w) array, by index maps (same result)."""
    return grey[nearest_index(grey.shape[0], hw[0])[:, None], nearest_index(grey.shape[1], hw[1])[None, :]]


def fingerprint(split: Split, cache_root: Path) -> str:
    """`split.fingerprint`, remembered under a key of the split file's bytes and every truth mask
    file's (path, size, mtime, ctime, inode): re-scoring does not re-read and re-hash the truth,
    yet any change to a truth file (its ctime moves even when its mtime is forged back) or to the
    split file computes it afresh. Also stores it on `split`."""
    if "fingerprint" in split.__dict__:
        return split.fingerprint
    h = hashlib.sha256(b"mmtt-split-stat-v1\0")
    h.update(hashlib.sha256(split.json_path.read_bytes()).digest())
    paths = split.mask_paths()
    for image_id in split.ids:
        path = paths[image_id]
        try:
            st = os.stat(path)
        except OSError:
            return split.fingerprint  # let the full hash report the missing file
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode("utf-8", "surrogateescape"))
    memo = cache_root / "fingerprints" / f"{h.hexdigest()}.txt"
    try:
        known = memo.read_text().strip()
    except OSError:
        known = ""
    if known.startswith("sha256:"):
        split.__dict__["fingerprint"] = known  # functools.cached_property's storage
        return known
    value = split.fingerprint
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:
        pass  # a memo that cannot be written only costs speed
    return value


class TruthCache:
    """The decoded truth of one split, loaded from (or built into) the cache folder."""

    def __init__(self, split: Split, cache_dir: Path | None = None, *, workers: int | None = None,
                 progress: bool = False) -> None:
        self.split = split
        self.ids = split.ids
        self.index = {image_id: i for i, image_id in enumerate(self.ids)}
        self.workers = workers or min(8, os.cpu_count() or 1)
        root = cache_dir or default_cache_dir()
        key = fingerprint(split, root).split(":")[-1][:32]
        self.dir = root / f"truth-{key}-v{CACHE_VERSION}"
        self._blocks: dict[tuple[int, int], BlockTable] = {}
        self._absent: set[tuple[int, int]] = set()  # sizes with no table on disk (not built)
        self.progress = progress
        self._load_or_build_masks()

    # ----------------------------------------------------------------- masks
    def _load_or_build_masks(self) -> None:
        meta = self._read("meta.pkl")
        if meta is not None:
            self.shapes, self.positives = meta["shapes"], meta["positives"]
            self._packed = None  # the packed masks load on first use (a re-score needs only blocks)
            return
        # one pass over the truth files, on processes (decoding and block sums hold the GIL):
        # pack each mask and, while it is decoded, its blocks for the usual prediction size
        paths = self.split.mask_paths()
        jobs = [(image_id, paths[image_id]) for image_id in self.ids]
        chunks = [jobs[i:i + 256] for i in range(0, len(jobs), 256)]
        shapes, positives, packed = [], [], []
        try:
            table: BlockTableWriter | None = BlockTableWriter(self.dir / _blocks_name(STANDARD_PRED_HW),
                                                              self.ids, STANDARD_PRED_HW)
        except OSError:   # a cache that cannot be written only costs speed: built again when needed
            table = None
        try:
            with ProcessPoolExecutor(max(1, min(self.workers, os.cpu_count() or 1))) as pool:
                results = pool.map(_pack_chunk, chunks, [STANDARD_PRED_HW] * len(chunks))
                bar = self._bar(len(jobs), "truth masks (once per dataset)")
                for part in results:
                    for shape, count, bits, blocks in part:
                        shapes.append(shape)
                        positives.append(count)
                        packed.append(bits)
                        if table is not None:
                            try:
                                table.add(blocks)
                            except OSError:   # a cache that cannot be written only costs speed
                                table.abort()
                                table = None
                    bar(len(part))
        except BaseException:
            if table is not None:
                table.abort()
            raise
        self.shapes = np.array(shapes, dtype=np.int64).reshape(-1, 2)
        self.positives = np.array(positives, dtype=np.int64)
        self._packed = packed
        self._write("masks.pkl", {"ids": self.ids, "packed": self._packed})
        if table is not None:
            try:
                self._blocks[STANDARD_PRED_HW] = table.close()
            except OSError:
                pass
        self._write("meta.pkl", {"ids": self.ids, "shapes": self.shapes, "positives": self.positives})

    def mask(self, image_id: str) -> np.ndarray:
        """The truth mask of `image_id` as a bool (H, W) array."""
        h, w = self.shapes[self.index[image_id]]
        return np.unpackbits(self._mask_bits(image_id), count=int(h * w)).reshape(h, w).view(bool)

    def _mask_bits(self, image_id: str) -> np.ndarray:
        """The packed bits of `image_id`'s truth mask (`np.packbits` of the flat mask)."""
        if self._packed is None:
            data = self._read("masks.pkl")
            if data is None:  # the packed masks went missing: rebuild everything
                (self.dir / "meta.pkl").unlink(missing_ok=True)
                self._load_or_build_masks()
            else:
                self._packed = data["packed"]
        return np.frombuffer(zlib.decompress(self._packed[self.index[image_id]]), dtype=np.uint8)

    # ----------------------------------------------------------------- blocks
    def blocks(self, image_id: str, pred_hw: tuple[int, int], *, build: bool = True) -> TruthBlocks:
        """The truth of `image_id` seen from a prediction of size `pred_hw` (see `TruthBlocks`).

        From the cached table of that size (loaded, or built for every image when `build`);
        without a table and with `build=False`, computed for this image alone (at the truth's own
        size, straight from its packed bits).
        """
        pred_hw = (int(pred_hw[0]), int(pred_hw[1]))
        i = self.index[image_id]
        truth_hw = (int(self.shapes[i][0]), int(self.shapes[i][1]))
        table = self._blocks.get(pred_hw)
        if table is None and (build or pred_hw not in self._absent):
            table = self._load_or_build_blocks(pred_hw, build=build)
        if table is None:
            self._absent.add(pred_hw)
            if pred_hw == truth_hw:
                return TruthBlocks.same_size(self._mask_bits(image_id), truth_hw, int(self.positives[i]))
            return TruthBlocks.of(self.mask(image_id), pred_hw)
        rows, cols = covers(pred_hw, truth_hw)
        return table.get(i, rows, cols, truth_hw, int(self.positives[i]))

    def _load_or_build_blocks(self, pred_hw: tuple[int, int], *, build: bool = True) -> BlockTable | None:
        table = BlockTable.load(self.dir / _blocks_name(pred_hw), self.ids, pred_hw)
        if table is None and not build:
            return None
        if table is None:
            table = self._build_blocks(pred_hw)
        self._blocks[pred_hw] = table
        return table

    def _build_blocks(self, pred_hw: tuple[int, int]) -> BlockTable:
        """The table of that size, built into the cache, or in memory when the cache cannot be written."""
        try:
            return self._fill(BlockTableWriter(self.dir / _blocks_name(pred_hw), self.ids, pred_hw))
        except OSError:   # a cache that cannot be written only costs speed
            return self._fill(BlockTableWriter(None, self.ids, pred_hw))

    def _fill(self, writer: BlockTableWriter) -> BlockTable:
        hw = writer.pred_hw
        try:
            self._map(lambda image_id: TruthBlocks.of(self.mask(image_id), hw),
                      f"truth blocks for {hw[1]}x{hw[0]} masks (once)", writer.add)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    # ----------------------------------------------------------------- text
    def text_reference(self):
        """The references of every record, tokenized with their n-gram statistics (cached)."""
        from benchmark.metrics.text import TextReference

        data = self._read("text.pkl")
        if data is not None:
            return data["reference"]
        reference = TextReference.build({r.image_id: [r.caption] for r in self.split.records})
        self._write("text.pkl", {"ids": self.ids, "reference": reference})
        return reference

    def regions(self) -> np.ndarray:
        """(N, 21) bool: the regions each truth explanation names (for the clue scores; cached)."""
        from benchmark.metrics.clue import region_matrix

        data = self._read("regions.pkl")
        if data is not None:
            return data["regions"]
        matrix = region_matrix([r.caption for r in self.split.records])
        self._write("regions.pkl", {"ids": self.ids, "regions": matrix})
        return matrix

    def cached(self, name: str, make):
        """A truth-side value kept under `name` beside the masks (e.g. a metric's truth
        embeddings), computed by `make()` the first time for this split."""
        data = self._read(name)
        if data is not None:
            return data["value"]
        value = make()
        self._write(name, {"ids": self.ids, "value": value})
        return value

    # ----------------------------------------------------------------- io
    def _bar(self, total: int, desc: str):
        """An `advance(k)` callable drawing a progress bar when asked for (no-op otherwise)."""
        if not self.progress:
            return lambda k: None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="img", leave=False, mininterval=0.5)

        def advance(k: int) -> None:
            bar.update(k)
            if bar.n >= total:
                bar.close()

        return advance

    def _map(self, fn, desc: str, take) -> None:
        """`take(fn(image_id))` for every id, in order (`fn` on threads)."""
        bar = self._bar(len(self.ids), desc)
        with ThreadPoolExecutor(self.workers) as pool:
            for result in pool.map(fn, self.ids):
                take(result)
                bar(1)

    def _read(self, name: str) -> dict | None:
        """A cached part, if present and made for exactly these ids (in this order)."""
        path = self.dir / name
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:
                data = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None  # a damaged cache file is rebuilt, never trusted
        return data if data.get("ids") == self.ids else None

    def _write(self, name: str, obj: object) -> None:
        """Write atomically; a cache that cannot be written only costs speed, never correctness."""
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.dir / name)
        except OSError:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
