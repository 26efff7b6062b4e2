"""`rescore`: recompute from the kept files, stamp the current metric version, report what moved;
running it again changes nothing."""

from __future__ import annotations

import pytest

import benchmark.metrics.mask as mask_metrics
import benchmark.scoring.score as score_module
from benchmark.store.db import StoreError
from benchmark.store.models import Evaluation, SampleScores, Score
from benchmark.store.rescore import format_report, rescore
from benchmark.store.submission import submit
from tests.test_store_helpers import World, cli, rows, world  # noqa: F401


def _two_entries(world: World) -> None:
    with world.board() as board:
        submit(board, world.request(world.submission("alpha", team="A", seed=1), "alpha"))
        submit(board, world.request(world.submission("beta", team="B", seed=2), "beta"))


def _metric_change(monkeypatch) -> None:
    """Simulate a new release whose IoU is computed differently (halved) under a new version."""
    original = mask_metrics.per_image_scores

    def halved_iou(counts, policy):
        out = dict(original(counts, policy))
        out["iou"] = out["iou"] * 0.5
        return out

    monkeypatch.setattr(mask_metrics, "per_image_scores", halved_iou)
    monkeypatch.setattr(score_module, "METRIC_VERSION", "9.9.9")


def test_rescore_reports_what_a_metric_change_moved_and_is_idempotent(world: World, monkeypatch) -> None:
    _two_entries(world)
    with world.board() as board:
        first = rescore(board, world.data)
        assert [i.status for i in first.items] == ["unchanged", "unchanged"] and first.diffs == []
        assert len(rows(board, Evaluation)) == 2     # nothing rewritten when nothing changed
        old_iou = {s.entry_id: s.value for s in rows(board, Score, Score.metric == "iou")}

        _metric_change(monkeypatch)
        report = rescore(board, world.data)
        assert [i.status for i in report.items] == ["updated", "updated"]
        moved = {(d.entry, d.metric) for d in report.diffs}
        assert {("alpha", "iou"), ("beta", "iou")} <= moved
        assert not any(d.metric.startswith(("cider", "bleu", "rouge")) for d in report.diffs)
        for d in report.diffs:
            if d.metric == "iou":
                assert d.new == pytest.approx(d.old / 2)
        assert all(i.old_version == "1.0.0" and i.new_version == "9.9.9" for i in report.items)
        text = format_report(report)
        assert "alpha" in text and "iou" in text and "metric version 1.0.0 -> 9.9.9" in text

        current = rows(board, Evaluation, Evaluation.current.is_(True))
        assert len(current) == 2 and {c.metric_version for c in current} == {"9.9.9"}
        assert len(rows(board, Evaluation)) == 4     # the old evaluations are kept as history...
        assert {r.evaluation_id for r in rows(board, SampleScores)} == {c.id for c in current}   # ...less per-sample rows
        new_iou = {s.entry_id: s.value for s in rows(board, Score, Score.metric == "iou", Score.metric_version == "9.9.9")}
        assert new_iou == pytest.approx({k: v / 2 for k, v in old_iou.items()})

        again = rescore(board, world.data)
        assert [i.status for i in again.items] == ["unchanged", "unchanged"] and again.diffs == []
        assert len(rows(board, Evaluation)) == 4
        assert "no metric moved" in format_report(again)


def test_rescore_one_entry_or_split(world: World, monkeypatch) -> None:
    _two_entries(world)
    _metric_change(monkeypatch)
    with world.board() as board:
        report = rescore(board, world.data, entry="beta")
        assert [(i.entry, i.status) for i in report.items] == [("beta", "updated")]
        assert {c.metric_version for c in rows(board, Evaluation, Evaluation.current.is_(True))} == {"1.0.0", "9.9.9"}
        with pytest.raises(StoreError, match="no scored entry"):
            rescore(board, world.data, split="eval")
        report = rescore(board, world.data, split="test")
        assert [(i.entry, i.status) for i in report.items] == [("alpha", "updated"), ("beta", "unchanged")]


def test_rescore_cli_and_missing_files(world: World) -> None:
    _two_entries(world)
    out = cli("rescore", "--db", world.db, "--data", world.data)
    assert out.returncode == 0, out.stderr
    assert "re-scored 2 entries: 0 updated, 2 unchanged" in out.stdout
    # a lost object is reported as a located failure, and the command fails
    with world.board() as board:
        objects = sorted((board.files.root / "objects").rglob("*"))
        for p in objects:
            if p.is_file():
                p.chmod(0o644)
                p.unlink()
    out = cli("rescore", "--db", world.db, "--data", world.data, "--entry", "alpha")
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
