"""The Submit page and `mmtt board token`: the page posts through the submission API (a real
`mmtt serve` with one worker, embedded mode, on a copy of the board). Nothing is written without a
valid token or over the cap; a bad archive fails with every problem in plain words; a good one is
queued, scored by the worker and on the board at the next look."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from leaderboard_app import queries
from leaderboard_app.commands import main as board_main
from leaderboard_app.intake import safe_filename
from benchmark.store.tokens import TokenRecord, check, hash_token, new_token, token_id
from tests.service_fixtures import Service
from tests.test_board_app import board_frame, run_app
from tests.test_board_helpers import TEAM_TOKEN_TEAM, BoardWorld, board_world  # noqa: F401
from tests.test_store_helpers import snapshot

PAGE_TIMEOUT_S = 240


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(board_world: BoardWorld, tmp_path_factory) -> BoardWorld:
    return board_world.clone(tmp_path_factory.mktemp("submit") / "board")


@pytest.fixture(scope="module")
def api(world: BoardWorld, tmp_path_factory) -> Service:
    """The submission API on the copied board (embedded broker) with one worker."""
    logs = tmp_path_factory.mktemp("api-logs")
    svc = Service(db=world.url, data=world.data, broker=f"sqla+sqlite:///{world.root / 'board.broker.sqlite'}",
                  files=world.files, logs=logs, env={"MMTT_LEASE_S": "5", "MMTT_CACHE_DIR": str(world.root / "cache")})
    svc.start_api()
    svc.start_worker()
    yield svc
    svc.stop()


def state(world: BoardWorld) -> tuple[dict, list[str]]:
    with queries.submit_board(world.url, None) as board:
        rows = snapshot(board)
    files = sorted(str(p.relative_to(world.files)) for p in world.files.rglob("*")
                   if p.is_file() and "uploads" not in p.parts)
    return rows, files


def submit_page(world: BoardWorld, api: Service, monkeypatch, *, token: str, name: str, filename: str,
                payload: bytes, **env):
    monkeypatch.setenv("MMTT_BOARD_API", api.url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = run_app(world, monkeypatch, "pages/submit.py")
    at.text_input(key="submit_token").set_value(token)
    at.text_input(key="submit_name").set_value(name)
    at.file_uploader(key="submit_file").upload(filename, payload, "application/zip")
    api.run_page(at, timeout=PAGE_TIMEOUT_S)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_bad_token_writes_nothing(world, api, monkeypatch) -> None:
    good = zipped(world.submission("web1", team="whoever", seed=11))
    before = state(world)
    for token in ("", "nope", world.token[:-2] + "xx", "mmtt_00000000_" + "a" * 43):
        at = submit_page(world, api, monkeypatch, token=token, name="web1", filename="sub.zip", payload=good)
        assert "HTTP 401" in at.error[0].value and "token" in at.error[0].value
        assert state(world) == before


def test_upload_over_the_cap_and_non_archives_are_refused_before_writing(world, api, monkeypatch) -> None:
    good = zipped(world.submission("web2", team="whoever", seed=12))
    before = state(world)
    at = submit_page(world, api, monkeypatch, token=world.token, name="web2", filename="sub.zip", payload=good,
                     MMTT_BOARD_MAX_UPLOAD_MB="0.001")
    assert "over this board" in at.error[0].value and "limit" in at.error[0].value
    at = submit_page(world, api, monkeypatch, token=world.token, name="web2", filename="notes.gz", payload=b"hello",
                     MMTT_BOARD_MAX_UPLOAD_MB="512")
    assert "not an archive" in at.error[0].value
    assert state(world) == before


def test_bad_archive_lists_every_problem_and_changes_no_score(world, api, monkeypatch) -> None:
    folder = world.submission("web3", team="whoever", seed=13)
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    (folder / "predictions.jsonl").write_text("\n".join(lines[2:] + ['{"image_id": "nope", "caption": "x"}',
                                                                     "not json"]) + "\n")
    rows_before, _ = state(world)
    at = submit_page(world, api, monkeypatch, token=world.token, name="web3", filename="bad.zip",
                     payload=zipped(folder))
    assert "failed" in at.error[0].value
    listed = at.code[0].value
    assert "nothing scored" in listed and "nope" in listed and "no prediction" in listed
    assert "predictions.jsonl:8: invalid JSON" in listed
    rows_after, _ = state(world)
    for table in ("entries", "evaluations", "scores", "teams"):
        assert rows_after[table] == rows_before[table], table
    new = [r for r in rows_after["submissions"] if r not in rows_before["submissions"]]
    assert len(new) == 1 and "failed" in new[0]


def test_good_archive_is_queued_scored_and_shown(world, api, monkeypatch) -> None:
    folder = world.submission("web4", team="someone-else", seed=14, paper_url="https://example.org/paper")
    at = submit_page(world, api, monkeypatch, token=world.token, name="web-entry", filename="my sub (v2).zip",
                     payload=zipped(folder))
    assert not at.error, [e.value for e in at.error]
    assert "Queued" in at.success[0].value and "Scored" in at.success[1].value
    scores = at.dataframe[0].value
    assert {"IoU", "CIDEr", "BLEU-4"} <= set(scores["Metric"])
    board = run_app(world, monkeypatch)
    table = board_frame(board)
    row = table[table["Entry"] == "web-entry"]
    assert len(row) == 1 and row["Team"].item() == TEAM_TOKEN_TEAM    # the token's team, not the manifest's
    # the same archive again: recognised, nothing new stored
    at = submit_page(world, api, monkeypatch, token=world.token, name="web-entry", filename="x.zip",
                     payload=zipped(folder))
    assert "Already on the board" in at.success[0].value


def test_submit_page_is_closed_without_the_api(world, monkeypatch) -> None:
    monkeypatch.delenv("MMTT_BOARD_API", raising=False)
    at = run_app(world, monkeypatch, "pages/submit.py")
    assert any("closed" in i.value for i in at.info)
    assert not at.get("file_uploader")


# ------------------------------------------------------------------------------------ tokens
def test_tokens_are_random_hashed_and_checked() -> None:
    token, record = new_token("t1", "note")
    assert token_id(token) == record.id and record.hash == hash_token(token) and token not in record.to_value()
    assert check(token, record.to_value()) == record
    assert check(token + "x", record.to_value()) is None and check(token, None) is None
    revoked = TokenRecord(**{**record.__dict__, "revoked_at": "2024-01-01T00:00:00+00:00"})
    assert check(token, revoked.to_value()) is None
    assert token_id("mmtt_zz_abc") is None and token_id("") is None
    assert safe_filename("../../etc/My Sub (v2).TAR.GZ") == "My_Sub_v2.tar.gz"
    assert safe_filename("a.exe") is None and safe_filename("") is None


def test_token_cli_add_list_revoke(world, capsys) -> None:
    assert board_main(["token", "add", "--team", "team-z", "--note", "for z", "--db", world.url, "--json"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["team"] == "team-z" and queries.verify_token(world.url, issued["token"]).team == "team-z"
    assert board_main(["--db", world.url, "token", "list", "--json"]) == 0        # --db before the action too
    listed = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in listed} >= {issued["id"]} and issued["token"] not in json.dumps(listed)
    assert board_main(["token", "revoke", issued["id"], "--db", world.url]) == 0
    assert "revoked" in capsys.readouterr().out
    assert queries.verify_token(world.url, issued["token"]) is None
    assert board_main(["token", "list", "--db", world.url]) == 0
    assert issued["id"] not in capsys.readouterr().out                             # active ones only
    assert board_main(["token", "revoke", "00000000", "--db", world.url]) == 2
    assert "no token" in capsys.readouterr().err
