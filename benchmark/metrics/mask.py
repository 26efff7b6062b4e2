"""Forgery-localization metrics: IoU, precision, recall, F1 and pixel ROC AUC of predicted masks.

Per image the work is a few counts on boolean arrays (`confusion`) and one 512-bin histogram
(`grey_histograms`), so ~21,679 images of 512x512 pixels stay cheap; everything after that is
vectorized over a per-image table of counts of shape (N, 4) = (tp, fp, fn, tn).

Empty masks make the ratios undefined (authentic regions, a model that predicts nothing), and
different tools fill the holes differently, so every score is computed under a named policy
whose text (`POLICY_TEXT[name]`, `EMPTY_TRUTH_POLICY` for the default) is shown with the score:

- ``"official"`` (default) — the rules of the official ``evaluate_metrics.py``: IoU is 1 when
  the union is empty; precision is 1 when prediction and truth are both empty and 0 when only the
  prediction is; recall likewise. F1 (not reported officially) is the harmonic mean of that P and
  R, which always equals Dice, 2tp / (2tp + fp + fn), with 1 when both masks are empty.
- ``"sklearn"`` — scikit-learn's ``zero_division=1.0``: any undefined ratio is 1. IoU and F1
  coincide with ``"official"`` on every image; only precision (empty prediction, non-empty
  truth: 1 instead of 0) and recall (empty truth, non-empty prediction: 1 instead of 0) differ.

The pixel AUC uses the prediction's grey level as the score. A histogram of grey levels among
truth-positive and truth-negative pixels is kept per image; summing them gives the exact AUC
pooled over every pixel of every image (ties count 1/2), with no pixels kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

PRED_THRESHOLD = 127
"""A predicted pixel is forged when its grey level is above this (official: ``> 127``)."""

POLICIES: tuple[str, ...] = ("official", "sklearn")

POLICY_TEXT: dict[str, str] = {
    "official": (
        "Mask scores are per-image means (micro scores: the same rules on counts summed over all "
        "images). IoU = |P∩T|/|P∪T|, precision = |P∩T|/|P|, recall = |P∩T|/|T|, "
        "F1 = 2|P∩T|/(|P|+|T|). An image with empty truth and empty prediction scores 1 on every "
        "metric; an image where exactly one of truth and prediction is empty scores 0 on every "
        "metric (the official evaluate_metrics.py rule; F1 is added). Pixel AUC pools all pixels "
        "of all images (prediction grey level as score, ties count 1/2); the per-image AUC mean "
        "skips images whose truth is all-0 or all-1, where AUC is undefined."
    ),
    "sklearn": (
        "Mask scores are per-image means (micro scores: the same rules on counts summed over all "
        "images), with scikit-learn's zero_division=1.0: every undefined ratio is 1. An image "
        "with empty truth and empty prediction scores 1 on every metric; with empty prediction "
        "and non-empty truth: precision 1, recall/IoU/F1 0; with empty truth and non-empty "
        "prediction: recall 1, precision/IoU/F1 0. Pixel AUC pools all pixels of all images "
        "(ties count 1/2); the per-image AUC mean skips images whose truth is all-0 or all-1."
    ),
}

EMPTY_TRUTH_POLICY: str = POLICY_TEXT["official"]
"""The text of the default policy; print it next to every mask score."""

TP, FP, FN, TN = range(4)


# ------------------------------------------------------------------ the one counting implementation
@lru_cache(maxsize=64)
def nearest_index(src: int, dst: int) -> np.ndarray:
    """For each of `dst` output positions, the source position PIL's NEAREST resize reads.

    Taken from PIL itself (resizing an index ramp), so it matches `Image.resize(..., NEAREST)`
    exactly, whatever rounding PIL uses.
    """
    ramp = Image.fromarray(np.arange(src, dtype=np.int32)[None, :], mode="I")
    out = np.asarray(ramp.resize((dst, 1), Image.NEAREST), dtype=np.int64)[0]
    out.setflags(write=False)
    return out


def _cover(pred_len: int, truth_len: int) -> np.ndarray:
    """Truth rows (or columns) each prediction row (column) covers once resized NEAREST."""
    if pred_len == truth_len:
        return np.ones(pred_len, np.int64)
    return np.bincount(nearest_index(pred_len, truth_len), minlength=pred_len).astype(np.int64)


@lru_cache(maxsize=64)
def _run_starts(pred_len: int, truth_len: int) -> np.ndarray:
    """First truth row (or column) each prediction row (column) covers once resized NEAREST."""
    out = np.searchsorted(nearest_index(pred_len, truth_len), np.arange(pred_len))
    out.setflags(write=False)
    return out


def _run_sums(x: np.ndarray, starts: np.ndarray, lengths: np.ndarray, dtype) -> np.ndarray:
    """Row i of the result: the sum of rows starts[i] .. starts[i] + lengths[i] - 1 of `x`.

    Runs are short (a 512 px truth seen from 224 px: 2 or 3 rows), so adding whole rows once per
    offset beats `np.add.reduceat`, which loops per segment and element along a strided axis.
    """
    out = np.zeros((len(starts),) + x.shape[1:], dtype)
    for offset in range(int(lengths.max(initial=0))):
        take = lengths > offset
        if take.all():
            out += x[starts + offset]
        else:
            out[take] += x[starts[take] + offset]
    return out


@lru_cache(maxsize=64)
def _grid(h: int, w: int, truth_h: int, truth_w: int) -> tuple:
    """What every truth of size (truth_h, truth_w) seen from (h, w) shares: the covers, the run
    starts, the count dtype, each block's area (flat) and whether some blocks are empty."""
    rows, cols = _cover(h, truth_h), _cover(w, truth_w)
    big = int(rows.max(initial=0)) * int(cols.max(initial=0)) > np.iinfo(np.uint16).max
    dtype = np.int64 if big else np.uint16
    area = np.outer(rows, cols).ravel().astype(dtype)
    for a in (rows, cols, area):
        a.setflags(write=False)
    return rows, cols, _run_starts(h, truth_h), _run_starts(w, truth_w), dtype, area, bool((area == 0).any())


