"""Clue scores: hand cases, empty cases, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from benchmark.data.regions import REGION_WORDS, REGIONS, mentioned_regions
from benchmark.metrics.clue import (
    CLUE_POLICY,
    ClueResult,
    clue_counts,
    clue_micro,
    clue_scores,
    per_region_scores,
    region_matrix,
    score_texts,
)


def regions_in(row: np.ndarray) -> set[str]:
    return {REGIONS[i] for i in np.flatnonzero(row)}


def test_synonyms_become_regions():
    m = region_matrix(["The nostrils look smeared", "buccal blur", None, ""])
    assert regions_in(m[0]) == {"nose"}
    assert regions_in(m[1]) == {"mouth", "cheek"}
    assert not m[2].any() and not m[3].any()
    assert m.shape == (4, 21) and m.dtype == bool


def test_region_matrix_agrees_with_the_reference_rule():
    rng = np.random.default_rng(0)
    vocab = [w for words in REGION_WORDS.values() for w in words]
    vocab += ["eyeliner", "noses-", "LIPS", "Hair,", "facial", "oral", "brow-line", "skin's", "x_eye",
              "eye2", "cavity", "strands.", "é", "ſkin", "Ear", "\u212aeloid"]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(0, 8))) for _ in range(400)]
    texts += ["facial hair", "Facial Hair only", "oral cavity", "oral  cavity", "the eye-brow"]
    m = region_matrix(texts)
    for text, row in zip(texts, m):
        assert regions_in(row) == set(mentioned_regions(text)), text


def test_hand_computed_case():
    res = score_texts(
        ["The nostrils look smeared", "buccal area is blurry", "nothing odd", "the eyes"],
        ["The nose and the lips", "the cheek", "no region named", "hair"],
    )
    assert isinstance(res, ClueResult)
    # image 0: P={nose}, T={nose, lip} -> P 1, R 1/2, F1 2/3
    # image 1: P={mouth, cheek}, T={cheek} -> P 1/2, R 1, F1 2/3
    # image 2: both empty -> 1, 1, 1
    # image 3: P={eye}, T={hair} -> 0, 0, 0
    assert res.per_image["clue_precision"].tolist() == pytest.approx([1, 0.5, 1, 0])
    assert res.per_image["clue_recall"].tolist() == pytest.approx([0.5, 1, 1, 0])
    assert res.per_image["clue_f1"].tolist() == pytest.approx([2 / 3, 2 / 3, 1, 0])
    assert res.counts.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0], [0, 1, 1]]
    s = res.summary
    assert s["clue_precision"] == pytest.approx(2.5 / 4)
    assert s["clue_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 4)
    # summed tp=2, fp=2, fn=2
    assert s["clue_precision_micro"] == s["clue_recall_micro"] == s["clue_f1_micro"] == pytest.approx(0.5)
    assert res.per_region["nose"] == {"support": 1, "predicted": 1, "tp": 1, "precision": 1.0,
                                      "recall": 1.0, "f1": 1.0}
    lip = res.per_region["lip"]
    assert (lip["support"], lip["predicted"], np.isnan(lip["precision"]), lip["recall"], lip["f1"]) == (1, 0, True, 0.0, 0.0)
    assert np.isnan(res.per_region["dimple"]["f1"])


def test_empty_cases():
    empty, some = np.zeros((1, 21), bool), np.zeros((1, 21), bool)
    some[0, 4] = True
    for pred, truth, expected in ((empty, empty, 1.0), (some, empty, 0.0), (empty, some, 0.0), (some, some, 1.0)):
        res = clue_scores(pred, truth)
        for key in ("clue_precision", "clue_recall", "clue_f1"):
            assert res.per_image[key][0] == expected
            assert res.summary[key] == expected
            assert res.summary[key + "_micro"] == expected
    none = clue_scores(np.zeros((0, 21), bool), np.zeros((0, 21), bool))
    assert all(np.isnan(v) for v in none.summary.values())
    assert "exactly one does, 0" in CLUE_POLICY


def random_matrices(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    density = rng.choice([0.0, 0.05, 0.15, 0.4], size=(n, 1))
    truth = rng.random((n, 21)) < density
    pred = rng.random((n, 21)) < rng.choice([0.0, 0.05, 0.15, 0.4], size=(n, 1))
    pred[:20] = truth[:20]  # some exact hits
    return pred, truth


def test_samples_average_matches_sklearn():
    pred, truth = random_matrices(1)
    # F1 agrees with scikit-learn's zero_division=1.0 under the default policy ...
    p, r, f, _ = precision_recall_fscore_support(truth, pred, average="samples", zero_division=1.0)
    res = clue_scores(pred, truth)
    assert res.summary["clue_f1"] == pytest.approx(f, abs=1e-12)
    # ... and where both sets are non-empty, precision and recall do too.
    both = truth.any(axis=1) & pred.any(axis=1)
    p2, r2, _, _ = precision_recall_fscore_support(truth[both], pred[both], average="samples")
    assert res.per_image["clue_precision"][both].mean() == pytest.approx(p2, abs=1e-12)
    assert res.per_image["clue_recall"][both].mean() == pytest.approx(r2, abs=1e-12)
    # The "sklearn" policy reproduces all three.
    sk = clue_scores(pred, truth, policy="sklearn").summary
    assert (sk["clue_precision"], sk["clue_recall"], sk["clue_f1"]) == pytest.approx((p, r, f), abs=1e-12)


def test_micro_and_per_region_match_sklearn():
    pred, truth = random_matrices(2)
    res = clue_scores(pred, truth)
    p, r, f, _ = precision_recall_fscore_support(truth, pred, average="micro")
    s = res.summary
    assert (s["clue_precision_micro"], s["clue_recall_micro"], s["clue_f1_micro"]) == pytest.approx((p, r, f), abs=1e-12)
    pr, rr, fr, support = precision_recall_fscore_support(truth, pred, average=None, zero_division=np.nan)
    table = per_region_scores(pred, truth)
    assert list(table) == list(REGIONS)
    for i, region in enumerate(REGIONS):
        row = table[region]
        assert row["support"] == support[i] and row["predicted"] == pred[:, i].sum()
        np.testing.assert_allclose([row["precision"], row["recall"], row["f1"]], [pr[i], rr[i], fr[i]], atol=1e-12)


def test_region_never_predicted_nor_true_is_nan_and_predicted_never_true_has_f1_zero():
    pred = np.zeros((3, 21), bool)
    truth = np.zeros((3, 21), bool)
    pred[0, 0] = True
    table = per_region_scores(pred, truth)
    assert table["eye"]["precision"] == 0.0 and np.isnan(table["eye"]["recall"]) and table["eye"]["f1"] == 0.0
    assert all(np.isnan(table["nose"][k]) for k in ("precision", "recall", "f1"))


def test_micro_is_vectorized_over_replicate_sums():
    pred, truth = random_matrices(3, n=50)
    counts = clue_counts(pred, truth)
    sums = np.stack([counts.sum(axis=0), counts[:10].sum(axis=0), np.zeros(3)])
    out = clue_micro(sums)
    assert out["clue_f1_micro"].shape == (3,)
    assert out["clue_f1_micro"][0] == pytest.approx(clue_scores(pred, truth).summary["clue_f1_micro"])
    assert out["clue_f1_micro"][2] == 1.0  # nothing named anywhere: both empty


def test_shape_errors():
    with pytest.raises(ValueError):
        clue_scores(np.zeros((2, 21), bool), np.zeros((3, 21), bool))
    with pytest.raises(ValueError):
        score_texts(["a"], ["a", "b"])
