"""Clue scores: does a predicted explanation point at the facial regions the truth names?

Caption metrics (BLEU, CIDEr) reward wording; this measure rewards the right *places*. Each
explanation becomes the set of the 21 MMTT regions it mentions (`benchmark.data.regions`, the
keyword rule that produced the official `multilabel` vectors); per image the predicted set is
compared with the truth set:

    precision = |P∩T| / |P|,  recall = |P∩T| / |T|,  F1 = 2|P∩T| / (|P| + |T|).

Empty sets (`CLUE_POLICY`, print it with the scores): when neither explanation names a region the
image scores 1 on all three; when exactly one does, 0 on all three — the same rule as the
official mask scorer (`benchmark.metrics.mask`, policy "official"). Micro scores apply the same
formulas to counts summed over images. Sets are (N, 21) boolean matrices, so all of it is a few
vectorized numpy reductions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from benchmark.data.regions import N_REGIONS, REGION_WORDS, REGIONS, mentioned_regions
from benchmark.metrics.mask import per_image_scores

CLUE_POLICY: str = (
    "Clue scores compare the sets of facial regions (21 MMTT labels, keyword/synonym matching) "
    "named by the predicted and the truth explanation: precision = |P∩T|/|P|, recall = "
    "|P∩T|/|T|, F1 = 2|P∩T|/(|P|+|T|), averaged over images (micro: on counts summed over "
    "images). An image where neither explanation names a region scores 1 on all three; where "
    "exactly one does, 0 on all three. Per-region precision/recall/F1 are NaN where undefined."
)

_INDEX = {r: i for i, r in enumerate(REGIONS)}


def _build_matchers() -> tuple[dict[str, tuple[int, ...]], list[tuple[re.Pattern[str], int]]]:
    """Single words by dictionary lookup, multi-word phrases by their own pattern.

    `mentioned_regions` runs 21 patterns over each text; this is the same whole-word,
    case-insensitive rule in one tokenizing pass: a single word matches `\\bword\\b` exactly
    when it equals a maximal run of word characters. (Non-ASCII texts, where regex case folding
    goes beyond `str.lower`, take the reference path.)"""
    words: dict[str, set[int]] = {}
    phrases: list[tuple[re.Pattern[str], int]] = []
    for region, entries in REGION_WORDS.items():
        for w in entries:
            if re.fullmatch(r"\w+", w):
                words.setdefault(w.lower(), set()).add(_INDEX[region])
            else:
                phrases.append((re.compile(r"\b" + re.escape(w) + r"\b", re.IGNORECASE), _INDEX[region]))
    return {w: tuple(sorted(ix)) for w, ix in words.items()}, phrases


_WORD_REGIONS, _PHRASES = _build_matchers()
_TOKEN = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def _region_indices(text: str) -> tuple[int, ...]:
    if not text.isascii():
        return tuple(sorted(_INDEX[r] for r in mentioned_regions(text)))
    found: set[int] = set()
    for token in set(_TOKEN.findall(text.lower())):
        found.update(_WORD_REGIONS.get(token, ()))
    found.update(idx for pat, idx in _PHRASES if idx not in found and pat.search(text))
    return tuple(sorted(found))


def region_matrix(texts: Sequence[str | None]) -> np.ndarray:
    """(N, 21) boolean matrix: row i marks the regions text i mentions (None/"" mention none)."""
    out = np.zeros((len(texts), N_REGIONS), dtype=bool)
    for i, text in enumerate(texts):
        if text:
            out[i, list(_region_indices(text))] = True
    return out


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"region matrices must both be (N, {N_REGIONS}); got {pred.shape} and {truth.shape}")
    return pred, truth


def clue_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 3) int64 per-image counts (tp, fp, fn) of regions; sums of rows feed micro scores."""
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth, axis=1)
    fp = np.count_nonzero(pred & ~truth, axis=1)
    fn = np.count_nonzero(~pred & truth, axis=1)
    return np.stack([tp, fp, fn], axis=1).astype(np.int64)


