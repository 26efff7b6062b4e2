"""Mask metrics against scikit-learn and against the official evaluate_metrics.py rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score, roc_auc_score

from benchmark.metrics.mask import (
    EMPTY_TRUTH_POLICY,
    POLICIES,
    POLICY_TEXT,
    MaskTable,
    auc_from_histograms,
    confusion,
    grey_histograms,
    image_auc,
    micro_scores,
    per_image_scores,
    summarize,
)
from tests.conftest import assert_close


def official_rule(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """The per-image formulas of the official evaluate_metrics.py, restated."""
    inter = np.logical_and(pred, truth).sum()
    union = np.logical_or(pred, truth).sum()
    ps, ts = pred.sum(), truth.sum()
    iou = 1.0 if union == 0 else float(inter / union)
    precision = float(inter / ps) if ps > 0 else (1.0 if ts == 0 else 0.0)
    recall = float(inter / ts) if ts > 0 else (1.0 if ps == 0 else 0.0)
    return iou, precision, recall


def random_cases(seed: int = 0, n: int = 60, size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random masks of varied density, plus every empty/full combination."""
    rng = np.random.default_rng(seed)
    empty, full = np.zeros((size, size), bool), np.ones((size, size), bool)
    some = rng.random((size, size)) < 0.3
    cases = [(a, b) for a in (empty, full, some) for b in (empty, full, some)]
    for _ in range(n):
        pd, td = rng.choice([0.0, 0.02, 0.3, 0.7]), rng.choice([0.0, 0.02, 0.3, 0.7])
        cases.append((rng.random((size, size)) < pd, rng.random((size, size)) < td))
    return cases


def test_confusion_counts():
    pred = np.array([[1, 1, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 1], [0, 0, 0]], bool)
    assert confusion(pred, truth) == (1, 1, 1, 3)
    assert all(type(v) is int for v in confusion(pred, truth))
    with pytest.raises(ValueError):
        confusion(pred, truth[:, :2])


@pytest.mark.parametrize("policy", POLICIES)
def test_iou_and_f1_match_sklearn_zero_division_one_under_both_policies(policy):
    cases = random_cases()
    counts = np.array([confusion(p, t) for p, t in cases])
    scores = per_image_scores(counts, policy)
    for i, (p, t) in enumerate(cases):
        assert scores["iou"][i] == pytest.approx(jaccard_score(t.ravel(), p.ravel(), zero_division=1.0), abs=1e-12)
        assert scores["f1"][i] == pytest.approx(f1_score(t.ravel(), p.ravel(), zero_division=1.0), abs=1e-12)


def test_sklearn_policy_matches_sklearn_precision_recall():
    cases = random_cases(seed=1)
    scores = per_image_scores(np.array([confusion(p, t) for p, t in cases]), "sklearn")
    for i, (p, t) in enumerate(cases):
        assert scores["precision"][i] == pytest.approx(precision_score(t.ravel(), p.ravel(), zero_division=1.0), abs=1e-12)
        assert scores["recall"][i] == pytest.approx(recall_score(t.ravel(), p.ravel(), zero_division=1.0), abs=1e-12)


def test_official_policy_matches_official_rules_and_f1_is_their_harmonic_mean():
    cases = random_cases(seed=2)
    scores = per_image_scores(np.array([confusion(p, t) for p, t in cases]), "official")
    for i, (p, t) in enumerate(cases):
        iou, prec, rec = official_rule(p, t)
        assert (scores["iou"][i], scores["precision"][i], scores["recall"][i]) == pytest.approx((iou, prec, rec), abs=1e-12)
        harmonic = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
        assert scores["f1"][i] == pytest.approx(harmonic, abs=1e-12)


def test_policies_differ_only_on_precision_recall_of_one_sided_empty_images():
    n = 100
    rows = np.array([[0, 0, 0, n],   # both empty
                     [0, 0, 5, n],   # empty prediction, non-empty truth
                     [0, 5, 0, n],   # empty truth, non-empty prediction
                     [3, 1, 2, n]])
    off, skl = per_image_scores(rows, "official"), per_image_scores(rows, "sklearn")
    assert off["iou"].tolist() == skl["iou"].tolist() == [1.0, 0.0, 0.0, 0.5]
    assert off["f1"].tolist() == skl["f1"].tolist() == pytest.approx([1.0, 0.0, 0.0, 6 / 9])
    assert off["precision"].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.75])
    assert off["recall"].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.6])
    assert skl["precision"].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.75])
    assert skl["recall"].tolist() == pytest.approx([1.0, 0.0, 1.0, 0.6])


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        per_image_scores(np.zeros((1, 4)), "lenient")


