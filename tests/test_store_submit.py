"""`submit`: validated, scored and stored in one go — or the board unchanged but for a failed row."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from benchmark.errors import BenchmarkError
from benchmark.scoring.score import ScoreOptions, score_submission
from benchmark.store.db import StoreError
from benchmark.store.faults import InjectedFault
from benchmark.store.models import Author, Entry, Evaluation, Submission, Team, utcnow
from benchmark.store.rules import rule_value, set_rule, submissions_today
from benchmark.store.scores import full_summary, samples_of
from benchmark.store.submission import submit
from submissions.reader import SubmissionError
from tests.test_store_helpers import FAST, World, cli, fake_scorer, rows, snapshot, world  # noqa: F401


def test_real_submission_is_stored_with_everything_to_reproduce_it(world: World) -> None:
    sub = world.submission("real", team="lab", seed=2)
    expected = score_submission(sub, world.split, ScoreOptions(**FAST))
    with world.board() as board:
        out = submit(board, world.request(sub, "real"))
        assert not out.duplicate and out.team == "lab" and out.summary["metrics"] == expected.summary["metrics"]

        def check(session) -> None:
            ev = session.scalars(select(Evaluation).where(Evaluation.current.is_(True))).one()
            assert ev.metric_version == expected.summary["metric_version"]
            assert ev.dataset_fingerprint == world.split.fingerprint
            assert ev.submission_hash == expected.summary["submission_hash"]
            stored = full_summary(session, ev)
            assert stored["metrics"] == expected.summary["metrics"]
            assert stored["ci95"] == expected.summary["ci95"]
            assert stored["breakdown"] == expected.summary["breakdown"]
            assert stored["ci_method"] == expected.summary["ci_method"]
            samples = samples_of(session, ev.id)
            assert samples["image_id"] == expected.per_sample["image_id"]
            np.testing.assert_allclose(samples["iou"], expected.per_sample["iou"], rtol=1e-6)   # float32
            np.testing.assert_allclose(samples["cider"], expected.per_sample["cider"], rtol=1e-6)
            entry = session.get(Entry, ev.entry_id)
            assert (entry.name, entry.team.name, entry.model, entry.visibility) == ("real", "lab", "real", "public")
            assert entry.tasks == "localization,interpretation"
            assert sorted(a.name for a in entry.team.authors) == ["A. Author", "B. Author"]
            row = session.get(Submission, ev.submission_id)
            assert (row.status, row.worker, row.protocol) == ("scored", "", "strict")
            assert json.loads(row.options) == {"metrics": None, "skip": ["meteor"], "embed_model": None, "n_boot": 50,
                                           "seed": 0}

        board.db.read(check)


def _fail_and_compare(world: World, monkeypatch, step: str, name: str) -> None:
    """Submit `name` with a failure injected at `step`; only one failed row may appear."""
    with world.board() as board:
        before = snapshot(board)
        monkeypatch.setenv("MMTT_STORE_FAIL_AT", step)
        with pytest.raises(InjectedFault):
            submit(board, world.request(world.submission(name, team="team-b"), name), scorer=fake_scorer(iou=0.6))
        monkeypatch.delenv("MMTT_STORE_FAIL_AT")
        after = snapshot(board)
        for table in before:
            if table != "submissions":
                assert after[table] == before[table], f"{table} changed after a failure at '{step}'"
        assert len(after["submissions"]) == len(before["submissions"]) + 1
        (failed,) = rows(board, Submission, Submission.entry_name == name)
    assert failed.status == "failed" and f"injected failure at step '{step}'" in failed.message
    assert failed.team_name == "team-b" and failed.files_hash   # the reason, and what was sent


@pytest.mark.parametrize("step", ["stored", "reserved", "scored", "commit"])
def test_failure_at_any_step_leaves_only_a_failed_row(world: World, monkeypatch, step: str) -> None:
    _fail_and_compare(world, monkeypatch, step, "on-empty-board")    # not even the split is registered
    with world.board() as board:
        submit(board, world.request(world.submission("first"), "first"), scorer=fake_scorer(iou=0.3))
    _fail_and_compare(world, monkeypatch, step, "second")


def test_invalid_submission_fails_with_the_scorers_located_reason(world: World) -> None:
    sub = world.submission("partial")
    lines = (sub / "predictions.jsonl").read_text().splitlines()
    (sub / "predictions.jsonl").write_text("\n".join(lines[1:]) + "\n")
    with world.board() as board:
        with pytest.raises(SubmissionError):
            submit(board, world.request(sub, "partial"))
        (row,) = rows(board, Submission)
        assert row.status == "failed" and "have no prediction" in row.message
        assert rows(board, Entry) == [] and rows(board, Evaluation) == []
    out = cli("submit", sub, "--data", world.data, "--db", world.db, "--name", "partial", "--no-meteor",
               "--n-boot", "20")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_manifest_and_upload_size_are_checked(world: World) -> None:
    sub = world.submission("nomanifest")
    (sub / "manifest.json").unlink()
    with world.board() as board:
        with pytest.raises(BenchmarkError, match="manifest.json is required"):
            submit(board, world.request(sub, "nomanifest"))
        big = world.submission("big")
        with pytest.raises(StoreError, match="over the limit of 0.001 MiB"):
            submit(board, world.request(big, "big", max_upload_mb=0.001), scorer=fake_scorer())
        statuses = [(r.entry_name, r.status) for r in rows(board, Submission)]
        assert statuses == [("nomanifest", "failed"), ("big", "failed")]


def test_daily_limit_per_team_and_split(world: World, monkeypatch) -> None:
    with world.board() as board:
        for i in range(2):
            submit(board, world.request(world.submission(f"e{i}", seed=i), f"e{i}", daily_limit=2), scorer=fake_scorer())
        with pytest.raises(StoreError, match="used its 2 submission"):
            submit(board, world.request(world.submission("e2", seed=9), "e2", daily_limit=2), scorer=fake_scorer())
        # failed ones do not count, another team has its own quota, baselines are exempt
        submit(board, world.request(world.submission("o1", team="other"), "o1", daily_limit=2), scorer=fake_scorer())
        submit(board, world.request(world.submission("b1", seed=7), "b1", daily_limit=2, baseline=True),
               scorer=fake_scorer())
        assert board.db.read(lambda s: submissions_today(s, "team-a", "test")) == 2
        assert board.db.read(lambda s: submissions_today(s, "team-a", "test", utcnow() + timedelta(days=1))) == 0
        # configured by the board setting, overridden by the environment
        board.db.write(lambda s: set_rule(s, "daily_limit", "3"))
        assert board.db.read(lambda s: rule_value(s, "daily_limit")) == 3
        submit(board, world.request(world.submission("e3", seed=11), "e3"), scorer=fake_scorer())
        monkeypatch.setenv("MMTT_DAILY_LIMIT", "0")   # 0: no limit
        submit(board, world.request(world.submission("e4", seed=12), "e4"), scorer=fake_scorer())
        assert {e.name for e in rows(board, Entry)} == {"e0", "e1", "o1", "b1", "e3", "e4"}


def test_entry_names_belong_to_their_team_and_resubmitting_updates_the_entry(world: World) -> None:
    with world.board() as board:
        first = submit(board, world.request(world.submission("m", seed=1), "m"), scorer=fake_scorer(iou=0.3))
        with pytest.raises(StoreError, match="belongs to team 'team-a'"):
            submit(board, world.request(world.submission("m", team="thief", seed=2), "m"), scorer=fake_scorer())
        again = submit(board, world.request(world.submission("m", seed=1), "m"), scorer=fake_scorer(iou=0.9))
        assert again.duplicate and again.submission_id == first.submission_id   # same files: nothing new
        assert again.summary["metrics"]["iou"] == pytest.approx(0.3)
        second = submit(board, world.request(world.submission("m", seed=5), "m"), scorer=fake_scorer(iou=0.7))
        assert not second.duplicate
        current = rows(board, Evaluation, Evaluation.current.is_(True))
        assert [c.submission_id for c in current] == [second.submission_id]
        assert len(rows(board, Entry)) == 1 and len(rows(board, Team)) == 1
        assert len(rows(board, Author)) == 2
        # withdrawing the newest submission brings the previous one back
        out = cli("withdraw", str(second.submission_id), "--db", world.db, "--reason", "bug")
        assert out.returncode == 0, out.stderr
        current = rows(board, Evaluation, Evaluation.current.is_(True))
        assert [c.submission_id for c in current] == [first.submission_id]


def test_changed_truth_is_refused_until_the_split_is_updated(world: World) -> None:
    with world.board() as board:
        submit(board, world.request(world.submission("m"), "m"), scorer=fake_scorer())
        records = json.loads((world.data / "test-mutilabel.json").read_text())
        records[0]["caption"] = "A corrected explanation."
        (world.data / "test-mutilabel.json").write_text(json.dumps(records))
        with pytest.raises(StoreError, match="fingerprint"):
            submit(board, world.request(world.submission("n", seed=4), "n"), scorer=fake_scorer())
    out = cli("split", "add", "--data", world.data, "--split", "test", "--db", world.db)
    assert out.returncode == 2 and "--update" in out.stderr
    out = cli("split", "add", "--data", world.data, "--split", "test", "--db", world.db, "--update")
    assert out.returncode == 0 and "updated" in out.stdout


def test_status_moves_through_its_stages(world: World) -> None:
    seen = []
    with world.board() as board:
        def scorer(path, split, request):
            seen.extend((r.status, r.worker != "") for r in rows(board, Submission))
            return fake_scorer(iou=0.5)(path, split, request)

        submit(board, world.request(world.submission("s"), "s"), scorer=scorer)
        (row,) = rows(board, Submission)
    assert seen == [("scoring", True)]            # in progress, owned by this process
    assert (row.status, row.worker) == ("scored", "") and row.scored_at >= row.created_at