def _scores_from_counts(counts: np.ndarray, policy: str) -> dict[str, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    tn = np.zeros(counts.shape[:-1] + (1,))  # unused by precision/recall/F1
    scores = per_image_scores(np.concatenate([counts[..., :3], tn], axis=-1), policy)
    return {f"clue_{k}": scores[k] for k in ("precision", "recall", "f1")}


def clue_micro(counts: np.ndarray, policy: str = "official") -> dict[str, float]:
    """Micro clue precision/recall/F1 from (…, 3) counts summed over images (vectorizable:
    a (B, 3) array of summed counts, e.g. bootstrap replicates, gives B values per key)."""
    scores = _scores_from_counts(np.asarray(counts), policy)
    return {f"{k}_micro": (float(v) if np.ndim(v) == 0 else v) for k, v in scores.items()}


def per_region_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Per region: support (truth images naming it), predicted, tp, precision, recall, F1.

    Precision is NaN for a region never predicted, recall NaN for one never in the truth, F1
    NaN only when both (so a region predicted but never true has F1 0, like scikit-learn).
    """
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth, axis=0).astype(np.float64)
    n_pred = np.count_nonzero(pred, axis=0).astype(np.float64)
    support = np.count_nonzero(truth, axis=0).astype(np.float64)
    nan = np.full(N_REGIONS, np.nan)
    precision = np.divide(tp, n_pred, out=nan.copy(), where=n_pred > 0)
    recall = np.divide(tp, support, out=nan.copy(), where=support > 0)
    f1 = np.divide(2 * tp, n_pred + support, out=nan.copy(), where=(n_pred + support) > 0)
    return {
        region: {"support": int(support[i]), "predicted": int(n_pred[i]), "tp": int(tp[i]),
                 "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i])}
        for i, region in enumerate(REGIONS)
    }


@dataclass(frozen=True)
class ClueResult:
    """Everything the scorer needs: headline numbers, per-image arrays, counts and a detail view."""

    summary: dict[str, float]
    """clue_precision, clue_recall, clue_f1 (per-image means) and their `_micro` versions."""
    per_image: dict[str, np.ndarray]
    """clue_precision, clue_recall, clue_f1 as (N,) arrays (bootstrap their means)."""
    counts: np.ndarray
    """(N, 3) tp, fp, fn (bootstrap micro scores with `clue_micro` as a sum statistic)."""
    per_region: dict[str, dict[str, float]]
    """Region -> support, predicted, tp, precision, recall, f1."""


def clue_scores(pred: np.ndarray, truth: np.ndarray, policy: str = "official") -> ClueResult:
    """Clue scores of (N, 21) predicted vs truth region matrices.

    `policy="sklearn"` instead fills every undefined ratio with 1 (scikit-learn's
    zero_division=1.0); it changes only precision/recall of images with one empty set.
    """
    counts = clue_counts(pred, truth)
    per_image = _scores_from_counts(counts, policy)
    n = len(counts)
    summary = {k: (float(v.mean()) if n else float("nan")) for k, v in per_image.items()}
    if n:
        summary.update(clue_micro(counts.sum(axis=0), policy))
    else:
        summary.update({f"{k}_micro": float("nan") for k in per_image})
    return ClueResult(summary=summary, per_image=per_image, counts=counts,
                      per_region=per_region_scores(pred, truth))


def score_texts(pred_texts: Sequence[str | None], truth_texts: Sequence[str | None],
                policy: str = "official") -> ClueResult:
    """Clue scores straight from explanation texts (pairs in the same order)."""
    if len(pred_texts) != len(truth_texts):
        raise ValueError(f"{len(pred_texts)} predicted explanations for {len(truth_texts)} truths")
    return clue_scores(region_matrix(pred_texts), region_matrix(truth_texts), policy)


# ------------------------------------------------------------------------------ registry entry
from benchmark.metrics.registry import Inputs, Metric, Scored, Scorer, Statistic, mean_statistic, register  # noqa: E402

_CLUE_HELP = {"precision": "share of the regions the explanation names that the truth names",
              "recall": "share of the truth's regions that the explanation names",
              "f1": "F1 of the facial regions named in the explanation vs the truth's regions"}


def _clue_micro_fn(name: str):
    return lambda sums: _scores_from_counts(sums, "official")[f"clue_{name}"]


class ClueScorer(Scorer):
    """Do the explanations point at the right facial regions (21 MMTT labels)?"""

    name = "clue"
    task = "interpretation"
    help = "facial regions named by the explanation vs the truth's (21 MMTT labels)"
    metrics = (
        *(Metric(f"clue_{k}", label, _CLUE_HELP[k] + ", mean over images", "clue", "mean", headline=(k == "f1"), brief=(k == "f1"),
                 per_image=f"clue_{k}") for k, label in (("precision", "Clue P"), ("recall", "Clue R"), ("f1", "Clue F1"))),
        *(Metric(f"clue_{k}_micro", f"Clue {k} (micro)", _CLUE_HELP[k] + ", on region counts summed over images",
                 "clue", "ratio") for k in ("precision", "recall", "f1")),
    )

    def score(self, inputs: Inputs) -> Scored:
        truth = inputs.truth.regions()[[inputs.truth.index[i] for i in inputs.ids]]
        result = clue_scores(region_matrix(inputs.captions), truth)
        out = Scored(values=dict(result.summary), notes={"clue_policy": CLUE_POLICY})
        counts = result.counts.astype(np.float64)
        for k in ("precision", "recall", "f1"):
            out.samples[f"clue_{k}"] = result.per_image[f"clue_{k}"]
            out.stats[f"clue_{k}"] = mean_statistic(result.per_image[f"clue_{k}"])
            out.stats[f"clue_{k}_micro"] = Statistic(counts, _clue_micro_fn(k))
        return out


register(ClueScorer())
