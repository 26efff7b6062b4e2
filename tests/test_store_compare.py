"""`compare`: a paired bootstrap on stored per-sample scores says whether a difference is real."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.store.compare import PAIRED, UNPAIRED_BLEU, compare
from benchmark.store.db import StoreError
from benchmark.store.submission import submit
from tests.test_store_helpers import World, cli, fake_result, world  # noqa: F401


def _with(world: World, name: str, team: str, seed: int, tweak=None, **kw) -> None:
    def scorer(path, split, request):
        result = fake_result(split, seed=seed, **kw)
        if tweak:
            tweak(result)
        return result

    with world.board() as board:
        submit(board, world.request(world.submission(name, team=team, seed=seed), name), scorer=scorer)


def _compare(world: World, a: str, b: str, **kw) -> dict:
    with world.board() as board:
        return board.db.read(lambda s: compare(s, a, b, "test", n_boot=500, **kw))


def test_clear_difference_is_significant_and_noise_is_not(world: World) -> None:
    _with(world, "good", "A", 1, iou=0.7)
    _with(world, "bad", "B", 2, iou=0.3)
    _with(world, "bad-too", "C", 2, iou=0.3)
    r = _compare(world, "good", "bad")
    iou = r["metrics"]["iou"]
    assert iou["diff"] == pytest.approx(0.4) and iou["a"] == pytest.approx(0.7)
    assert iou["low"] > 0 and iou["significant"] and iou["p_value"] <= 0.01 and iou["method"] == PAIRED
    same = _compare(world, "bad", "bad-too")["metrics"]["iou"]
    assert same["diff"] == 0 and not same["significant"] and same["p_value"] == 1.0
    # per-image CIDEr is tested paired; BLEU (corpus-level, no per-image statistics stored) is not
    assert r["metrics"]["cider"]["method"] == PAIRED
    assert r["metrics"]["bleu_4"]["method"] == UNPAIRED_BLEU and r["metrics"]["bleu_4"]["p_value"] is None


def test_unscored_images_drop_out_and_bleu_is_paired_when_stats_are_kept(world: World) -> None:
    def holes(result) -> None:
        result.per_sample["iou"][0] = np.nan        # a mask the official protocol skipped
        result.per_sample["bleu_stats"] = np.tile([5, 3, 2, 1, 6, 5, 4, 3, 6, 6], (len(result.per_sample["iou"]), 1))

    def stats_b(result) -> None:
        result.per_sample["bleu_stats"] = np.tile([3, 1, 0, 0, 6, 5, 4, 3, 6, 6], (len(result.per_sample["iou"]), 1))

    _with(world, "a", "A", 1, tweak=holes, iou=0.5)
    _with(world, "b", "B", 2, tweak=stats_b, iou=0.5)
    r = _compare(world, "a", "b")
    with world.board() as board:
        from benchmark.store.detail import sample_table

        a_iou = board.db.read(lambda s: sample_table(s, "a", "test"))["iou"].to_numpy()
    assert r["metrics"]["iou"]["a"] == pytest.approx(np.nanmean(a_iou))
    bleu = r["metrics"]["bleu_4"]
    assert bleu["method"] == PAIRED and bleu["diff"] > 0 and bleu["p_value"] is not None


def test_compare_needs_shared_metrics_and_the_cli_prints_json(world: World) -> None:
    _with(world, "loc", "A", 1, iou=0.5, tasks=("localization",))
    _with(world, "txt", "B", 2, cider=1.0, tasks=("interpretation",))
    with pytest.raises(StoreError, match="share no metric"):
        _compare(world, "loc", "txt")
    _with(world, "loc2", "C", 3, iou=0.45, tasks=("localization",))
    out = cli("compare", "loc", "loc2", "--db", world.db, "--split", "test", "--json", "--n-boot", "200")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["a"] == "loc" and doc["n_images"] == len(world.records) and doc["n_boot"] == 200
    assert set(doc["metrics"]) == {"iou", "f1", "precision", "recall"}
    assert {"diff", "low", "high", "p_value", "significant", "method"} <= set(doc["metrics"]["iou"])
    out = cli("compare", "loc", "nope", "--db", world.db, "--split", "test")
    assert out.returncode == 2 and "no entry named 'nope'" in out.stderr


def test_one_pass_equals_paired_bootstrap_per_metric() -> None:
    from benchmark.metrics.stats import paired_bootstrap
    from benchmark.metrics.registry import mean_statistic
    from benchmark.store.compare import paired_many

    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(40)
    a[3] = np.nan
    sa, sb = mean_statistic(a), mean_statistic(b)
    ra, rb, ratio = sa.rows, sb.rows, sa.fn
    many = paired_many({"x": (ra, rb, ratio), "y": (rb, ra, ratio)}, n_boot=300, seed=4, alpha=0.05)
    for name, (p, q) in {"x": (ra, rb), "y": (rb, ra)}.items():
        one = paired_bootstrap(p, q, sum_statistic=ratio, n_boot=300, seed=4)
        assert many[name] == pytest.approx(one)
