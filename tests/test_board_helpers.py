"""Boards for the web-board tests: a tiny real one (really scored, kept files, a hidden split, an
entry named like an attack, a token) and a bulk one (1,000 entries x 3 splits in seconds)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from benchmark.data.split import load_split
from benchmark.metrics import METRIC_VERSION
from benchmark.store.board import Board
from benchmark.store.db import Database, resolve_url
from benchmark.store.migrate import ensure_current
from benchmark.store.models import (
    BreakdownScore,
    Entry,
    Evaluation,
    Score,
    Setting,
    Split,
    Submission,
    Team,
)
from benchmark.scoring.options import ScoreOptions
from benchmark.store.submission import SubmitRequest, submit
from leaderboard_app.tokens import new_token, setting_key
from tests.conftest import make_random_dataset, write_submission

INJECT_NAME = "<script>alert(1)</script><b>x</b>"
INJECT_DESC = ("**bold** [click](javascript:alert(1)) <img src=x onerror=alert(2)> :red[red] $x^2$ "
               "<b>y</b>\n# heading")
TEAM_TOKEN_TEAM = "team-web"


@dataclass
class BoardWorld:
    """A data root, a board (SQLite) with its kept files, and a token for `team-web`."""

    root: Path
    data: Path
    records: list[dict]
    db: Path
    token: str

    @property
    def url(self) -> str:
        return resolve_url(str(self.db))

    @property
    def files(self) -> Path:
        return self.db.with_name(self.db.stem + ".files")

    def env(self, monkeypatch, data: bool = True) -> None:
        """Point the app (run in this process by AppTest) at this board."""
        monkeypatch.setenv("MMTT_BOARD_DB", self.url)
        if data:
            monkeypatch.setenv("MMTT_BOARD_DATA", str(self.data))
        else:
            monkeypatch.delenv("MMTT_BOARD_DATA", raising=False)
        monkeypatch.setenv("MMTT_BOARD_N_BOOT", "50")
        monkeypatch.setenv("MMTT_BOARD_NO_METEOR", "1")

    def submission(self, name: str, *, team: str, seed: int, masks=None, captions=None, **manifest) -> Path:
        man = {"model": f"{name}-model", "team": team, "authors": "A. Author", **manifest}
        return write_submission(self.root / "subs" / f"{abs(hash(name)) % 10**8}-{seed}", self.records, seed=seed,
                                masks=masks, captions=captions, manifest=man)

    def clone(self, dest: Path) -> "BoardWorld":
        """A private copy of the board and its files (for tests that write), sharing the data."""
        dest.mkdir(parents=True, exist_ok=True)
        db = dest / "board.sqlite"
        shutil.copy2(self.db, db)
        if self.files.exists():
            shutil.copytree(self.files, dest / "board.files")
        return BoardWorld(root=dest, data=self.data, records=self.records, db=db, token=self.token)


# entry, team, seed, what the submission holds, flags
PLAN = (
    ("alpha", "team-a", 1, {}, {}),
    ("beta", "team-b", 2, {}, {}),
    (INJECT_NAME, "team-x", 3, {"description": INJECT_DESC, "paper_url": "javascript:alert(1)",
                                "code_url": "https://example.org/code"}, {}),
    ("talker", "team-c", 4, {"masks": False, "tasks": ["interpretation"]}, {}),
    ("masker", "maintainers", 5, {"captions": False, "tasks": ["localization"]}, {"baseline": True}),
    ("secret", "team-d", 6, {}, {"private": True}),
)


def build_world(root: Path) -> BoardWorld:
    """Really scored submissions (meteor off, 50 replicates): ~4 s."""
    data = root / "data"
    records = make_random_dataset(data, n=8, size=32)
    (data / "hidden-mutilabel.json").write_text((data / "test-mutilabel.json").read_text())
    db = root / "board.sqlite"
    token, record = new_token(TEAM_TOKEN_TEAM, "tests")
    world = BoardWorld(root=root, data=data, records=records, db=db, token=token)
    hidden = load_split(data, "hidden")
    with Board.open(str(db)) as board:
        def setup(session) -> None:
            session.add(Split(name="hidden", fingerprint=hidden.fingerprint, n_items=len(hidden), hidden=True))
            session.add(Setting(key=setting_key(record.id), value=record.to_value()))

        board.db.write(setup)
        for name, team, seed, content, flags in PLAN:
            content = dict(content)
            masks, captions = content.pop("masks", None), content.pop("captions", None)
            path = world.submission(name, team=team, seed=seed, masks=masks, captions=captions, **content)
            for split in ("test", "hidden") if name in ("alpha", "beta") else ("test",):
                options = ScoreOptions(skip=("meteor",), n_boot=50, cache_dir=root / "cache")
                submit(board, SubmitRequest(path=path, data=data, name=name, split=split, options=options, **flags))
    return world


_WORLDS: dict[str, BoardWorld] = {}


@pytest.fixture(scope="session")
def board_world(tmp_path_factory) -> BoardWorld:
    """One real board per test session (read-only use: clone it before writing)."""
    if "world" not in _WORLDS:
        _WORLDS["world"] = build_world(tmp_path_factory.mktemp("board-world"))
    return _WORLDS["world"]


# --------------------------------------------------------------------------------- bulk board
METHOD_GROUPS = ("diffusion-inpainting", "transformer-inpainting", "gan-faceswap", "attribute-editing")
SOURCE_GROUPS = ("celeba-hq", "ffhq", "face-attribute")
MASK = ("iou", "f1", "precision", "recall", "auc")
TEXT = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "clue_precision", "clue_recall",
        "clue_f1")


def bulk_board(db: Path, *, n_entries: int = 1000, splits=("test", "test_blur", "eval"), n_items: int = 21679,
               seed: int = 0, hidden: tuple[str, ...] = ()) -> str:
    """A board of `n_entries` entries, each scored on every split (scores, CIs, breakdowns; no
    per-sample rows), written with bulk inserts in one transaction. Returns its URL."""
    url = resolve_url(str(db))
    database = Database.open(url)
    ensure_current(database)
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    n_teams = max(1, n_entries // 4)
    tasks_of = rng.choice(3, n_entries, p=[0.7, 0.2, 0.1])   # both, localization, interpretation
    skill = rng.uniform(0.2, 0.8, n_entries)
    fp = "sha256:" + "ab" * 32

    split_rows = [dict(id=i + 1, name=s, fingerprint=fp, n_items=n_items, hidden=s in hidden, created_at=now,
                       updated_at=now) for i, s in enumerate(splits)]
    team_rows = [dict(id=i + 1, name=f"team-{i:04d}", created_at=now) for i in range(n_teams)]
    entry_rows, sub_rows, ev_rows, score_rows, bd_rows = [], [], [], [], []
    for i in range(n_entries):
        tasks = ("localization,interpretation", "localization", "interpretation")[tasks_of[i]]
        entry_rows.append(dict(id=i + 1, team_id=i % n_teams + 1, name=f"entry-{i:04d}", model=f"model-{i % 37}",
                               description="", authors="", paper_url="", code_url="", tasks=tasks,
                               baseline=i < 5, visibility="private" if i % 97 == 96 else "public",
                               flagged=i % 113 == 7, flag_reason="", created_at=now, updated_at=now))
        for j, s in enumerate(split_rows):
            k = i * len(split_rows) + j + 1
            when = now - timedelta(minutes=int(rng.integers(0, 60 * 24 * 90)))
            sub_rows.append(dict(id=k, entry_id=i + 1, split_id=s["id"], entry_name=f"entry-{i:04d}",
                                 team_name=f"team-{i % n_teams:04d}", split_name=s["name"], status="scored",
                                 message="", source_name="bulk.zip", files_hash=None, files_size=0,
                                 protocol="strict", allow_missing=False, options="{}", baseline=i < 5,
                                 submission_hash=f"sha256:{k:064x}", worker="", created_at=when, updated_at=when,
                                 scored_at=when))
            ev_rows.append(dict(id=k, submission_id=k, entry_id=i + 1, split_id=s["id"], protocol="strict",
                                metric_version=METRIC_VERSION, dataset_fingerprint=fp,
                                submission_hash=f"sha256:{k:064x}", current=True, n_truth=n_items, n_scored=n_items,
                                n_missing=0, tasks=tasks, digest=f"sha256:{k:064x}", created_at=when,
                                summary=json.dumps({"ci_method": "percentile bootstrap over images (bulk test data)",
                                                    "mask_policy": "bulk", "clue_policy": "bulk"})))
            names = (MASK if "localization" in tasks else ()) + (TEXT if "interpretation" in tasks else ())
            base = skill[i] - 0.05 * j
            values = {m: float(np.clip(base * (10 if m == "cider" else 1) + rng.normal(0, 0.02), 0, 10))
                      for m in names}
            for m, v in values.items():
                half = 0.01 + 0.01 * rng.random()
                score_rows.append(dict(evaluation_id=k, entry_id=i + 1, split_id=s["id"], protocol="strict",
                                       metric=m, value=v, ci_low=v - half, ci_high=v + half,
                                       metric_version=METRIC_VERSION, dataset_fingerprint=fp))
            for dim, groups in (("method", METHOD_GROUPS), ("source", SOURCE_GROUPS)):
                for g in groups:
                    for m, v in values.items():
                        bd_rows.append(dict(evaluation_id=k, dimension=dim, group_name=g, n=n_items // len(groups),
                                            metric=m, value=float(np.clip(v + rng.normal(0, 0.05), 0, 10))))

    def load(session) -> None:
        for model, rows in ((Split, split_rows), (Team, team_rows), (Entry, entry_rows), (Submission, sub_rows),
                            (Evaluation, ev_rows), (Score, score_rows), (BreakdownScore, bd_rows)):
            for start in range(0, len(rows), 20000):
                session.execute(insert(model.__table__), rows[start:start + 20000])

    database.write(load, "bulk load")
    assert database.read(lambda s: len(s.scalars(select(Split.id)).all())) == len(splits)
    database.dispose()
    return url


def test_bulk_board_ranks_like_the_cli(tmp_path: Path) -> None:
    """The bulk board is a valid board: the store's own ranking reads it."""
    from benchmark.store.ranking import leaderboard

    url = bulk_board(tmp_path / "b.sqlite", n_entries=40, splits=("test", "eval"))
    with Board.open(url, upgrade=False) as board:
        rows = board.db.read(lambda s: leaderboard(s, "test", team_entry="all"))
    assert len(rows) == 40 - 0   # i % 97 == 96 never hits below 97 entries
    assert rows[0].rank == 1 and rows[0].ci95["iou"][0] < rows[0].metrics["iou"]
