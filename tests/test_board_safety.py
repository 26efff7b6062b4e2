"""What the public must never get: HTML/JS from user text, writes through the read engine,
hidden-split breakdowns or per-sample data."""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from benchmark.store.detail import HiddenSplitError
from leaderboard_app import queries
from leaderboard_app.present import md_escape, safe_url
from leaderboard_app.readonly import ReadOnlyError, readonly_database, readonly_engine
from tests.test_board_app import run_app
from tests.test_board_helpers import INJECT_DESC, INJECT_NAME, board_world  # noqa: F401
from tests.test_store_helpers import snapshot


def _elements(at: AppTest):
    out = []

    def walk(node) -> None:
        out.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)   # noqa: SLF001 - every element of the page, blocks included
    return out


def _assert_inert(at: AppTest) -> str:
    """No raw HTML anywhere; every markdown body free of live tags and script links. Returns all text."""
    texts = []
    for el in _elements(at):
        proto = getattr(el, "proto", None)
        kind = getattr(el, "type", "")
        assert kind != "html", "st.html must not be used"
        if proto is not None and hasattr(proto, "allow_html"):
            assert not proto.allow_html, f"unsafe_allow_html on {kind}"
        body = getattr(proto, "body", None) if proto is not None else None
        if isinstance(body, str):
            texts.append(body)
            low = body.lower()
            assert not re.search(r"(?<!\\)<(script|img|b>)", low), body     # only escaped tags
            assert not re.search(r"(?<!\\)\]\(javascript", low), body
    return "\n".join(texts)


def test_injection_in_names_and_descriptions_stays_text(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch)
    _assert_inert(at)
    assert INJECT_NAME in at.dataframe[0].value["Entry"].tolist()   # canvas cells: drawn as text
    at = run_app(board_world, monkeypatch, "pages/entry.py", entry=INJECT_NAME, split="test")
    body = _assert_inert(at)
    assert at.title[0].value == md_escape(INJECT_NAME)
    assert md_escape(INJECT_DESC.splitlines()[0]) in body                # the description, escaped
    assert "\\*\\*bold\\*\\*" in body and "\\:red\\[red\\]" in body and "\\$x^2\\$".replace("^", "\\^") in body
    links = at.get("link_button")
    assert [b.proto.url for b in links] == ["https://example.org/code"]  # javascript: paper URL dropped
    at = run_app(board_world, monkeypatch, "pages/compare.py")
    at.multiselect(key="cmp_entries").set_value([INJECT_NAME, "alpha"]).run()
    _assert_inert(at)
    at = run_app(board_world, monkeypatch, "pages/plots.py")
    _assert_inert(at)


def test_md_escape_and_safe_url() -> None:
    assert md_escape("[a](javascript:x)") == "\\[a\\]\\(javascript\\:x\\)"
    assert md_escape("<b>x</b>") == "\\<b\\>x\\<\\/b\\>"
    assert md_escape("a\nb") == "a b" and md_escape("a\nb", inline=False) == "a\nb"
    assert safe_url("https://x.org/p?q=1") == "https://x.org/p?q=1"
    for bad in ("javascript:alert(1)", "data:text/html,x", "http://x y", " ", "ftp://x", "https://x\nevil",
                "https://x\ty"):
        assert safe_url(bad) is None, bad


def _snapshot(world) -> dict:
    with queries.submit_board(world.url, None) as board:
        return snapshot(board)


def test_the_read_engine_cannot_write(board_world) -> None:
    before = _snapshot(board_world)
    database = readonly_database(board_world.url)
    try:
        with pytest.raises(Exception) as caught:   # refused before it reaches SQLite
            database.write(lambda s: s.execute(text("INSERT INTO settings (key, value, updated_at) "
                                                    "VALUES ('x', 'y', '2024-01-01')")))
        assert isinstance(caught.value, ReadOnlyError) or "read-only" in str(caught.value) \
            or "readonly" in str(caught.value)
        for sql in ("DELETE FROM entries", "UPDATE entries SET name = 'x'", "DROP TABLE entries",
                    "PRAGMA journal_mode = DELETE", "ATTACH DATABASE ':memory:' AS m"):
            with pytest.raises(Exception):
                database.read(lambda s, sql=sql: s.execute(text(sql)))
        assert database.read(lambda s: s.execute(text("SELECT count(*) FROM entries")).scalar()) > 0
    finally:
        database.dispose()
    # and SQLite itself refuses: the file is opened read-only (mode=ro), guard or not
    engine = readonly_engine(board_world.url)
    assert "mode=ro" in str(engine.url)
    raw = engine.raw_connection()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            raw.cursor().execute("INSERT INTO settings (key, value, updated_at) VALUES ('x', 'y', '2024-01-01')")
    finally:
        raw.close()
        engine.dispose()
    assert _snapshot(board_world) == before


def test_hidden_split_data_is_refused_on_the_public_side(board_world) -> None:
    url = board_world.url
    with pytest.raises(HiddenSplitError):
        queries.sample_table(url, "alpha", "hidden")
    with pytest.raises(HiddenSplitError):
        queries.breakdowns(url, "hidden")
    with pytest.raises(HiddenSplitError):
        queries.kept_files(url, None, "alpha", "hidden")
    detail = queries.entry_detail(url, "alpha", "hidden")
    assert "breakdown" not in detail and detail["metrics"]
    with pytest.raises(Exception, match="no entry named 'secret'"):
        queries.entry_detail(url, "secret", "test")                    # private entries stay private
    assert "secret" not in queries.entries(url)


def test_hidden_split_pages_carry_no_sample_ids(board_world, monkeypatch) -> None:
    ids = [r["image_id"] for r in board_world.records]
    for page, params in (("pages/entry.py", {"entry": "alpha", "split": "hidden"}),
                         ("pages/plots.py", {"split": "hidden"}),
                         (None, {"split": "hidden"})):
        at = run_app(board_world, monkeypatch, page, **params)
        blob = _assert_inert(at) + " ".join(df.value.to_csv() for df in at.dataframe)
        assert not any(i in blob or i.replace("_", "\\_") in blob for i in ids), page
        assert not at.get("image")
