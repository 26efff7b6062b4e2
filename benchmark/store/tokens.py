"""Submission tokens (web board and submission API): issued by a maintainer, bound to a team, stored hashed.

A token is `mmtt_<id>_<secret>`: the id (public, 8 hex digits) names its row, the secret
(32 random bytes) is what proves possession. Only SHA-256 of the whole token is kept — enough
for a random secret of that length, and a leaked database grants no submission rights. Tokens
live in the store's `settings` table under `board_token:<id>` (a JSON record), so no schema
change is needed; revoked tokens keep their row (with `revoked_at`) for the record.
`verify` is the one lookup the board's Submit page and the submission API share; `mmtt board
token` (the CLI) writes the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

KEY_PREFIX = "board_token:"
_TOKEN = re.compile(r"^mmtt_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class TokenRecord:
    id: str
    team: str
    hash: str
    note: str = ""
    created_at: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_value(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, value: str) -> "TokenRecord | None":
        try:
            data = json.loads(value)
            return cls(**{k: data[k] for k in ("id", "team", "hash")},
                       note=data.get("note", ""), created_at=data.get("created_at", ""),
                       revoked_at=data.get("revoked_at"))
        except (ValueError, KeyError, TypeError):
            return None


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(token: str) -> str | None:
    """The id of a well-formed token (None for anything else: no lookup is made for it)."""
    match = _TOKEN.match((token or "").strip())
    return match.group(1) if match else None


def setting_key(tid: str) -> str:
    return KEY_PREFIX + tid


def new_token(team: str, note: str = "", taken: set[str] | None = None) -> tuple[str, TokenRecord]:
    """A fresh token (shown once) and the record to store for it."""
    taken = taken or set()
    tid = secrets.token_hex(4)
    while tid in taken:
        tid = secrets.token_hex(4)
    token = f"mmtt_{tid}_{secrets.token_urlsafe(32)}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return token, TokenRecord(id=tid, team=team, hash=hash_token(token), note=note, created_at=now)


def check(token: str, stored_value: str | None) -> TokenRecord | None:
    """The record when `token` matches the stored value and is not revoked, else None."""
    if stored_value is None:
        return None
    record = TokenRecord.from_value(stored_value)
    if record is None or not record.active:
        return None
    return record if hmac.compare_digest(record.hash, hash_token(token.strip())) else None


def verify(session: "Session", token: str) -> TokenRecord | None:
    """The record of a valid, unrevoked `token`, else None (no lookup for a malformed one)."""
    from benchmark.store.models import Setting

    tid = token_id(token)
    if tid is None:
        return None
    row = session.get(Setting, setting_key(tid))
    return check(token, None if row is None else row.value)
