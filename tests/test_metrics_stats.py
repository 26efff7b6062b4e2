"""Bootstrap intervals and the paired test: coverage, determinism, chunking, sum statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.metrics.stats import Bootstrap, bootstrap_ci, paired_bootstrap, percentile_interval


def test_interval_covers_the_true_mean_about_as_often_as_promised():
    rng = np.random.default_rng(123)
    hits, sims = 0, 200
    for s in range(sims):
        x = rng.exponential(1.0, size=80)  # true mean 1, skewed
        low, high = bootstrap_ci(x, n_boot=400, seed=s)
        hits += low <= 1.0 <= high
    # Nominal 95%; the percentile interval runs a little short on skewed data at n=80.
    assert 0.87 <= hits / sims <= 0.99


def test_same_seed_same_interval_other_seed_other_interval():
    x = np.random.default_rng(0).normal(size=200)
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)
    assert np.array_equal(Bootstrap(50, 20, seed=3).indices(), Bootstrap(50, 20, seed=3).indices())


def test_chunk_size_changes_memory_never_results():
    rng = np.random.default_rng(1)
    values = rng.random((97, 3))
    ref = Bootstrap(97, 50, seed=5, chunk_size=50)
    ref_idx = ref.indices()
    ref_reps = ref.replicates(values)
    for chunk in (1, 7, 64, 1000):
        boot = Bootstrap(97, 50, seed=5, chunk_size=chunk)
        assert np.array_equal(np.concatenate(list(boot.index_chunks())), ref_idx)
        np.testing.assert_allclose(boot.replicates(values), ref_reps, rtol=1e-13, atol=0)
        assert all(len(w) <= chunk for w in boot.weight_chunks())


def test_weights_are_draw_counts_of_the_indices():
    boot = Bootstrap(30, 10, seed=2, chunk_size=4)
    idx = boot.indices()
    weights = np.concatenate(list(boot.weight_chunks()))
    assert weights.shape == (10, 30) and (weights.sum(axis=1) == 30).all()
    for row, w in zip(idx, weights):
        assert np.array_equal(np.bincount(row, minlength=30), w)
    values = np.arange(30.0)
    np.testing.assert_allclose(boot.replicates(values), values[idx].mean(axis=1), rtol=1e-13)


def bleu1(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1 from summed (matches, candidate tokens, candidate length, reference length)."""
    matches, total, c, r = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    bp = np.where(c < r, np.exp(1 - r / np.maximum(c, 1e-300)), 1.0)
    return matches / total * bp


def test_bleu_like_sum_statistic_by_hand():
    # Image A: 3 of 4 unigrams match, hypothesis 4 tokens, reference 5.
    # Image B: 2 of 2 match, hypothesis 2, reference 2.
    rows = np.array([[3, 4, 4, 5], [2, 2, 2, 2]], dtype=float)
    aa = 6 / 8 * math.exp(1 - 10 / 8)   # {A, A}
    ab = 5 / 6 * math.exp(1 - 7 / 6)    # {A, B}
    bb = 1.0                            # {B, B}
    boot = Bootstrap(2, 200, seed=0)
    reps = boot.replicates(rows, sum_statistic=bleu1)
    idx = np.sort(boot.indices(), axis=1)
    expected = np.where((idx == [0, 0]).all(axis=1), aa, np.where((idx == [1, 1]).all(axis=1), bb, ab))
    np.testing.assert_allclose(reps, expected, rtol=1e-12)
    for v in reps:  # each replicate is one of the three resampled means, up to rounding
        assert min(abs(v - aa), abs(v - ab), abs(v - bb)) < 1e-12
    # The general path (statistic on resampled rows) agrees with the sum path.
    general = boot.replicates(rows, lambda r: bleu1(r.sum(axis=0)[None])[0])
    np.testing.assert_allclose(general, reps, rtol=1e-12)


