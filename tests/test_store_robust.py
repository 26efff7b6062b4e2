"""Robustness on the board: variant splits registered with their base, variant submissions linked
to the entry's clean one (and never crossing boards), and the paired drop statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from benchmark.data.split import load_split
from benchmark.metrics.text import bleu_from_totals
from benchmark.store.compare import paired_specs
from benchmark.store.db import StoreError
from benchmark.store.models import Evaluation, Split, Submission
from benchmark.store.ranking import leaderboard
from benchmark.store.robust import RobustRow, paired_drops, rank_rows, robustness
from benchmark.scoring.options import ScoreOptions
from benchmark.store.submission import SubmitRequest, submit
from tests.conftest import write_submission
from tests.test_store_helpers import FAST, World, cli, fake_scorer, rows, snapshot, world  # noqa: F401

VARIANTS = ("downscale", "blur", "both")


# ------------------------------------------------------------------- the paired drop statistics
def _direct_drop_ci(clean: np.ndarray, degraded: np.ndarray, stat, n_boot: int, seed: int):
    """The paired bootstrap written out: replicate b draws indices with the generator
    SeedSequence(seed, spawn_key=(b,)) and evaluates the statistic on both runs with them."""
    n = len(clean)
    drops, rels = [], []
    for b in range(n_boot):
        idx = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b,))).integers(0, n, size=n)
        c, d = stat(clean[idx]), stat(degraded[idx])
        drops.append(c - d)
        rels.append((c - d) / c if c != 0 else np.nan)
    drops, rels = np.array(drops), np.array(rels)
    return (np.quantile(drops, [0.025, 0.975]), np.nanquantile(rels, [0.025, 0.975]),
            stat(clean) - stat(degraded), (stat(clean) - stat(degraded)) / stat(clean))


def _nanmean(values: np.ndarray) -> float:
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


def test_paired_drop_ci_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(3)
    n = 57
    iou_clean = rng.uniform(0.2, 0.9, n)
    iou_deg = np.clip(iou_clean - rng.uniform(0.0, 0.3, n), 0, 1)
    iou_clean[[4, 20]] = np.nan          # images a metric left unscored drop out of both means
    iou_deg[[7]] = np.nan
    cider_clean, cider_deg = rng.uniform(0, 2, n), rng.uniform(0, 1.5, n)
    counts = rng.integers(1, 12, (n, 10)).astype(float)    # per-image BLEU sufficient statistics
    counts_deg = np.maximum(counts - rng.integers(0, 3, (n, 10)), 0)
    clean = {"image_id": [f"i{k}" for k in range(n)], "iou": iou_clean, "cider": cider_clean, "bleu_stats": counts}
    degraded = {"image_id": list(clean["image_id"]), "iou": iou_deg, "cider": cider_deg, "bleu_stats": counts_deg}
    ids = np.arange(n)
    specs, unpaired = paired_specs(clean, degraded, ids, ids, ["iou", "cider", "bleu_4"])
    assert unpaired == [] and set(specs) == {"iou", "cider", "bleu_4"}
    drops = paired_drops(specs, n_boot=300, seed=11)
    for name, a, b, stat in (("iou", iou_clean, iou_deg, _nanmean), ("cider", cider_clean, cider_deg, _nanmean),
                             ("bleu_4", counts, counts_deg, lambda rows: float(bleu_from_totals(rows.sum(axis=0)[None])[0, 3]))):
        drop_ci, rel_ci, drop, rel = _direct_drop_ci(a, b, stat, 300, 11)
        got = drops[name]
        assert got.drop == pytest.approx(drop, abs=1e-9) and got.rel_drop == pytest.approx(rel, abs=1e-9)
        np.testing.assert_allclose(got.drop_ci, drop_ci, atol=1e-9)
        np.testing.assert_allclose(got.rel_ci, rel_ci, atol=1e-9)
        assert got.drop_ci[0] < got.drop < got.drop_ci[1]


def test_relative_drop_of_a_zero_clean_score_is_undefined_and_unranked() -> None:
    zero, some = np.zeros(10), np.full(10, 0.3)
    ids = np.arange(10)
    specs, _ = paired_specs({"iou": zero}, {"iou": zero}, ids, ids, ["iou"])
    d = paired_drops(specs, n_boot=50)["iou"]
    assert d.drop == 0 and d.rel_drop is None and d.rel_ci == (None, None)
    specs, _ = paired_specs({"iou": some}, {"iou": some * 0.5}, ids, ids, ["iou"])
    half = paired_drops(specs, n_boot=50)["iou"]
    assert half.rel_drop == pytest.approx(0.5)
    base = dict(team="t", baseline=False, tasks=["localization"], clean={"iou": 0.3}, clean_ci95={})
    robust = RobustRow(entry="robust", board_rank=2, variants={v: {"iou": half} for v in VARIANTS}, **base)
    empty = RobustRow(entry="empty", board_rank=1, variants={v: {"iou": d} for v in VARIANTS},
                      **{**base, "clean": {"iou": 0.0}})
    partial = RobustRow(entry="partial", board_rank=3, variants={"blur": {"iou": half}}, **base)
    none = RobustRow(entry="none", board_rank=4, **base)
    ordered = rank_rows([none, partial, empty, robust])
    assert [r.entry for r in ordered] == ["robust", "empty", "partial", "none"]
    assert robust.rank == 1 and robust.score == pytest.approx(0.5)
    assert empty.rank is None and any("clean score is 0" in n for n in empty.notes)
    assert (partial.status, none.status) == ("partly evaluated", "not evaluated")


# ----------------------------------------------------------- registration and linked submissions
def _variant_submission(world: World, variant: str, name: str, *, seed: int = 1, split: str | None = None) -> Path:
    """A submission laid out as the harness writes it for the variant split (masks under its paths)."""
    records = json.loads((world.data / f"test-mutilabel_{variant}.json").read_text())
    manifest = {"model": name, "team": "team-a", "split": split or f"test_{variant}"}
    return write_submission(world.root / "subs" / f"{name}-{variant}-{seed}", records, seed=seed, manifest=manifest)


@pytest.fixture
def robust_world(world: World) -> World:
    out = cli("split", "add", "--data", world.data, "--split", "test", "--robust", "--db", world.db, "--quiet")
    assert out.returncode == 0, out.stderr
    return world


def test_split_add_robust_creates_and_registers_the_variants(robust_world: World) -> None:
    world = robust_world
    for v in VARIANTS:
        assert (world.data / f"test-mutilabel_{v}.json").is_file()
    with world.board() as board:
        splits = {s.name: s for s in rows(board, Split)}
    assert set(splits) == {"test", "test_downscale", "test_blur", "test_both"}
    base = splits["test"]
    assert base.base_split_id is None and base.variant is None
    for v in VARIANTS:
        s = splits[f"test_{v}"]
        assert (s.base_split_id, s.variant, s.n_items) == (base.id, v, base.n_items)
        assert s.fingerprint == load_split(world.data, f"test_{v}").fingerprint
    assert len({s.fingerprint for s in splits.values()}) == 4   # each its own fingerprint
    again = cli("split", "add", "--data", world.data, "--split", "test", "--robust", "--db", world.db, "--quiet")
    assert again.returncode == 0 and again.stdout.count("unchanged") == 4
    bad = cli("split", "add", "--data", world.data, "--split", "test_blur", "--robust", "--db", world.db)
    assert bad.returncode == 2 and "clean split" in bad.stderr


def test_variant_submission_is_linked_to_the_clean_one_and_never_crosses_boards(robust_world: World) -> None:
    world = robust_world
    blur = _variant_submission(world, "blur", "model-a")
    with world.board() as board:
        before = snapshot(board)
        with pytest.raises(StoreError, match="submit the clean run first"):
            submit(board, world.request(blur, "model-a", variant="blur"))
        after = snapshot(board)
        assert {k: v for k, v in after.items() if k != "submissions"} == \
               {k: v for k, v in before.items() if k != "submissions"}
        assert [r.status for r in rows(board, Submission)] == ["failed"]

        clean_path = world.submission("model-a")
        clean = submit(board, world.request(clean_path, "model-a"))
        # clean predictions to a variant, variant predictions to the clean board: refused before scoring
        with pytest.raises(StoreError, match="made for split 'test_blur'"):
            submit(board, world.request(blur, "model-a"))
        tagged_clean = write_submission(world.root / "subs" / "tagged", world.records, seed=3,
                                        manifest={"model": "m", "team": "team-a", "split": "test"})
        with pytest.raises(StoreError, match="made for split 'test'"):
            submit(board, world.request(tagged_clean, "model-a", variant="both"))
        with pytest.raises(StoreError, match="names no split"):   # an unlabelled run is not taken as a variant
            submit(board, world.request(clean_path, "model-a", variant="both"))

        out = submit(board, world.request(blur, "model-a", variant="blur"))
        assert out.split == "test_blur" and not out.duplicate
        via_name = submit(board, SubmitRequest(path=_variant_submission(world, "both", "model-a"), data=world.data,
                                               name="model-a", split="test_both",
                                               options=ScoreOptions(**FAST)))
        assert via_name.split == "test_both"

        def check(session) -> None:
            sub = session.get(Submission, out.submission_id)
            assert sub.clean_submission_id == clean.submission_id and sub.split.name == "test_blur"
            ev = session.scalar(select(Evaluation).where(Evaluation.submission_id == out.submission_id))
            assert ev.dataset_fingerprint == load_split(world.data, "test_blur").fingerprint
            board_rows = leaderboard(session, "test")
            assert [(r.entry, r.submission_id) for r in board_rows] == [("model-a", clean.submission_id)]
            assert [r.submission_id for r in leaderboard(session, "test_blur")] == [out.submission_id]

        board.db.read(check)
        # another team's entry name cannot be borrowed for a variant
        with pytest.raises(StoreError, match="belongs to team"):
            submit(board, world.request(blur, "model-a", variant="blur", team="other"))


def test_variant_truth_must_match_the_registered_fingerprint(robust_world: World) -> None:
    world = robust_world
    with world.board() as board:
        submit(board, world.request(world.submission("model-a"), "model-a"))
        path = world.data / "test-mutilabel_blur.json"
        records = json.loads(path.read_text())
        records[0]["caption"] += " changed"
        path.write_text(json.dumps(records))
        with pytest.raises(StoreError, match="fingerprint"):
            submit(board, world.request(_variant_submission(world, "blur", "model-a"), "model-a", variant="blur"))


def test_cli_submit_variant_and_robust_leaderboard(robust_world: World) -> None:
    world = robust_world
    assert cli("submit", world.submission("model-a"), "--data", world.data, "--db", world.db, "--name", "model-a",
               "--no-meteor", "--n-boot", "50").returncode == 0
    assert cli("submit", world.submission("model-b", team="team-b", seed=5), "--data", world.data, "--db", world.db,
               "--name", "model-b", "--no-meteor", "--n-boot", "50").returncode == 0
    for v in VARIANTS:
        out = cli("submit", _variant_submission(world, v, "model-a", seed=7), "--data", world.data, "--db", world.db,
                  "--name", "model-a", "--variant", v, "--no-meteor", "--n-boot", "50", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["split"] == f"test_{v}"
    out = cli("leaderboard", "--db", world.db, "--split", "test", "--robust", "--json", "--n-boot", "100")
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    assert table["variant_splits"] == {v: f"test_{v}" for v in sorted(VARIANTS)}
    by_entry = {r["entry"]: r for r in table["rows"]}
    a, b = by_entry["model-a"], by_entry["model-b"]
    assert b["status"] == "not evaluated" and b["rank"] is None and b["mean_rel_drop"] is None
    assert all(b["variants"][v] == "not evaluated" for v in VARIANTS)
    assert a["status"] == "ranked" and a["rank"] == 1
    for v in VARIANTS:
        iou = a["variants"][v]["iou"]
        assert iou["clean"] == pytest.approx(a["clean"]["iou"])
        assert iou["drop"] == pytest.approx(iou["clean"] - iou["degraded"], abs=1e-12)
        assert iou["drop_ci95"][0] <= iou["drop"] <= iou["drop_ci95"][1]
        assert iou["paired"] and a["variants"][v]["bleu_4"]["paired"]
    text = cli("leaderboard", "--db", world.db, "--split", "test", "--robust", "--n-boot", "100")
    assert text.returncode == 0 and "not evaluated" in text.stdout and "rule: ranked by the mean relative drop" in text.stdout
    assert cli("submit", world.submission("model-a"), "--data", world.data, "--db", world.db, "--name", "model-a",
               "--variant", "sharpen").returncode == 2
    listed = cli("split", "list", "--db", world.db)
    assert "blur variant of test" in listed.stdout
    rescored = cli("rescore", "--data", world.data, "--db", world.db, "--json")   # variants re-score like any split
    assert rescored.returncode == 0, rescored.stderr
    assert {i["split"] for i in json.loads(rescored.stdout)["items"]} >= {"test", "test_blur"}


def test_a_newer_clean_submission_unlinks_the_old_variant_runs(robust_world: World) -> None:
    world = robust_world
    with world.board() as board:
        submit(board, world.request(world.submission("model-a"), "model-a"), scorer=fake_scorer(iou=0.6))
        for v in VARIANTS:
            submit(board, world.request(_variant_submission(world, v, "model-a"), "model-a", variant=v),
                   scorer=fake_scorer(iou=0.3, seed=2))
        table = board.db.read(lambda s: robustness(s, "test", n_boot=100))
        (row,) = table.rows
        assert row.rank == 1 and row.variants["blur"]["iou"].rel_drop == pytest.approx(0.5, abs=1e-6)
        submit(board, world.request(world.submission("model-a", seed=9), "model-a"), scorer=fake_scorer(iou=0.7))
        (row,) = board.db.read(lambda s: robustness(s, "test", n_boot=100)).rows
        assert row.status == "not evaluated" and row.rank is None
        assert any("resubmit the variant runs" in n for n in row.notes)


def test_submit_robust_takes_the_clean_run_and_the_variant_runs_beside_it(robust_world: World) -> None:
    world = robust_world
    clean = world.submission("model-r")
    for k, v in enumerate(VARIANTS):   # laid out as `mmtt run --robust` writes them
        records = json.loads((world.data / f"test-mutilabel_{v}.json").read_text())
        write_submission(clean.with_name(f"{clean.name}_{v}"), records, seed=20 + k,
                         manifest={"model": "model-r", "team": "team-a", "split": f"test_{v}"})
    out = cli("submit", clean, "--data", world.data, "--db", world.db, "--name", "model-r", "--robust",
              "--no-meteor", "--n-boot", "50", "--json")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [r["split"] for r in results] == ["test", "test_downscale", "test_blur", "test_both"]
    again = json.loads(cli("submit", clean, "--data", world.data, "--db", world.db, "--name", "model-r", "--robust",
                           "--no-meteor", "--n-boot", "50", "--json").stdout)
    assert all(r["duplicate"] for r in again)
    # fewer metrics on the variants only: the clean run is unchanged, the variants are re-scored without clue_f1
    fewer = json.loads(cli("submit", clean, "--data", world.data, "--db", world.db, "--name", "model-r", "--robust",
                           "--no-meteor", "--n-boot", "50", "--skip-on-variants", "clue_f1", "--json").stdout)
    assert [r["duplicate"] for r in fewer] == [True, False, False, False]
    assert "clue_f1" in fewer[0]["metrics"] and all("clue_f1" not in r["metrics"] for r in fewer[1:])
    table = json.loads(cli("leaderboard", "--db", world.db, "--split", "test", "--robust", "--json", "--n-boot",
                           "50").stdout)
    (row,) = [r for r in table["rows"] if r["entry"] == "model-r"]
    assert "clue_f1" in row["clean"] and "clue_f1" not in row["variants"]["blur"] and "iou" in row["variants"]["blur"]
    assert cli("submit", clean, "--data", world.data, "--db", world.db, "--name", "model-r",
               "--skip-on-variants", "meteor").returncode == 2
    lonely = world.submission("model-s", seed=4)
    bad = cli("submit", lonely, "--data", world.data, "--db", world.db, "--name", "model-s", "--robust")
    assert bad.returncode == 2 and "no variant run beside it" in bad.stderr
