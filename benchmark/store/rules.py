"""Challenge rules: daily submission limit, upload size cap, which entry of a team is shown.

The daily limit counts a team under every spelling of its name (see `names.name_key`) and counts
failed uploads whose files were kept.

Each rule is read, in order, from the command-line flag, the environment (`MMTT_DAILY_LIMIT`,
`MMTT_MAX_UPLOAD_MB`, `MMTT_TEAM_ENTRY`), the board's `settings` table (`mmtt db set KEY VALUE`,
so the CLI and the web board agree), else the default below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from benchmark.store.errors import DailyLimitError, StoreError

if TYPE_CHECKING:   # the CLI builds its parser from this module: keep SQLAlchemy out of its import
    from sqlalchemy.orm import Session

TEAM_ENTRY_CHOICES = ("best", "latest", "all")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 (no limit) or more")
    return value


def _team_entry(text: str) -> str:
    if text not in TEAM_ENTRY_CHOICES:
        raise ValueError(f"must be one of {', '.join(TEAM_ENTRY_CHOICES)}")
    return text


@dataclass(frozen=True)
class Rule:
    key: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    help: str


RULES: dict[str, Rule] = {r.key: r for r in (
    Rule("daily_limit", "MMTT_DAILY_LIMIT", 5, _count,
         "submissions per team per split per UTC day (0: no limit; baselines exempt)"),
    Rule("max_upload_mb", "MMTT_MAX_UPLOAD_MB", 2048.0, _positive_float,
         "largest accepted upload, in MiB (an archive's size, or a folder's total)"),
    Rule("team_entry", "MMTT_TEAM_ENTRY", "best", _team_entry,
         "which entry of a team the board shows: best, latest, or all"),
)}


def parse_rule(key: str, text: str) -> Any:
    rule = RULES.get(key)
    if rule is None:
        raise StoreError(f"unknown setting '{key}' (known: {', '.join(RULES)})")
    try:
        return rule.parse(str(text))
    except ValueError as exc:
        raise StoreError(f"setting {key}={text!r}: {exc}") from None


def rule_value(session: "Session | None", key: str, override: Any = None) -> Any:
    """The value of rule `key`: flag, else environment, else board setting, else default."""
    from benchmark.store.models import Setting

    if override is not None:
        return parse_rule(key, str(override))
    rule = RULES[key]
    env = os.environ.get(rule.env)
    if env not in (None, ""):
        return parse_rule(key, env)
    if session is not None:
        stored = session.get(Setting, key)
        if stored is not None:
            return parse_rule(key, stored.value)
    return rule.default


def set_rule(session: "Session", key: str, text: str) -> Any:
    from benchmark.store.models import Setting

    value = parse_rule(key, text)
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=str(value)))
    else:
        row.value = str(value)
    return value


def day_start(now: datetime | None = None) -> datetime:
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def submissions_today(session: "Session", team: str, split: str, now: datetime | None = None, *,
                      in_progress: bool = True) -> int:
    """Non-baseline submissions of `team` (any spelling with the same name key) to `split` since
    00:00 UTC that cost the board something: every one whose files were kept — failed ones too,
    or a token holder could fill the disk with uploads that fail — and every non-failed one
    (withdrawn ones count). A failure before any file was kept (a refused rule, a bad manifest)
    costs nothing and does not count. `in_progress=False` leaves out rows still being worked on
    (the pre-check before files are kept: a re-run takes such a row over)."""
    from sqlalchemy import func, or_, select

    from benchmark.store.models import IN_PROGRESS, Submission
    from benchmark.store.names import name_key

    query = (select(Submission.team_name, func.count(Submission.id))
             .where(Submission.split_name == split, Submission.baseline.is_(False),
                    Submission.created_at >= day_start(now),
                    or_(Submission.status != "failed", Submission.files_hash.is_not(None)))
             .group_by(Submission.team_name))
    if not in_progress:
        query = query.where(Submission.status.not_in(IN_PROGRESS))
    key = name_key(team)
    return sum(int(n) for name, n in session.execute(query) if name_key(name) == key)


def check_daily_limit(session: "Session", team: str, split: str, limit: int, now: datetime | None = None, *,
                      in_progress: bool = True) -> None:
    if limit <= 0:
        return
    used = submissions_today(session, team, split, now, in_progress=in_progress)
    if used >= limit:
        reset = day_start(now) + timedelta(days=1)
        raise DailyLimitError(f"team '{team}' has used its {limit} submission(s) to split '{split}' for today "
                         f"(next at {reset:%Y-%m-%d %H:%M} UTC)")


def lock_team_split(session: "Session", team: str, split: str) -> None:
    """Serialize rule checks for one (team, split) until the transaction ends, so concurrent
    intakes cannot all squeeze under the daily limit. SQLite's write transactions are already
    serial (`BEGIN IMMEDIATE`); PostgreSQL's are not under READ COMMITTED: there a transaction-
    scoped advisory lock keyed by the pair does it (other databases: the unique constraints only)."""
    import hashlib

    from sqlalchemy import text

    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"mmtt-rules\0{team}\0{split}".encode("utf-8")).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
