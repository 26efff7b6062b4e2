"""Shared helpers of the store tests (fake score results, a tiny real board), and checks that the
fakes keep the shape of the real `ScoreResult` so the unit tests stay honest."""

from __future__ import annotations

import dataclasses

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from benchmark.data.split import load_split
from benchmark.metrics import METRIC_VERSION
from benchmark.store.board import Board
from benchmark.scoring.options import ScoreOptions
from benchmark.store.submission import SubmitRequest
from tests.conftest import make_random_dataset, write_submission

FAST = dict(skip=("meteor",), n_boot=50)
TABLES = ("settings", "teams", "authors", "splits", "entries", "submissions", "evaluations", "scores",
          "breakdown_scores", "sample_scores")


def fake_result(split, *, iou: float = 0.5, cider: float = 1.0, seed: int = 0, version: str = METRIC_VERSION,
                protocol: str = "strict", tasks=("localization", "interpretation"), team: str = "t") -> SimpleNamespace:
    """A ScoreResult-shaped object for `split` whose per-image IoU averages `iou` (CIDEr `cider`)."""
    rng = np.random.default_rng(seed)
    ids = list(split.ids)
    n = len(ids)
    per: dict[str, Any] = {"image_id": ids, "method": [split.by_id[i].method for i in ids],
                           "source": [split.by_id[i].source for i in ids]}
    metrics: dict[str, float | None] = {}
    if "localization" in tasks:
        noise = rng.uniform(-0.05, 0.05, n)
        per["iou"] = np.clip(iou + noise - noise.mean(), 0, 1)
        per["f1"] = np.clip(per["iou"] * 1.2, 0, 1)
        per["precision"], per["recall"] = per["f1"].copy(), per["f1"].copy()
        per["auc"] = np.full(n, 0.5)
        metrics.update({k: float(np.mean(per[k])) for k in ("iou", "f1", "precision", "recall")})
        metrics["auc"] = 0.5
    if "interpretation" in tasks:
        per["cider"] = np.full(n, cider)
        per["rouge_l"] = np.full(n, 0.3)
        per["clue_f1"] = np.full(n, 0.4)
        metrics.update(cider=cider, rouge_l=0.3, clue_f1=0.4, bleu_4=0.1 + cider / 100, meteor=None)
    ci = {k: [v - 0.01, v + 0.01] for k, v in metrics.items() if v is not None}
    groups = sorted(set(per["method"]))
    breakdown = {"method": {g: {"n": per["method"].count(g), "metrics": {k: v for k, v in metrics.items()}}
                            for g in groups}, "source": {}}
    summary = {"protocol": protocol, "protocol_description": protocol, "allow_missing": False,
               "split": split.name, "tasks": list(tasks), "n_truth": n, "n_scored": n, "n_missing": 0,
               "metrics": metrics, "ci95": ci, "ci_method": "fake", "breakdown": breakdown,
               "mask_policy": "fake", "clue_policy": "fake", "metric_version": version,
               "dataset_fingerprint": split.fingerprint, "submission_hash": f"sha256:{seed:064x}",
               "warnings": [], "manifest": {"model": "m", "team": team, "tasks": list(tasks)}}
    return SimpleNamespace(summary=summary, per_sample=per)


def fake_scorer(**kw):
    """A scorer for `submit(..., scorer=)` returning `fake_result(split, **kw)`."""
    def score(path, split, request):
        return fake_result(split, **kw)

    return score


@dataclass
class World:
    """A tiny data root, a board and a way to make submissions for it."""

    root: Path
    data: Path
    records: list[dict]
    db: str

    @property
    def split(self):
        return load_split(self.data, "test")

    def submission(self, name: str, *, team: str = "team-a", seed: int = 1, model: str | None = None,
                   tasks=None, **kw) -> Path:
        manifest = {"model": model or name, "team": team, "authors": "A. Author, B. Author"}
        if tasks:
            manifest["tasks"] = list(tasks)
        return write_submission(self.root / "subs" / f"{name}-{seed}", self.records, seed=seed, manifest=manifest, **kw)

    def request(self, path: Path, name: str, **kw) -> SubmitRequest:
        """A request; scoring options among `kw` (protocol, n_boot, …) go into its ScoreOptions."""
        option_names = {f.name for f in dataclasses.fields(ScoreOptions)}
        options = {k: kw.pop(k) for k in list(kw) if k in option_names}
        return SubmitRequest(path=path, data=self.data, name=name, split="test",
                             options=ScoreOptions(**{**FAST, **options}), **kw)

    def board(self) -> Board:
        return Board.open(self.db)


def make_world(tmp_path: Path, n: int = 8, size: int = 32) -> World:
    data = tmp_path / "data"
    records = make_random_dataset(data, n=n, size=size)
    return World(root=tmp_path, data=data, records=records, db=str(tmp_path / "board.sqlite"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def snapshot(board: Board) -> dict[str, list[tuple]]:
    """Every row of every table (for 'nothing changed' checks)."""
    def read(session) -> dict[str, list[tuple]]:
        return {t: sorted(map(tuple, session.execute(text(f"SELECT * FROM {t}")).all()), key=repr) for t in TABLES}

    return board.db.read(read)


def mmtt(*args: str, env: dict | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the real `mmtt` CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kw)


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run `mmtt` in this process (same parser, handlers and exit codes; no interpreter start-up)."""
    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:   # argparse errors
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def rows(board: Board, model, *where) -> list:
    return board.db.read(lambda s: list(s.scalars(select(model).where(*where))))


# ------------------------------------------------------------------------------ the fakes' shape
def test_fake_result_has_the_real_shape(world: World) -> None:
    """The keys the store reads exist in both the fake and a real result (guards the unit tests)."""
    from benchmark.scoring.score import ScoreOptions, score_submission

    split = world.split
    real = score_submission(world.submission("x"), split, ScoreOptions(**FAST))
    fake = fake_result(split)
    for key in ("protocol", "split", "tasks", "n_truth", "n_scored", "n_missing", "metrics", "ci95", "breakdown",
                "metric_version", "dataset_fingerprint", "submission_hash", "warnings", "ci_method"):
        assert key in real.summary and key in fake.summary, key
    assert set(fake.per_sample) <= set(real.per_sample)
    assert real.per_sample["image_id"] == fake.per_sample["image_id"] == split.ids
    for group in real.summary["breakdown"]["method"].values():
        assert set(group) == {"n", "metrics"}