def covers(pred_hw: tuple[int, int], truth_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the truth rows and columns each prediction row and column covers (read-only)."""
    return _grid(pred_hw[0], pred_hw[1], truth_hw[0], truth_hw[1])[:2]


def _words(bits: np.ndarray) -> np.ndarray:
    """Packed bits as uint64 words (zero-padded), so popcounts run 64 pixels at a time."""
    pad = -len(bits) % 8
    if pad:
        bits = np.concatenate([bits, np.zeros(pad, np.uint8)])
    return bits.view(np.uint64)


@lru_cache(maxsize=64)
def _area_classes(h: int, w: int, truth_h: int, truth_w: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct block areas of a prediction grid (k,) and, per area, the packed words of its
    blocks (k, words)."""
    area = _grid(h, w, truth_h, truth_w)[5]
    areas = np.array([a for a in np.unique(area) if a > 0], np.int64)
    members = np.stack([_words(np.packbits(area == a)) for a in areas]) if len(areas) else np.zeros((0, 1), np.uint64)
    for a in (areas, members):
        a.setflags(write=False)
    return areas, members


def _only_0_and_255(grey: np.ndarray) -> bool:
    """Whether every level is 0 or 255: one less (wrapping), 0 becomes 255 and 255 becomes 254,
    every other level falls below 254."""
    return grey.size == 0 or int((grey - np.uint8(1)).min()) >= 254


def _trimmed(words: np.ndarray) -> tuple[int, np.ndarray]:
    """(first word, words up to the last non-zero one) of packed bit words; (0, empty) if all zero."""
    nonzero = np.flatnonzero(words)
    if not len(nonzero):
        return 0, np.zeros(0, np.uint64)
    first, last = int(nonzero[0]), int(nonzero[-1])
    return first, np.ascontiguousarray(words[first:last + 1])


@dataclass(frozen=True)
class TruthBlocks:
    """A truth mask seen from a prediction of size (h, w) resized to it with NEAREST (the official rule).

    Each prediction pixel covers a block of `rows[i] * cols[j]` truth pixels (NEAREST is separable).
    The blocks whose covered pixels are all forged are bits of the flat (h, w) grid packed into
    64-bit words (`np.packbits` order), kept from word `full_start` to the last non-zero one
    (`full_words`: forged regions are compact, most words are zero); `partial_*` lists the other
    blocks that hold some forged pixels, with their counts. Scoring a prediction at its own size
    through its blocks gives exactly the counts of resizing it to the truth size, at a fraction of
    the work; at equal sizes every block is one pixel and this is plain pixel counting.
    """

    rows: np.ndarray            # (h,) int64
    cols: np.ndarray            # (w,) int64
    full_start: int             # first word of `full_words` in the packed (h, w) grid
    full_words: np.ndarray      # (k,) uint64: packed bits of the entirely forged blocks, trimmed
    partial_index: np.ndarray   # (m,) flat indices into (h, w)
    partial_forged: np.ndarray  # (m,) forged truth pixels of each partial block
    positives: int              # forged truth pixels in all
    truth_hw: tuple[int, int]   # (rows.sum(), cols.sum())

    @property
    def hw(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    @property
    def truth_pixels(self) -> int:
        truth_h, truth_w = self.truth_hw
        return truth_h * truth_w

    @classmethod
    def of(cls, truth: np.ndarray, pred_hw: tuple[int, int] | None = None) -> "TruthBlocks":
        truth = np.asarray(truth, dtype=bool)
        (H, W), (h, w) = truth.shape, (pred_hw or truth.shape)
        rows, cols, row_starts, col_starts, dtype, area, empty_blocks = _grid(h, w, H, W)
        if (h, w) == (H, W):   # every block is one pixel: entirely forged or not at all
            full, part = truth.ravel(), np.zeros(0, np.int64)
            forged = truth.view(np.uint8).ravel()
        else:
            # NEAREST is monotone: prediction row i covers the contiguous truth rows
            # start[i] .. start[i] + rows[i] - 1 (possibly none); likewise for columns
            by_rows = _run_sums(truth.view(np.uint8), row_starts, rows, dtype)  # (h, W)
            forged = _run_sums(by_rows.T, col_starts, cols, dtype).T.ravel()
            full = forged == area
            if empty_blocks:
                full &= area > 0
            part = np.flatnonzero(forged.astype(bool) & ~full)
        start, words = _trimmed(_words(np.packbits(full)))
        return cls(rows, cols, start, words, part, forged[part].astype(np.int64), int(np.count_nonzero(truth)), (H, W))

    @classmethod
    def same_size(cls, bits: np.ndarray, truth_hw: tuple[int, int], positives: int) -> "TruthBlocks":
        """A truth seen from a prediction of its own size, from its packed bits (`np.packbits` of
        the flat bool mask): every block is one pixel, entirely forged or not, so no block sums."""
        ones_h, ones_w = np.ones(truth_hw[0], np.int64), np.ones(truth_hw[1], np.int64)
        empty = np.zeros(0, np.int64)
        start, words = _trimmed(_words(bits))
        return cls(ones_h, ones_w, start, words, empty, empty, positives, truth_hw)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(forged, area) per prediction pixel as flat int64 arrays (for grey histograms)."""
        area = np.outer(self.rows, self.cols).ravel()
        words = np.zeros(-(-len(area) // 64), np.uint64)
        words[self.full_start:self.full_start + len(self.full_words)] = self.full_words
        full = np.unpackbits(words.view(np.uint8), count=len(area)).view(bool)
        forged = np.where(full, area, 0)
        forged[self.partial_index] = self.partial_forged
        return forged, area


@dataclass(frozen=True)
class MaskCounts:
    """One image: forged pixels found (tp), predicted (n_pred), truth size, and — only for a
    prediction with grey levels other than 0/255 — its grey histograms (pixel AUC)."""

    tp: int
    n_pred: int
    positives: int
    pixels: int
    pos_hist: np.ndarray | None = None
    neg_hist: np.ndarray | None = None

    @property
    def confusion(self) -> tuple[int, int, int, int]:
        fp, fn = self.n_pred - self.tp, self.positives - self.tp
        return self.tp, fp, fn, self.pixels - self.tp - fp - fn

    def histograms(self) -> tuple[np.ndarray, np.ndarray]:
        """(pos_hist, neg_hist) over grey levels 0..255; a 0/255 mask's come from the counts."""
        if self.pos_hist is not None:
            return self.pos_hist, self.neg_hist
        pos, neg = np.zeros(256, np.int64), np.zeros(256, np.int64)
        tp, fp, fn, tn = self.confusion
        pos[255], pos[0], neg[255], neg[0] = tp, fn, fp, tn
        return pos, neg


def count_mask(grey: np.ndarray, blocks: TruthBlocks) -> MaskCounts:
    """Count one prediction (uint8 grey levels, or bool read as 0/255) against a truth's blocks.

    A pixel is predicted forged when its grey level is above `PRED_THRESHOLD`. This is the one
    counting routine: `confusion`, `grey_histograms`, `MaskTable` and the scorer's mask pass call it.
    """
    grey = np.asarray(grey)
    if grey.dtype == bool:
        grey = grey.view(np.uint8) * np.uint8(255)
    if grey.dtype != np.uint8:
        raise ValueError(f"a grey prediction must be uint8 or bool, got {grey.dtype}")
    if grey.shape != blocks.hw:
        raise ValueError(f"prediction shape {grey.shape} differs from the truth blocks' {blocks.hw}")
    hit = grey > PRED_THRESHOLD
    hit_words = _words(np.packbits(hit))
    h, w = grey.shape
    truth_h, truth_w = blocks.truth_hw
    areas, members = _area_classes(h, w, truth_h, truth_w)
    # predicted, and predicted inside entirely forged blocks: popcounts of packed bits per block
    # area class, weighted by the area (exact integer arithmetic)
    start, stop = blocks.full_start, blocks.full_start + len(blocks.full_words)
    n_pred = int(np.bitwise_count(hit_words & members).sum(axis=1, dtype=np.int64) @ areas)
    tp = int(np.bitwise_count(hit_words[start:stop] & blocks.full_words & members[:, start:stop])
             .sum(axis=1, dtype=np.int64) @ areas)
    if len(blocks.partial_index):
        tp += int(blocks.partial_forged[hit.reshape(-1)[blocks.partial_index]].sum())
    pixels = truth_h * truth_w
    if _only_0_and_255(grey):
        return MaskCounts(tp, n_pred, blocks.positives, pixels)
    forged, area = blocks.dense()
    flat = grey.ravel()
    pos = np.bincount(flat, weights=forged, minlength=256).astype(np.int64)
    neg = np.bincount(flat, weights=area, minlength=256).astype(np.int64) - pos
    return MaskCounts(tp, n_pred, blocks.positives, pixels, pos, neg)


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) pixel counts of one boolean prediction against one boolean truth."""
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"prediction shape {np.shape(pred)} differs from truth shape {np.shape(truth)}")
    return count_mask(np.asarray(pred, dtype=bool), TruthBlocks.of(truth)).confusion


def grey_histograms(pred_grey: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pos_hist, neg_hist): int64 counts of each grey level 0..255 among truth-positive and
    truth-negative pixels. Summed over images they give the exact pooled pixel AUC."""
    if np.shape(pred_grey) != np.shape(truth):
        raise ValueError(f"prediction shape {np.shape(pred_grey)} differs from truth shape {np.shape(truth)}")
    if np.asarray(pred_grey).dtype != np.uint8:
        raise ValueError(f"a grey prediction must be uint8, got {np.asarray(pred_grey).dtype}")
    return count_mask(pred_grey, TruthBlocks.of(truth)).histograms()


def binary_auc(counts: np.ndarray) -> np.ndarray:
    """Per-row pixel AUC of 0/255 predictions from (N, 4) counts: (1 + TPR - FPR) / 2 (ties 1/2),
    what `auc_from_histograms` gives on their two-level histograms; NaN where a class is absent."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
    tp, fp, fn, tn = c[:, TP], c[:, FP], c[:, FN], c[:, TN]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = 0.5 * (1.0 + tp / (tp + fn) - fp / (fp + tn))
    auc[(tp + fn == 0) | (fp + tn == 0)] = np.nan
    return auc


def auc_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float | np.ndarray:
    """ROC AUC from per-level positive/negative counts (higher level = more forged; ties 1/2).

    1-D input gives a float computed with exact integer arithmetic (so pooled counts in the
    billions stay exact); (N, 256) input gives N per-image values in float64 (exact there too,
    as per-image products stay far below 2**53). Undefined (NaN) when either class is absent.
    """
    pos = np.asarray(pos_hist)
    neg = np.asarray(neg_hist)
    if pos.shape != neg.shape:
        raise ValueError(f"histogram shapes differ: {pos.shape} vs {neg.shape}")
    if pos.ndim == 1:
        p = [int(v) for v in pos]
        n = [int(v) for v in neg]
        n_pos, n_neg = sum(p), sum(n)
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        twice, below = 0, 0  # twice the Mann-Whitney count, to keep ties integral
        for pk, nk in zip(p, n):
            twice += pk * (2 * below + nk)
            below += nk
        return twice / (2 * n_pos * n_neg)
    pos = pos.astype(np.float64)
    neg = neg.astype(np.float64)
    below = np.cumsum(neg, axis=-1) - neg
    u = np.sum(pos * (below + 0.5 * neg), axis=-1)
    denom = pos.sum(axis=-1) * neg.sum(axis=-1)
    return np.divide(u, denom, out=np.full(u.shape, np.nan), where=denom > 0)


def image_auc(pred_grey: np.ndarray, truth: np.ndarray) -> float:
    """Pixel ROC AUC of one image; NaN when its truth is all-0 or all-1 (AUC undefined)."""
    pos, neg = grey_histograms(pred_grey, truth)
    return float(auc_from_histograms(pos[None], neg[None])[0])


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown empty-truth policy {policy!r}; choose one of {POLICIES}")


def _ratio(num: np.ndarray, den: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
    fill = np.broadcast_to(np.asarray(fill, dtype=np.float64), num.shape)
    return np.divide(num, den, out=fill.copy(), where=den > 0)


def per_image_scores(counts: np.ndarray, policy: str = "official") -> dict[str, np.ndarray]:
    """Per-row IoU, precision, recall and F1 of a (N, 4) (tp, fp, fn, tn) table (or one row)."""
    _check_policy(policy)
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1] != 4:
        raise ValueError(f"counts have 4 columns (tp, fp, fn, tn), got shape {c.shape}")
    tp, fp, fn = c[..., TP], c[..., FP], c[..., FN]
    n_pred, n_truth = tp + fp, tp + fn
    if policy == "official":
        p_fill = (n_truth == 0).astype(np.float64)
        r_fill = (n_pred == 0).astype(np.float64)
    else:
        p_fill = r_fill = 1.0
    return {
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "precision": _ratio(tp, n_pred, p_fill),
        "recall": _ratio(tp, n_truth, r_fill),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
    }


def micro_scores(counts: np.ndarray, policy: str = "official") -> dict[str, float]:
    """Dataset-level IoU, precision, recall, F1 from counts summed over all images."""
    total = np.asarray(counts, dtype=np.float64).reshape(-1, 4).sum(axis=0)
    return {f"{k}_micro": float(v) for k, v in per_image_scores(total, policy).items()}


def summarize(counts: np.ndarray, *, pos_hist: np.ndarray | None = None,
              neg_hist: np.ndarray | None = None, image_aucs: np.ndarray | None = None,
              policy: str = "official") -> dict[str, float]:
    """Every mask score of a submission: per-image means, micro scores, pooled and mean AUC.

    `pos_hist`/`neg_hist` are the grey histograms summed over images (pooled AUC; NaN when
    absent); `image_aucs` the per-image AUCs, NaN where undefined (skipped by the mean).
    """
    counts = np.asarray(counts).reshape(-1, 4)
    out: dict[str, float] = {}
    for name, values in per_image_scores(counts, policy).items():
        out[name] = float(values.mean()) if len(values) else float("nan")
    out.update(micro_scores(counts, policy) if len(counts) else
               {f"{k}_micro": float("nan") for k in ("iou", "precision", "recall", "f1")})
    out["auc"] = (float(auc_from_histograms(pos_hist, neg_hist))
                  if pos_hist is not None and neg_hist is not None else float("nan"))
    aucs = np.asarray(image_aucs if image_aucs is not None else [], dtype=np.float64)
    defined = aucs[~np.isnan(aucs)]
    out["auc_image_mean"] = float(defined.mean()) if len(defined) else float("nan")
    return out


@dataclass
class MaskTable:
    """Accumulates what every mask score needs, image by image, in a few bytes per image.

    `add` takes the prediction as uint8 grey levels (binarized ``> PRED_THRESHOLD``, the grey
    levels feed the AUC) or as booleans (read as 0/255), already resized to the truth's size.
    Tables built by parallel workers combine with `merge` (rows keep the order of the calls).
    """

    ids: list[str] = field(default_factory=list, repr=False)
    _counts: list[tuple[int, int, int, int]] = field(default_factory=list, repr=False)
    _aucs: list[float] = field(default_factory=list, repr=False)
    pos_hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64), repr=False)
    neg_hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64), repr=False)

    def add(self, pred: np.ndarray, truth: np.ndarray, image_id: str | None = None) -> None:
        """Score one image and keep its counts, its AUC and its share of the pooled histograms."""
        counts = count_mask(pred, TruthBlocks.of(truth))
        pos, neg = counts.histograms()
        self._counts.append(counts.confusion)
        self._aucs.append(float(auc_from_histograms(pos[None], neg[None])[0]))
        self.pos_hist += pos
        self.neg_hist += neg
        self.ids.append(str(image_id) if image_id is not None else str(len(self.ids)))

    def merge(self, other: "MaskTable") -> "MaskTable":
        """Append another table's images (e.g. from a worker process); returns self."""
        self.ids.extend(other.ids)
        self._counts.extend(other._counts)
        self._aucs.extend(other._aucs)
        self.pos_hist += other.pos_hist
        self.neg_hist += other.neg_hist
        return self

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def counts(self) -> np.ndarray:
        """(N, 4) int64 table of (tp, fp, fn, tn), one row per added image."""
        return np.asarray(self._counts, dtype=np.int64).reshape(-1, 4)

    @property
    def image_aucs(self) -> np.ndarray:
        """(N,) per-image pixel AUC, NaN where the truth is all-0 or all-1."""
        return np.asarray(self._aucs, dtype=np.float64)

    def per_image(self, policy: str = "official") -> dict[str, np.ndarray]:
        """Per-image iou/precision/recall/f1 arrays plus `auc` (for bootstrapping, detail views)."""
        scores = per_image_scores(self.counts, policy)
        scores["auc"] = self.image_aucs
        return scores

    def summary(self, policy: str = "official") -> dict[str, float]:
        """All mask scores (see `summarize`)."""
        return summarize(self.counts, pos_hist=self.pos_hist, neg_hist=self.neg_hist,
                         image_aucs=self.image_aucs, policy=policy)


# ------------------------------------------------------------------------------ registry entry
from benchmark.metrics.registry import Inputs, Metric, Scored, Scorer, Statistic, mean_statistic, register  # noqa: E402

_PER_IMAGE_HELP = {
    "iou": "mean over images of |pred ∩ truth| / |pred ∪ truth| of the forged-pixel masks",
    "f1": "mean over images of the pixel F1 (Dice) of the masks",
    "precision": "mean over images: share of predicted forged pixels that are forged",
    "recall": "mean over images: share of forged pixels that were found",
}
_LABELS = {"iou": "IoU", "f1": "F1", "precision": "Precision", "recall": "Recall"}


def _micro_fn(name: str):
    return lambda sums: per_image_scores(sums, "official")[name]


class MaskScorer(Scorer):
    """IoU, F1, precision, recall (per-image means and pixel-level), pixel AUC: one mask pass."""

    name = "mask"
    task = "localization"
    official = True
    help = "forged-pixel mask scores (" + EMPTY_TRUTH_POLICY.split(". ")[0] + ")"
    metrics = (
        *(Metric(k, _LABELS[k], _PER_IMAGE_HELP[k], "mask", "mean", headline=True, brief=True,
                 primary=(k == "iou"), per_image=k) for k in ("iou", "f1", "precision", "recall")),
        Metric("auc", "AUC", "pixel ROC AUC of the mask confidences, pooled over all pixels (grey level as score)",
               "mask", "pooled", headline=True, brief=True),
        *(Metric(f"{k}_micro", f"{_LABELS[k]} (pixels)", f"dataset-level {_LABELS[k]}: the same rule on pixel "
                 "counts summed over all images", "mask", "ratio") for k in ("iou", "f1", "precision", "recall")),
        Metric("auc_image_mean", "AUC (image mean)", "mean over images of the per-image pixel AUC (images with "
               "all-0 or all-1 truth left out)", "mask", "mean", per_image="auc"),
    )

    def score(self, inputs: Inputs) -> Scored:
        mp = inputs.masks
        valid = mp.scored
        per_img = per_image_scores(mp.counts, "official")
        out = Scored(notes={"mask_policy": EMPTY_TRUTH_POLICY})
        for k in ("iou", "f1", "precision", "recall"):
            out.samples[k] = np.where(valid, per_img[k], np.nan)
            out.stats[k] = mean_statistic(out.samples[k])
        out.samples["auc"] = mp.image_auc
        out.values = summarize(mp.counts[valid], pos_hist=mp.pos_hist, neg_hist=mp.neg_hist,
                               image_aucs=mp.image_auc[valid], policy="official")
        counts = np.where(valid[:, None], mp.counts, 0).astype(np.float64)
        for k in ("iou", "f1", "precision", "recall"):
            out.stats[f"{k}_micro"] = Statistic(counts, _micro_fn(k))
        out.stats["auc_image_mean"] = mean_statistic(np.where(valid, mp.image_auc, np.nan))
        return out


register(MaskScorer())
