"""One pass over a submission's masks: read each file once, check it, count it against the truth.

Per image the prediction is compared at its own resolution through the truth's cached block
counts (see `truth.py`), which gives exactly what resizing it to the truth size with NEAREST and
thresholding at > 127 would give. The file's bytes are hashed in the same read.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.metrics.mask import PRED_THRESHOLD, auc_from_histograms
from benchmark.scoring.truth import TruthCache
from submissions.reader import Problem

Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a mask bigger than 8k x 8k is refused, not decoded
CHUNK = 128  # images per task: per-future overhead would otherwise rival the work itself


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


def _aspect_ok(hw: tuple[int, int], truth_hw: tuple[int, int]) -> bool:
    (h, w), (H, W) = hw, truth_hw
    return abs(h * W - w * H) <= max(H, W)  # equal up to the rounding of a resize


def run_mask_pass(
    truth: TruthCache,
    ids: Sequence[str],
    files: Sequence[Path | None],
    *,
    strict: bool,
    labels: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 4,
) -> MaskPass:
    """Score the mask `files[i]` (None: an empty prediction) of each `ids[i]`.

    `strict` (leaderboard): a missing, unreadable, non-greyscale or wrongly shaped mask is a
    problem. Otherwise (official protocol): any mode is converted to grey, any size is resized,
    and a missing or unreadable mask is skipped, as the official script does.
    `labels[i]` is how a problem names the file (default: the path).
    """
    n = len(ids)
    counts = np.zeros((n, 4), np.int64)
    image_auc = np.full(n, np.nan)
    scored = np.ones(n, bool)
    digests: list[bytes] = [b""] * n
    pos_hist = np.zeros(256, np.int64)
    neg_hist = np.zeros(256, np.int64)
    sizes: dict[str, int] = {}
    problems: list[Problem] = []

    def one(i: int) -> tuple[int, object]:
        image_id, path = ids[i], files[i]
        H, W = (int(x) for x in truth.shapes[truth.index[image_id]])
        positives = int(truth.positives[truth.index[image_id]])
        label = labels[i] if labels else str(path)
        if path is None:
            return i, ("empty", H, W, positives)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return i, Problem("mask_missing", f"image_id {image_id!r}: mask file not found: {label}")
        except OSError as exc:
            return i, Problem("mask_unreadable", f"image_id {image_id!r}: cannot read mask {label}: {exc.strerror}")
        try:
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return i, Problem("mask_unreadable", f"image_id {image_id!r}: mask {label} is not a readable image: {exc}")
        if strict and (fmt != "PNG" or img.mode != "L"):
            what = f"{fmt or 'unknown'} image in mode {img.mode}"
            return i, Problem("mask_mode", f"image_id {image_id!r}: mask {label} is a {what}; expected an 8-bit greyscale PNG (mode L)")
        grey = np.asarray(img if img.mode == "L" else img.convert("L"))
        hw = grey.shape
        if strict and not _aspect_ok(hw, (H, W)):
            return i, Problem("mask_aspect", f"image_id {image_id!r}: mask {label} is {hw[1]}x{hw[0]}, "
                                             f"not the aspect ratio of the truth ({W}x{H})")
        forged, area = truth.blocks(image_id, hw)
        g = grey.ravel()
        b = g > PRED_THRESHOLD
        tp = int(forged[b].sum())
        n_pred = int(area[b].sum())
        levels = np.bincount(g, minlength=256)
        if levels[1:255].any():
            pos = np.bincount(g, weights=forged, minlength=256).astype(np.int64)
            neg = np.bincount(g, weights=area, minlength=256).astype(np.int64) - pos
        else:  # a 0/255 mask (the usual thresholded PNG): the counts give both histograms
            pos = np.zeros(256, np.int64)
            neg = np.zeros(256, np.int64)
            pos[255], pos[0] = tp, positives - tp
            neg[255], neg[0] = n_pred - tp, H * W - positives - (n_pred - tp)
        auc = float(auc_from_histograms(pos[None], neg[None])[0])
        return i, ("ok", tp, n_pred, positives, H * W, pos, neg, auc,
                   hashlib.sha256(data).digest(), f"{hw[0]}x{hw[1]}")

    def chunk(start: int) -> list[tuple[int, object]]:
        return [one(i) for i in range(start, min(start + CHUNK, n))]

    def results():
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for part in pool.map(chunk, range(0, n, CHUNK)):
                yield from part

    for done, (i, out) in enumerate(results(), start=1):
        if isinstance(out, Problem):
            scored[i] = False
            if strict:
                problems.append(out)
        elif out[0] == "empty":
            _, H, W, positives = out
            counts[i] = (0, 0, positives, H * W - positives)
            pos = np.zeros(256, np.int64)
            neg = np.zeros(256, np.int64)
            pos[0], neg[0] = positives, H * W - positives
            pos_hist += pos
            neg_hist += neg
            image_auc[i] = auc_from_histograms(pos[None], neg[None])[0]
        else:
            _, tp, n_pred, positives, total, pos, neg, image_auc[i], digest, size = out
            counts[i] = (tp, n_pred - tp, positives - tp, total - n_pred - positives + tp)
            pos_hist += pos
            neg_hist += neg
            digests[i] = digest
            sizes[size] = sizes.get(size, 0) + 1
        if progress:
            progress(done)
    return MaskPass(counts=counts, image_auc=image_auc, pos_hist=pos_hist, neg_hist=neg_hist,
                    scored=scored, digests=digests, sizes=dict(sorted(sizes.items())), problems=problems)