def test_many_metrics_share_replicates():
    rng = np.random.default_rng(3)
    n = 150
    iou = rng.random(n)
    prf = rng.random((n, 3))
    counts = rng.integers(0, 50, (n, 3)).astype(float)
    micro = lambda s: s[:, 0] / s.sum(axis=1)  # noqa: E731
    boot = Bootstrap(n, 120, seed=9, chunk_size=16)
    many = boot.replicates_many({"iou": iou, "prf": prf, "micro": (counts, micro)})
    np.testing.assert_allclose(many["iou"], boot.replicates(iou), rtol=1e-13)
    np.testing.assert_allclose(many["prf"], boot.replicates(prf), rtol=1e-13)
    np.testing.assert_allclose(many["micro"], boot.replicates(counts, sum_statistic=micro), rtol=1e-13)
    cis = boot.cis({"iou": iou, "prf": prf})
    assert cis["iou"] == pytest.approx(boot.ci(iou), rel=1e-12)  # two code paths: never bit-exact
    low, high = cis["prf"]
    assert low.shape == high.shape == (3,) and (low < prf.mean(axis=0)).all() and (prf.mean(axis=0) < high).all()
    assert boot.replicates_many({}) == {}


def test_percentile_interval_skips_undefined_replicates():
    reps = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])
    assert percentile_interval(reps, 0.5) == (1.5, 2.5)
    both = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    low, high = percentile_interval(both, 0.5)
    assert np.isnan(low[0]) and np.isnan(high[0]) and (low[1], high[1]) == (1.5, 2.5)
    with pytest.raises(ValueError):
        percentile_interval(reps, 1.5)


def test_paired_test_detects_a_real_difference():
    rng = np.random.default_rng(4)
    base = rng.random(300)
    better = np.clip(base + 0.05 + rng.normal(0, 0.05, 300), 0, 1)
    out = paired_bootstrap(better, base, n_boot=500, seed=1)
    assert out["diff"] == pytest.approx(better.mean() - base.mean())
    assert 0 < out["low"] < out["diff"] < out["high"]
    assert out["p_value"] == 1 / 500  # clipped: no replicate crossed zero


def test_paired_test_does_not_detect_a_null_difference():
    same = np.random.default_rng(5).random(100)
    out = paired_bootstrap(same, same.copy(), n_boot=200)
    assert out == {"diff": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    # Two systems with equal expected scores: rejections at 5% stay near 5%.
    rng = np.random.default_rng(6)
    rejected = 0
    for s in range(100):
        shared = rng.random(60)
        a = shared + rng.normal(0, 0.1, 60)
        b = shared + rng.normal(0, 0.1, 60)
        out = paired_bootstrap(a, b, n_boot=200, seed=s)
        rejected += out["p_value"] < 0.05
    assert rejected <= 12


def test_paired_test_with_a_sum_statistic_and_with_a_general_statistic():
    rng = np.random.default_rng(7)
    n = 120
    truth = rng.integers(1, 20, n)
    tp_a = rng.binomial(truth, 0.8)
    tp_b = rng.binomial(truth, 0.5)
    rows_a = np.stack([tp_a, truth], axis=1).astype(float)
    rows_b = np.stack([tp_b, truth], axis=1).astype(float)
    recall = lambda s: s[:, 0] / s[:, 1]  # noqa: E731
    out = paired_bootstrap(rows_a, rows_b, sum_statistic=recall, n_boot=300, seed=2)
    assert out["diff"] == pytest.approx(tp_a.sum() / truth.sum() - tp_b.sum() / truth.sum())
    assert out["low"] > 0 and out["p_value"] == 1 / 300
    general = paired_bootstrap(rows_a, rows_b, lambda r: r[:, 0].sum() / r[:, 1].sum(), n_boot=300, seed=2)
    assert general == pytest.approx(out)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="rows"):
        Bootstrap(10).replicates(np.zeros(9))
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        Bootstrap(0)
    with pytest.raises(ValueError, match="not both"):
        bootstrap_ci(np.zeros(5), np.mean, sum_statistic=lambda s: s[:, 0])


def test_full_size_is_fast_and_small():
    import time

    n = 21_679
    values = np.random.default_rng(8).random((n, 4))
    t0 = time.process_time()   # CPU seconds: a guard against a quadratic path, not a speed target
    boot = Bootstrap(n, 1000, seed=0)
    cis = boot.cis({"all": values})
    assert time.process_time() - t0 < 20
    low, high = cis["all"]
    assert ((high - low) < 0.02).all()