def test_policy_text_is_stated():
    assert EMPTY_TRUTH_POLICY == POLICY_TEXT["official"]
    assert "empty truth and empty prediction scores 1" in EMPTY_TRUTH_POLICY
    assert set(POLICY_TEXT) == set(POLICIES)


def test_micro_scores_match_sklearn_on_pooled_pixels():
    cases = random_cases(seed=3, n=20)
    counts = np.array([confusion(p, t) for p, t in cases])
    allp = np.concatenate([p.ravel() for p, _ in cases])
    allt = np.concatenate([t.ravel() for _, t in cases])
    micro = micro_scores(counts)
    assert micro["iou_micro"] == pytest.approx(jaccard_score(allt, allp), abs=1e-12)
    assert micro["f1_micro"] == pytest.approx(f1_score(allt, allp), abs=1e-12)
    assert micro["precision_micro"] == pytest.approx(precision_score(allt, allp), abs=1e-12)
    assert micro["recall_micro"] == pytest.approx(recall_score(allt, allp), abs=1e-12)


def test_pooled_auc_from_histograms_is_exact():
    rng = np.random.default_rng(4)
    greys, truths = [], []
    for _ in range(8):
        truth = rng.random((24, 24)) < rng.uniform(0.05, 0.6)
        # Coarse levels give many ties; the signal makes the AUC far from 1/2.
        grey = np.clip(rng.integers(0, 12, truth.shape) * 20 + truth * rng.integers(0, 60, truth.shape), 0, 255)
        greys.append(grey.astype(np.uint8))
        truths.append(truth)
    pos = np.zeros(256, np.int64)
    neg = np.zeros(256, np.int64)
    for g, t in zip(greys, truths):
        p, n = grey_histograms(g, t)
        assert p.sum() == t.sum() and n.sum() == (~t).sum()
        pos += p
        neg += n
    expected = roc_auc_score(np.concatenate([t.ravel() for t in truths]), np.concatenate([g.ravel() for g in greys]))
    assert abs(auc_from_histograms(pos, neg) - expected) < 1e-12
    for g, t in zip(greys, truths):
        assert abs(image_auc(g, t) - roc_auc_score(t.ravel(), g.ravel())) < 1e-12


def test_binary_fast_path_gives_the_same_histograms_as_the_general_path():
    rng = np.random.default_rng(5)
    truth = rng.random((32, 32)) < 0.4
    binary = np.where(rng.random((32, 32)) < 0.5, 255, 0).astype(np.uint8)
    binary[0, 0] = 255
    almost = binary.copy()
    almost[0, 0] = 254  # one odd level forces the general path
    p1, n1 = grey_histograms(binary, truth)
    p2, n2 = grey_histograms(almost, truth)
    p2[255] += p2[254]
    n2[255] += n2[254]
    p2[254] = n2[254] = 0
    assert p1.tolist() == p2.tolist() and n1.tolist() == n2.tolist()
    assert abs(image_auc(binary, truth) - roc_auc_score(truth.ravel(), binary.ravel())) < 1e-12


def test_auc_is_nan_when_truth_has_one_class_and_stays_exact_for_huge_counts():
    grey = np.full((8, 8), 200, np.uint8)
    assert np.isnan(image_auc(grey, np.zeros((8, 8), bool)))
    assert np.isnan(image_auc(grey, np.ones((8, 8), bool)))
    pos = np.zeros(256, np.int64)
    neg = np.zeros(256, np.int64)
    pos[200], pos[10] = 3_000_000_001, 1
    neg[10], neg[0] = 2_999_999_999, 2
    # Exact: (3e9+1)*(3e9+1) wins, 1*(3e9-1) ties -> half, over (3e9+2)*(3e9+1).
    wins = 3_000_000_001 * 3_000_000_001 + 1 * 2
    expected = (2 * wins + 2_999_999_999) / (2 * 3_000_000_002 * 3_000_000_001)
    assert auc_from_histograms(pos, neg) == pytest.approx(expected, rel=1e-13, abs=0)


