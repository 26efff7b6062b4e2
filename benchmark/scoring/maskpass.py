"""One pass over a submission's masks: read each file once, check it, count it against the truth.

Per image the prediction is compared at its own resolution through the truth's cached block
counts (see `truth.py`), which gives exactly what resizing it to the truth size with NEAREST and
thresholding at > 127 would give. The file's bytes are hashed in the same read.

The pass runs in chunks on forked worker processes where the platform forks (decoding and small
numpy reductions hold the GIL, so threads would not scale), on threads elsewhere; each chunk
returns compact arrays, not one object per image.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.data.imageio import decode_grey_png, png_size
from benchmark.metrics.mask import auc_from_histograms, binary_auc, count_mask
from benchmark.scoring.truth import TruthCache
from submissions.format import DEFAULT_LIMITS
from submissions.reader import Problem
from submissions.safeio import UnsafeFileError, read_file

# A mask bigger than 8k x 8k is refused before it is decoded. PIL itself only *warns* between
# MAX_IMAGE_PIXELS and twice that, so the size read from the header is checked here (`_open_mask`).
MAX_MASK_PIXELS = DEFAULT_LIMITS.max_mask_pixels
MAX_MASK_BYTES = DEFAULT_LIMITS.max_mask_bytes
Image.MAX_IMAGE_PIXELS = MAX_MASK_PIXELS
CHUNK = 256  # images per task: per-task overhead would otherwise rival the work itself


@dataclass
class MaskPass:
    """Per-image counts (tp, fp, fn, tn), per-image AUC, pooled grey histograms, what failed."""

    counts: np.ndarray          # (N, 4) int64
    image_auc: np.ndarray       # (N,) float64, NaN where undefined or not scored
    pos_hist: np.ndarray        # (256,) int64, pooled over scored images
    neg_hist: np.ndarray
    scored: np.ndarray          # (N,) bool: False where the mask was skipped (official protocol)
    digests: list[bytes]        # sha256 of each mask file (b"" for none)
    sizes: dict[str, int]       # "HxW" -> number of masks of that size
    problems: list[Problem]


@dataclass
class _Job:
    truth: TruthCache
    ids: Sequence[str]
    files: Sequence[str | Path | None]
    labels: Sequence[str] | None
    strict: bool


_JOB: _Job | None = None  # what forked workers read (inherited, never pickled)


def _aspect_ok(hw: tuple[int, int], truth_hw: tuple[int, int]) -> bool:
    (h, w), (H, W) = hw, truth_hw
    return abs(h * W - w * H) <= max(H, W)  # equal up to the rounding of a resize


def _one(job: _Job, i: int):
    """Problem, or (MaskCounts | None for an allowed missing item, digest, size) for image i."""
    image_id, path = job.ids[i], job.files[i]
    label = job.labels[i] if job.labels else str(path)
    if path is None:  # an allowed missing item: an empty prediction
        return None, b"", None
    try:
        data = read_file(path, label=label, max_bytes=MAX_MASK_BYTES)
    except UnsafeFileError as exc:
        if exc.code == "missing":
            return Problem("mask_missing", f"image_id {image_id!r}: mask file not found: {label}")
        return Problem("mask_unreadable", f"image_id {image_id!r}: mask {exc}")
    img = _open_mask(data)
    if isinstance(img, str):
        return Problem("mask_unreadable", f"image_id {image_id!r}: mask {label} {img}")
    if isinstance(img, np.ndarray):  # an 8-bit greyscale PNG
        grey = img
    else:
        fmt = img.format
        if job.strict and (fmt != "PNG" or img.mode != "L"):
            what = f"{fmt or 'unknown'} image in mode {img.mode}"
            return Problem("mask_mode", f"image_id {image_id!r}: mask {label} is a {what}; "
                                        "expected an 8-bit greyscale PNG (mode L)")
        grey = np.asarray(img if img.mode == "L" else img.convert("L"))
    hw = grey.shape
    k = job.truth.index[image_id]
    H, W = (int(x) for x in job.truth.shapes[k])
    if job.strict and not _aspect_ok(hw, (H, W)):
        return Problem("mask_aspect", f"image_id {image_id!r}: mask {label} is {hw[1]}x{hw[0]}, "
                                      f"not the aspect ratio of the truth ({W}x{H})")
    counts = count_mask(grey, job.truth.blocks(image_id, hw, build=False))
    return counts, hashlib.sha256(data).digest(), f"{hw[0]}x{hw[1]}"


USUAL_SIZE_SAMPLE = 33


def _usual_size(files: Sequence[str | Path | None]) -> tuple[int, int] | None:
    """The (h, w) of most masks, from the headers of a sample spread over the whole list; None
    when no size is a clear majority (then no table is built for all images: a size that only
    some masks have is cheaper per image). A bad file here is left to its worker to report."""
    present = [f for f in files if f is not None]
    step = max(1, len(present) // USUAL_SIZE_SAMPLE)
    seen: dict[tuple[int, int], int] = {}
    for path in present[::step][:USUAL_SIZE_SAMPLE]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(read_file(path, label=os.path.basename(path), max_bytes=MAX_MASK_BYTES))) as im:
                    if im.size[0] * im.size[1] <= MAX_MASK_PIXELS:
                        hw = (im.size[1], im.size[0])
                        seen[hw] = seen.get(hw, 0) + 1
        except (OSError, UnidentifiedImageError, ValueError, UnsafeFileError, Image.DecompressionBombError,
                Image.DecompressionBombWarning):
            continue
    if not seen:
        return None
    hw, count = max(seen.items(), key=lambda kv: kv[1])
    return hw if 2 * count > sum(seen.values()) else None


def _open_mask(data: bytes) -> np.ndarray | Image.Image | str:
    """The decoded mask (an 8-bit greyscale PNG's pixels, else a PIL image), or why not: checked
    against `MAX_MASK_PIXELS` from its header, before any pixel is decoded. The reason never
    quotes PIL's text (which names a BytesIO object).

    A PNG's size is read from its IHDR here; libspng decodes it when it is 8-bit grey (the usual
    mask, see `decode_grey_png`), else PIL is asked for that format alone and cannot warn; any
    other file is identified by PIL, its bomb warning turned into a refusal."""
    try:
        if (size := png_size(data)) is not None:
            width, height = size
            if width * height > MAX_MASK_PIXELS:
                return f"is {width}x{height} pixels, over the limit of {MAX_MASK_PIXELS} pixels; not decoded"
            grey = decode_grey_png(data)
            if grey is not None:
                return grey
            img = Image.open(io.BytesIO(data), formats=("PNG",))
        else:
            with warnings.catch_warnings():   # PIL only warns up to twice its limit: refuse instead
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > MAX_MASK_PIXELS:
            return f"is {width}x{height} pixels, over the limit of {MAX_MASK_PIXELS} pixels; not decoded"
        img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"is over the limit of {MAX_MASK_PIXELS} pixels; not decoded"
    except UnidentifiedImageError:
        return "is not a readable image (unknown format)"
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        return f"is not a readable image ({type(exc).__name__}: {str(exc)[:120]})"


def _chunk(start: int, stop: int, job: _Job | None = None):
    """Images start..stop-1 as compact arrays (what crosses the process boundary)."""
    job = job or _JOB
    assert job is not None
    n = stop - start
    tp_pred = np.zeros((n, 2), np.int64)
    grey_auc = np.full(n, np.nan)     # per-image AUC of masks with grey levels (NaN: 0/255 or none)
    graded = np.zeros(n, bool)        # a mask with grey levels other than 0/255
    ok = np.zeros(n, bool)
    hist = np.zeros((2, 256), np.int64)  # pooled histograms of the graded masks
    digests, sizes, problems = [], [], []
    for j, i in enumerate(range(start, stop)):
        out = _one(job, i)
        if isinstance(out, Problem):
            problems.append((i, out))
            digests.append(b"")
            sizes.append(None)
            continue
        counts, digest, size = out
        ok[j] = True
        if counts is not None:
            tp_pred[j] = counts.tp, counts.n_pred
            if counts.pos_hist is not None:
                graded[j] = True
                hist[0] += counts.pos_hist
                hist[1] += counts.neg_hist
                grey_auc[j] = auc_from_histograms(counts.pos_hist[None], counts.neg_hist[None])[0]
        digests.append(digest)
        sizes.append(size)
    return start, tp_pred, grey_auc, graded, ok, hist, digests, sizes, problems


def _executor(workers: int) -> Executor:
    if "fork" in multiprocessing.get_all_start_methods() and workers > 1:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(max(1, workers))


def run_mask_pass(
    truth: TruthCache,
    ids: Sequence[str],
    files: Sequence[str | Path | None],
    *,
    strict: bool,
    labels: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    started: Callable[[], None] | None = None,
) -> MaskPass:
    """Score the mask `files[i]` (None: an empty prediction) of each `ids[i]`.

    `strict` (leaderboard): a missing, unreadable, non-greyscale or wrongly shaped mask is a
    problem. Otherwise (official protocol): any mode is converted to grey, any size is resized,
    and a missing or unreadable mask is skipped, as the official script does.
    `labels[i]` is how a problem names the file (default: the path). `started()` is called once
    the worker processes exist (so the caller may start threads without forking them).
    """
    global _JOB
    n = len(ids)
    workers = workers or min(4, os.cpu_count() or 1)
    job = _Job(truth, ids, files, labels, strict)
    # load (or build) the blocks of the usual prediction size here, before workers fork, so each
    # inherits them; a rarer size is computed per image in the workers
    usual = _usual_size(files)
    if usual is not None:
        truth.blocks(ids[0], usual)

    counts = np.zeros((n, 4), np.int64)
    image_auc = np.full(n, np.nan)
    graded = np.zeros(n, bool)
    scored = np.ones(n, bool)
    digests: list[bytes] = [b""] * n
    hist = np.zeros((2, 256), np.int64)
    sizes: dict[str, int] = {}
    problems: list[Problem] = []
    rows = [truth.index[i] for i in ids]
    pixels = truth.shapes[rows].prod(axis=1) if n else np.zeros(0, np.int64)
    positives = truth.positives[rows] if n else np.zeros(0, np.int64)

    starts = list(range(0, n, CHUNK))
    _JOB = job
    try:
        if n <= CHUNK or workers == 1:
            if started:
                started()
            parts = [_chunk(s, min(s + CHUNK, n), job) for s in starts]
        else:
            with _executor(workers) as pool:
                parts = pool.map(_chunk, starts, [min(s + CHUNK, n) for s in starts])  # forks every worker
                if started:
                    started()
                parts = list(_report(parts, progress))
                progress = None
        done = 0
        for start, tp_pred, grey_auc, part_graded, ok, part_hist, part_digests, part_sizes, part_problems in parts:
            stop = start + len(ok)
            tp, n_pred = tp_pred[:, 0], tp_pred[:, 1]
            pos = positives[start:stop]
            counts[start:stop] = np.stack([tp, n_pred - tp, pos - tp, pixels[start:stop] - n_pred - pos + tp], axis=1)
            image_auc[start:stop] = grey_auc
            graded[start:stop] = part_graded
            scored[start:stop] = ok
            hist += part_hist
            digests[start:stop] = part_digests
            for size in part_sizes:
                if size:
                    sizes[size] = sizes.get(size, 0) + 1
            for i, problem in part_problems:
                if strict:
                    problems.append(problem)
            done += len(ok)
            if progress:
                progress(done)
    finally:
        _JOB = None
    counts[~scored] = 0
    # 0/255 masks (and allowed missing ones: empty): AUC and pooled histograms from the counts alone
    binary = scored & ~graded
    image_auc[binary] = binary_auc(counts[binary])
    tp, fp, fn, tn = counts[binary].sum(axis=0) if binary.any() else (0, 0, 0, 0)
    hist[0, 255] += tp
    hist[0, 0] += fn
    hist[1, 255] += fp
    hist[1, 0] += tn
    return MaskPass(counts=counts, image_auc=image_auc, pos_hist=hist[0], neg_hist=hist[1], scored=scored,
                    digests=digests, sizes=dict(sorted(sizes.items())), problems=problems)


def _report(parts, progress):
    done = 0
    for part in parts:
        done += len(part[3])
        if progress:
            progress(done)
        yield part
