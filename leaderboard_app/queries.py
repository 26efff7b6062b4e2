"""Every database access of the web board, in one place: read-only, cached, and public-only.

Why it looks like this:
- The pages never touch SQLAlchemy: they call these functions, so what the public can see is
  decided here (entries: public only; hidden splits: aggregates only — `benchmark.store.detail`
  enforces it, and the board's breakdown view checks it too).
- The engine is read-only (`readonly.py`: SQLite `?mode=ro` plus a statement guard). The one
  write path is `submit_board()`, used by the Submit page after a valid token.
- Caching: results are cached with `st.cache_data`, keyed by a cheap change marker (the newest
  submission, evaluation, entry, split and setting stamps), itself re-read at most every
  `MARKER_TTL_S` seconds. A new submission or re-score thus shows up within that time, and
  1,000 entries render from memory after the first query.
- Ranking is `benchmark.store.ranking`: the same query as `mmtt leaderboard`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from benchmark.store.db import Database
from leaderboard_app.readonly import BoardUnavailable, readonly_database

MARKER_TTL_S = 5.0


@st.cache_resource(show_spinner=False)
def read_database(url: str) -> Database:
    """The shared read-only database (its `url` stays the board's, so the files folder is found)."""
    return readonly_database(url)


def submit_board(url: str, files: Path | None):
    """The one writable handle: opened per web submission (after its token checked out), closed after."""
    from benchmark.store.board import Board

    return Board.open(url, files, upgrade=False)


def _read(url: str, fn, what: str = "reading the board"):
    try:
        return read_database(url).read(fn, what)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        raise BoardUnavailable(f"cannot read the board at {_safe_url(url)}: {reason}") from None


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used in messages
        return "the configured database"


# ------------------------------------------------------------------------- change marker
@st.cache_data(ttl=MARKER_TTL_S, show_spinner=False)
def _marker(url: str) -> str:
    from benchmark.store.models import Entry, Evaluation, Setting, Split, Submission

    def read(session) -> str:
        row = session.execute(select(
            select(func.max(Submission.id)).scalar_subquery(),
            select(func.max(Submission.updated_at)).scalar_subquery(),
            select(func.max(Evaluation.id)).scalar_subquery(),
            select(func.count(Evaluation.id)).where(Evaluation.current.is_(True)).scalar_subquery(),
            select(func.max(Entry.updated_at)).scalar_subquery(),
            select(func.max(Split.updated_at)).scalar_subquery(),
            select(func.max(Setting.updated_at)).scalar_subquery())).one()
        return "|".join(map(str, row))

    return _read(url, read, "checking for changes")


def change_marker(url: str) -> str:
    """A string that changes whenever anything the board shows may have changed."""
    return _marker(url)


def invalidate() -> None:
    """Forget the change marker (after a web submission), so the next read sees the new rows."""
    _marker.clear()


# ------------------------------------------------------------------------------- splits
@st.cache_data(show_spinner=False, max_entries=32)
def _splits(url: str, marker: str) -> list[dict[str, Any]]:
    from benchmark.store.detail import list_splits

    def read(session) -> list[dict[str, Any]]:
        return [{k: s[k] for k in ("name", "n_items", "hidden", "fingerprint", "base", "variant")}
                for s in list_splits(session)]

    return _read(url, read)


def splits(url: str) -> list[dict[str, Any]]:
    """The board's splits: name, n_items, hidden, fingerprint, and for a robustness variant its base
    split and variant (no entry counts: private ones would show)."""
    return _splits(url, change_marker(url))


# -------------------------------------------------------------------------------- board
@st.cache_data(show_spinner=False, max_entries=128)
def _board(url: str, split: str, protocol: str, metric: str | None, team_entry: str | None,
           marker: str) -> tuple[list, str]:
    from benchmark.store.ranking import leaderboard
    from benchmark.store.rules import rule_value

    def read(session):
        rule = team_entry or rule_value(session, "team_entry")
        return leaderboard(session, split, protocol=protocol, metric=metric, team_entry=rule, public=True), rule

    return _read(url, read)


def board(url: str, split: str, protocol: str = "strict", metric: str | None = None,
          team_entry: str | None = None) -> tuple[list, str]:
    """(ranked public rows, team-entry rule used) — exactly `mmtt leaderboard`'s query."""
    return _board(url, split, protocol, metric, team_entry, change_marker(url))


@st.cache_data(show_spinner=False, max_entries=32)
def _breakdowns(url: str, split: str, protocol: str, marker: str) -> dict[int, dict[str, dict[str, dict]]]:
    from benchmark.store.detail import HiddenSplitError, get_split
    from benchmark.store.models import BreakdownScore, Entry, Evaluation

    def read(session):
        split_row = get_split(session, split)
        if split_row.hidden:
            raise HiddenSplitError(f"split '{split}' is hidden: breakdowns are not published")
        q = (select(Evaluation.submission_id, BreakdownScore.dimension, BreakdownScore.group_name,
                    BreakdownScore.n, BreakdownScore.metric, BreakdownScore.value)
             .join(Evaluation, BreakdownScore.evaluation_id == Evaluation.id)
             .join(Entry, Evaluation.entry_id == Entry.id)
             .where(Evaluation.split_id == split_row.id, Evaluation.protocol == protocol,
                    Evaluation.current.is_(True), Entry.visibility == "public"))
        out: dict[int, dict[str, dict[str, dict]]] = {}
        for sub_id, dim, group, n, metric, value in session.execute(q):
            g = out.setdefault(sub_id, {}).setdefault(dim, {}).setdefault(group, {"n": n, "metrics": {}})
            g["metrics"][metric] = value
        return out

    return _read(url, read)


def breakdowns(url: str, split: str, protocol: str = "strict") -> dict[int, dict[str, dict[str, dict]]]:
    """{submission id: {dimension: {group: {"n", "metrics"}}}} of the split's current public
    evaluations. Raises `HiddenSplitError` on a hidden split."""
    return _breakdowns(url, split, protocol, change_marker(url))


# ------------------------------------------------------------------------------ entries
@st.cache_data(show_spinner=False, max_entries=32)
def _entries(url: str, protocol: str, marker: str) -> dict[str, list[str]]:
    from benchmark.store.models import Entry, Evaluation, Split, Submission

    def read(session) -> dict[str, list[str]]:
        q = (select(Entry.name, Split.name).join(Evaluation, Evaluation.entry_id == Entry.id)
             .join(Split, Evaluation.split_id == Split.id).join(Submission, Evaluation.submission_id == Submission.id)
             .where(Evaluation.current.is_(True), Evaluation.protocol == protocol, Entry.visibility == "public",
                    Submission.status == "scored")
             .order_by(func.lower(Entry.name), Split.name))
        out: dict[str, list[str]] = {}
        for entry, split in session.execute(q):
            out.setdefault(entry, []).append(split)
        return out

    return _read(url, read)


def entries(url: str, protocol: str = "strict") -> dict[str, list[str]]:
    """{public entry: [splits it has a current score on]}, entries sorted by name."""
    return _entries(url, protocol, change_marker(url))


@st.cache_data(show_spinner=False, max_entries=256)
def _entry_detail(url: str, entry: str, split: str, protocol: str, marker: str) -> dict[str, Any]:
    from benchmark.store.detail import entry_detail as detail

    return _read(url, lambda s: detail(s, entry, split, protocol, public=True))


def entry_detail(url: str, entry: str, split: str, protocol: str = "strict") -> dict[str, Any]:
    """`benchmark.store.detail.entry_detail` on the public side (no breakdown on hidden splits)."""
    return _entry_detail(url, entry, split, protocol, change_marker(url))


@st.cache_data(show_spinner=False, max_entries=16)
def _sample_table(url: str, entry: str, split: str, protocol: str, marker: str):
    from benchmark.store.detail import sample_table as table

    return _read(url, lambda s: table(s, entry, split, protocol, public=True))


def sample_table(url: str, entry: str, split: str, protocol: str = "strict"):
    """Per-sample scores (DataFrame). Raises `HiddenSplitError` on a hidden split."""
    return _sample_table(url, entry, split, protocol, change_marker(url))


@st.cache_data(show_spinner=False, max_entries=64)
def _kept_files(url: str, files: str | None, entry: str, split: str, protocol: str, marker: str) -> dict[str, Any]:
    from benchmark.store.board import files_root
    from benchmark.store.detail import HiddenSplitError, current_evaluation

    def read(session) -> dict[str, Any]:
        _, split_row, ev = current_evaluation(session, entry, split, protocol, public=True)
        if split_row.hidden:
            raise HiddenSplitError(f"split '{split}' is hidden: predictions are not published")
        return {"files_hash": ev.submission.files_hash, "submission_id": ev.submission_id,
                "fingerprint": split_row.fingerprint}

    out = _read(url, read)
    out["files_root"] = str(files_root(read_database(url), files, record=False))
    return out


def kept_files(url: str, files: Path | None, entry: str, split: str, protocol: str = "strict") -> dict[str, Any]:
    """Where an entry's kept submission files are: {files_root, files_hash, submission_id,
    fingerprint}. Raises `HiddenSplitError` on a hidden split."""
    return _kept_files(url, str(files) if files else None, entry, split, protocol, change_marker(url))


# ------------------------------------------------------------------------------ compare
@st.cache_data(show_spinner=False, max_entries=64)
def _compare(url: str, a: str, b: str, split: str, protocol: str, n_boot: int, seed: int, marker: str) -> dict:
    from benchmark.store.compare import compare as run

    return _read(url, lambda s: run(s, a, b, split, protocol, n_boot=n_boot, seed=seed, public=True), "comparing")


def compare(url: str, a: str, b: str, split: str, protocol: str = "strict", *, n_boot: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """The paired test of A - B (`mmtt compare`), public entries only."""
    return _compare(url, a, b, split, protocol, n_boot, seed, change_marker(url))


# --------------------------------------------------------------------------- robustness
@st.cache_data(show_spinner=False, max_entries=16)
def _robustness(url: str, split: str, protocol: str, n_boot: int, marker: str):
    from benchmark.store.robust import robustness as table
    from benchmark.store.rules import rule_value

    return _read(url, lambda s: table(s, split, protocol=protocol, team_entry=rule_value(s, "team_entry"),
                                      public=True, n_boot=n_boot), "computing the robustness table")


def robustness(url: str, split: str, protocol: str = "strict", *, n_boot: int = 1000):
    """`mmtt leaderboard --robust` on the public side: a `benchmark.store.robust.RobustTable`."""
    return _robustness(url, split, protocol, n_boot, change_marker(url))


# ------------------------------------------------------------------------------- submit
def verify_token(url: str, token: str):
    """The token's record when it is valid and not revoked, else None (never cached)."""
    from benchmark.store.tokens import verify

    return _read(url, lambda session: verify(session, token or ""), "checking the token")


def upload_cap_mb(url: str, app_cap_mb: float) -> float:
    """The upload cap in force: the app's, or the board's `max_upload_mb` rule when lower."""
    from benchmark.store.rules import rule_value

    board_cap = _read(url, lambda s: rule_value(s, "max_upload_mb"))
    return float(min(app_cap_mb, board_cap))