def test_mask_table_end_to_end_and_merge():
    rng = np.random.default_rng(6)
    cases = random_cases(seed=6, n=10)
    whole, left, right = MaskTable(), MaskTable(), MaskTable()
    for i, (p, t) in enumerate(cases):
        grey = np.where(p, rng.integers(128, 256, p.shape), rng.integers(0, 128, p.shape)).astype(np.uint8)
        whole.add(grey, t, image_id=f"img{i}")
        (left if i % 2 == 0 else right).add(grey, t, image_id=f"img{i}")
    merged = left.merge(right)
    assert len(whole) == len(cases) and whole.ids[0] == "img0"
    order = [int(i[3:]) for i in merged.ids]
    assert np.array_equal(merged.counts, whole.counts[order])
    a, b = whole.summary(), merged.summary()
    assert a == pytest.approx(b, nan_ok=True)

    counts = np.array([confusion(p, t) for p, t in cases])
    assert np.array_equal(whole.counts, counts)
    off = per_image_scores(counts)
    assert a["iou"] == pytest.approx(off["iou"].mean())
    assert a["f1"] == pytest.approx(off["f1"].mean())
    defined = ~np.isnan(whole.image_aucs)
    assert defined.sum() < len(cases)  # empty/full truths have no AUC
    assert a["auc_image_mean"] == pytest.approx(whole.image_aucs[defined].mean())
    assert set(a) == {"iou", "precision", "recall", "f1", "iou_micro", "f1_micro",
                      "precision_micro", "recall_micro", "auc", "auc_image_mean"}
    assert set(whole.per_image()) == {"iou", "precision", "recall", "f1", "auc"}


def test_boolean_prediction_is_read_as_0_255():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    pred = np.zeros((4, 4), bool)
    pred[:1] = True
    t1, t2 = MaskTable(), MaskTable()
    t1.add(pred, truth)
    t2.add(pred.astype(np.uint8) * 255, truth)
    assert np.array_equal(t1.counts, t2.counts)
    assert_close(t1.summary(), t2.summary())
    assert t1.summary()["auc"] == pytest.approx(roc_auc_score(truth.ravel(), pred.ravel()))


def test_summarize_of_nothing_is_nan_not_an_error():
    out = summarize(np.zeros((0, 4)))
    assert all(np.isnan(v) for v in out.values())


@pytest.mark.parametrize("truth_hw,pred_hw", [
    ((512, 512), (224, 224)),   # the usual case: each prediction pixel covers 2 or 3 truth rows/columns
    ((100, 70), (33, 41)),
    ((50, 60), (120, 90)),      # prediction larger than the truth: pixels covering no truth pixel
    ((64, 64), (64, 200)),      # one axis equal, the other upsampled
    ((37, 53), (200, 13)),      # one axis up, the other down
    ((7, 5), (1, 1)),
    ((300, 200), (301, 199)),
])
def test_counting_at_prediction_size_equals_resizing_to_the_truth(truth_hw, pred_hw):
    """`count_mask` through `TruthBlocks` gives the counts and grey histograms of resizing the
    prediction to the truth size with PIL's NEAREST (the official rule), for any pair of sizes."""
    from PIL import Image

    from benchmark.metrics.mask import TruthBlocks, count_mask

    rng = np.random.default_rng(sum(truth_hw + pred_hw))
    for density in (0.0, 0.05, 0.5, 1.0):
        truth = rng.random(truth_hw) < density
        grey = (rng.random(pred_hw) * 256).astype(np.uint8)
        got = count_mask(grey, TruthBlocks.of(truth, pred_hw))
        big = np.asarray(Image.fromarray(grey).resize(truth_hw[::-1], Image.NEAREST))
        assert (got.tp, got.n_pred, got.positives) == (int((big[truth] > 127).sum()), int((big > 127).sum()), int(truth.sum()))
        pos, neg = got.histograms()
        assert (pos == np.bincount(big[truth], minlength=256)).all()
        assert (neg == np.bincount(big[~truth], minlength=256)).all()
        binary = np.where(grey > 127, 255, 0).astype(np.uint8)   # the 0/255 path (no histograms)
        got = count_mask(binary, TruthBlocks.of(truth, pred_hw))
        assert got.pos_hist is None
        assert (got.tp, got.n_pred) == (int((big[truth] > 127).sum()), int((big > 127).sum()))
        if pred_hw == truth_hw:   # from the truth's packed bits, as the truth cache does
            same = TruthBlocks.same_size(np.packbits(truth), truth_hw, int(truth.sum()))
            assert count_mask(grey, same).confusion == count_mask(grey, TruthBlocks.of(truth)).confusion
