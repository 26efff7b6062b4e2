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
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.metrics.mask import auc_from_histograms, binary_auc, count_mask
from benchmark.scoring.truth import TruthCache
from submissions.reader import Problem

Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a mask bigger than 8k x 8k is refused, not decoded
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
    files: Sequence[Path | None]
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
        data = path.read_bytes()
    except FileNotFoundError:
        return Problem("mask_missing", f"image_id {image_id!r}: mask file not found: {label}")
    except OSError as exc:
        return Problem("mask_unreadable", f"image_id {image_id!r}: cannot read mask {label}: {exc.strerror}")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return Problem("mask_unreadable", f"image_id {image_id!r}: mask {label} is not a readable image: {exc}")
    if job.strict and (fmt != "PNG" or img.mode != "L"):
        what = f"{fmt or 'unknown'} image in mode {img.mode}"
        return Problem("mask_mode", f"image_id {image_id!r}: mask {label} is a {what}; expected an 8-bit greyscale PNG (mode L)")
    grey = np.asarray(img if img.mode == "L" else img.convert("L"))
    hw = grey.shape
    k = job.truth.index[image_id]
    H, W = (int(x) for x in job.truth.shapes[k])
    if job.strict and not _aspect_ok(hw, (H, W)):
        return Problem("mask_aspect", f"image_id {image_id!r}: mask {label} is {hw[1]}x{hw[0]}, "
                                      f"not the aspect ratio of the truth ({W}x{H})")
    counts = count_mask(grey, job.truth.blocks(image_id, hw, build=False))
    return counts, hashlib.sha256(data).digest(), f"{hw[0]}x{hw[1]}"


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
    files: Sequence[Path | None],
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
    first = next((f for f in files if f is not None and f.is_file()), None)
    if first is not None:
        try:
            with Image.open(first) as im:
                truth.blocks(ids[0], (im.size[1], im.size[0]))
        except (OSError, UnidentifiedImageError, ValueError):
            pass

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
