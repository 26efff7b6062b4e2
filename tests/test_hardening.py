"""The hardening rules one by one: the strict JSON parser, the safe file reader, names, rules
before files, what failed uploads cost, disk full, the CLI's boundary, the rescore gate."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.store.errors import RuleError, StoreError
from benchmark.store.models import Entry, Submission, Team
from benchmark.store.names import name_key, normalise_name
from benchmark.store.submission import submit
from submissions import strictjson
from submissions.safeio import UnsafeFileError, read_file, scan_tree
from tests.test_store_helpers import World, cli, fake_scorer, rows, snapshot, world  # noqa: F401


# ------------------------------------------------------------------------------ strict JSON
@pytest.mark.parametrize("text, why", [
    ('{"a": NaN}', "NaN"), ('{"a": Infinity}', "Infinity"), ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1e400}', "out of range"), ('{"a": 1, "a": 2}', "duplicate key"),
    ('{"a": ' + "1" * 5000 + "}", "number with 5000"), ("[" * 5000 + "]" * 5000, "nested deeper"),
    ("[" * 40 + "]" * 40, "nested deeper"), ('{"a": "\\ud800"}', "surrogate"), ('{"\\udfff": 1}', "surrogate"),
])
def test_strict_json_refuses(text: str, why: str) -> None:
    with pytest.raises(strictjson.JSONLimitError, match=why):
        strictjson.loads(text)


def test_strict_json_accepts_ordinary_content() -> None:
    doc = {"image_id": "sd_1", "caption": "The nose — smeared ☹ \U0001F600", "n": -12, "x": 0.5, "l": [[1], {}]}
    assert strictjson.loads(json.dumps(doc)) == doc
    assert strictjson.loads('"\\ud83d\\ude00"') == "\U0001F600"   # a surrogate *pair* is a character


# ---------------------------------------------------------------------------- safe reading
def test_safe_read_refuses_what_is_not_a_regular_file_inside(tmp_path: Path) -> None:
    root = tmp_path / "sub"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"x" * 10)
    (root / "inside-link").symlink_to("ok.txt")
    (root / "outside-link").symlink_to(tmp_path)
    os.mkfifo(root / "pipe")
    assert read_file(root / "inside-link", label="inside-link", max_bytes=10, root=root) == b"x" * 10
    for name, code in (("outside-link", "outside"), ("pipe", "not_regular"), (".", "not_regular"),
                       ("missing", "missing")):
        with pytest.raises(UnsafeFileError) as info:
            read_file(root / name, label=name, max_bytes=100, root=root)
        assert info.value.code == code and str(info.value).startswith(name)
    with pytest.raises(UnsafeFileError, match="over the limit of 9"):
        read_file(root / "ok.txt", label="ok.txt", max_bytes=9)
    problems = scan_tree(root, label="sub", max_entries=100)
    assert problems == ["sub/outside-link: is a link that leaves the submission folder",
                        "sub/pipe: is a FIFO; only regular files are read"]
    assert scan_tree(root, label="sub", max_entries=2)[-1] == "sub: more than 2 files and folders"


def test_an_overlong_line_is_skipped_without_being_held(tmp_path: Path) -> None:
    import tracemalloc

    from submissions.format import DEFAULT_LIMITS
    from submissions.reader import iter_lines

    path = tmp_path / "predictions.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"image_id": "a"}\n{"image_id": "b", "caption": "')
        for _ in range(100):
            fh.write(b"x" * (1 << 20))     # a 100 MiB line
        fh.write(b'"}\n{"image_id": "c"}\n')
    tracemalloc.start()
    try:
        out = list(iter_lines(path, DEFAULT_LIMITS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(n, obj) for n, obj, _ in out] == [(1, {"image_id": "a"}), (2, None), (3, {"image_id": "c"})]
    assert out[1][2].code == "line_long"
    assert peak < 4 * 1024**2, peak          # chunks of the line, never the line


def test_links_inside_the_submission_are_followed(world: World) -> None:
    """The documented choice: a link that stays inside the submission is fine (two ids sharing
    one mask file), one that leaves it is refused."""
    sub = world.submission("shared")
    masks = sorted((sub / "masks").rglob("*.png"))
    masks[1].unlink()
    masks[1].symlink_to(os.path.relpath(masks[0], masks[1].parent))
    out = cli("score", sub, "--data", world.data, "--no-meteor", "--n-boot", "20", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_scored"] == len(world.records)


def test_mask_folder_beside_a_predictions_file_must_not_link_out(world: World) -> None:
    sub = world.submission("beside")
    outside = world.root / "elsewhere"
    (sub / "masks").rename(outside)
    (sub / "masks").symlink_to(outside)
    out = cli("score", sub / "predictions.jsonl", "--data", world.data, "--no-meteor")
    assert out.returncode == 2 and out.stderr.startswith("error: masks: is a link that leaves the submission folder")


# ----------------------------------------------------------------------------------- names
@pytest.mark.parametrize("raw, shown", [("  Lab  ", "Lab"), ("ｌａｂ", "lab"), ("a  b", "a b"), ("ﬁx", "fix"),
                                        ("Équipe", "Équipe")])
def test_names_are_normalised(raw: str, shown: str) -> None:
    assert normalise_name("team", raw) == shown


@pytest.mark.parametrize("raw", ["", "   ", "a\u200bb", "\u202eevil", "a\tb", "a\nb", "\u3164", "bad\udcff",
                                 "\ue000", "x" * 201])
def test_names_that_draw_nothing_or_hide_are_refused(raw: str) -> None:
    with pytest.raises(StoreError):
        normalise_name("entry", raw)


def test_name_key_equates_case_width_and_compatibility_forms() -> None:
    assert name_key("Lab") == name_key("LAB") == name_key("ｌａｂ") == name_key("lab")
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("lab") != name_key("lab2")


def test_look_alike_team_joins_the_team_and_its_daily_limit(world: World) -> None:
    with world.board() as board:
        submit(board, world.request(world.submission("one", team="Lab"), "one", daily_limit=2), scorer=fake_scorer())
        out = submit(board, world.request(world.submission("two", team="ＬＡＢ", seed=2), "two", daily_limit=2),
                     scorer=fake_scorer())
        assert out.team == "Lab"                                  # the board's spelling
        assert [t.name for t in rows(board, Team)] == ["Lab"]
        with pytest.raises(RuleError, match="used its 2 submission"):
            submit(board, world.request(world.submission("three", team="lab", seed=3), "three", daily_limit=2),
                   scorer=fake_scorer())
        with pytest.raises(StoreError, match="belongs to team 'Lab'"):
            submit(board, world.request(world.submission("x", team="other", seed=4), "ONE"), scorer=fake_scorer())


# ---------------------------------------------------------------- rules, files and failures
def _objects(world: World) -> list[Path]:
    with world.board() as board:
        root = board.files.root
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file()) if (root / "objects").exists() else []


def test_refused_or_failed_uploads_keep_no_file_and_failures_count(world: World) -> None:
    with world.board() as board:
        submit(board, world.request(world.submission("ok", team="t"), "ok", daily_limit=3), scorer=fake_scorer())
    kept = _objects(world)
    assert kept

    def failing(path, split, request):
        from submissions.reader import SubmissionError

        raise SubmissionError("masks/x.png: not a readable image")

    with world.board() as board:
        with pytest.raises(BenchmarkError):
            submit(board, world.request(world.submission("bad", team="t", seed=2), "bad", daily_limit=3),
                   scorer=failing)
        assert _objects(world) == kept                                   # a failed scoring keeps nothing
        (failed,) = rows(board, Submission, Submission.entry_name == "bad")
        assert failed.status == "failed" and failed.files_hash           # ...but it counts
        submit(board, world.request(world.submission("ok2", team="t", seed=3), "ok2", daily_limit=3),
               scorer=fake_scorer())
        kept = _objects(world)
        with pytest.raises(RuleError, match="used its 3 submission"):   # 1 scored + 1 failed + 1 scored
            submit(board, world.request(world.submission("late", team="t", seed=4), "late", daily_limit=3),
                   scorer=fake_scorer())
        assert _objects(world) == kept                                   # a rule refusal keeps nothing
        (refused,) = rows(board, Submission, Submission.entry_name == "late")
        assert refused.files_hash is None                                # and does not count



def test_disk_full_while_keeping_files_is_one_clean_error(world: World, monkeypatch) -> None:
    from benchmark.store import filestore

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filestore.shutil, "copyfileobj", full)
    with world.board() as board:
        before = snapshot(board)
    out = cli("submit", world.submission("full"), "--data", world.data, "--db", world.db, "--name", "full",
              "--no-meteor", "--n-boot", "20")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0].startswith("error: ") and "no space left" in out.stderr
    with world.board() as board:
        after = snapshot(board)
        assert {t: r for t, r in after.items() if t != "submissions"} == \
               {t: r for t, r in before.items() if t != "submissions"}
        assert [r.status for r in rows(board, Submission)] == ["failed"]
        assert not rows(board, Entry)
        tmp = board.files.root / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())                    # no half-written object


def test_disk_full_while_extracting_is_one_clean_error(world: World, tmp_path: Path, monkeypatch) -> None:
    import zipfile

    from submissions import archive

    sub = world.submission("zipped")
    dest = tmp_path / "sub.zip"
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(sub.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(sub).as_posix())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "_copy_capped", full)
    out = cli("score", dest, "--data", world.data, "--no-meteor")
    assert out.returncode == 2 and out.stderr.startswith("error: sub.zip: no space left") and "Traceback" not in out.stderr


def test_read_only_board_refuses_submit_and_keeps_nothing(world: World, tmp_path: Path) -> None:
    assert cli("submit", world.submission("first"), "--data", world.data, "--db", world.db, "--name", "first",
               "--no-meteor", "--n-boot", "20").returncode == 0
    with world.board() as board:
        before = snapshot(board)
    files = tmp_path / "ro-files"
    url = f"sqlite:///file:{world.db}?mode=ro&uri=true"
    out = cli("submit", world.submission("second", seed=2), "--data", world.data, "--db", url, "--files", files,
              "--name", "second", "--no-meteor", "--n-boot", "20")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "readonly" in out.stderr.replace("-", "")
    assert len(out.stderr.strip().splitlines()) == 1
    with world.board() as board:
        assert snapshot(board) == before
    assert not files.exists() or not any(files.rglob("*.*"))


# ------------------------------------------------------------------------------- the boundary
def test_unexpected_error_is_one_line_unless_debugging(world: World, monkeypatch) -> None:
    from benchmark.scoring import score

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody anticipated\nsecond line")

    monkeypatch.setattr(score, "score_submission", broken)
    out = cli("score", world.submission("x"), "--data", world.data)
    assert out.returncode == 2 and out.stderr == ("error: mmtt score: unexpected RuntimeError: something nobody "
                                                  "anticipated (set MMTT_DEBUG=1 to see the traceback)\n")
    monkeypatch.setenv("MMTT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="nobody anticipated"):
        cli("score", world.submission("x"), "--data", world.data)


def test_non_utf8_name_in_a_real_process(world: World) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmark", "submit", str(world.submission("x")), "--data",
                          str(world.data), "--db", world.db, "--name", b"caf\xe9", "--no-meteor"],
                         capture_output=True, timeout=120)
    assert out.returncode == 2 and b"Traceback" not in out.stderr
    assert out.stderr.startswith(b"error: the entry name holds bytes that are not valid UTF-8")


# ------------------------------------------------------------------------------ rescore gate
def test_rescore_against_changed_truth_needs_update(world: World) -> None:
    assert cli("submit", world.submission("first"), "--data", world.data, "--db", world.db, "--name", "first",
               "--no-meteor", "--n-boot", "20").returncode == 0
    records = json.loads((world.data / "test-mutilabel.json").read_text())
    records[0]["caption"] = "The chin colour does not match."
    (world.data / "test-mutilabel.json").write_text(json.dumps(records))
    with world.board() as board:
        before = snapshot(board)
    refused = cli("rescore", "--db", world.db, "--data", world.data)
    assert refused.returncode == 2 and "pass --update" in refused.stderr
    with world.board() as board:
        assert snapshot(board) == before
    done = cli("rescore", "--db", world.db, "--data", world.data, "--update")
    assert done.returncode == 0, done.stderr
    assert "1 updated" in done.stdout
