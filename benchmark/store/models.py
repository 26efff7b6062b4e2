"""The board's schema: who submitted what, how it scored, and everything needed to trust the number.

Shape, and why:
- `entries` are models of `teams`; a `submission` is one upload of predictions for one split.
  Failed submissions keep their reason but may point at no entry (the entry is created only by the
  transaction that stores a successful score, so a failure never leaves half an entry).
- An `evaluation` is one scoring run of a submission (first scoring, then each re-score). Exactly
  one evaluation per (entry, split, protocol) is `current`; the board reads only those, so 1,000
  entries x 3 splits is a few thousand indexed rows.
- `scores` (one row per metric, with CI and stamps), `breakdown_scores` (per method / source) and
  `sample_scores` (per-sample arrays, one compressed column per row: 21,679 images x 1,000
  entries as rows would be tens of millions) hang off an evaluation.
- Types are portable (no SQLite-only features): the same models run on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("received", "validating", "scoring", "scored", "failed", "withdrawn")
IN_PROGRESS = ("received", "validating", "scoring")
VISIBILITIES = ("public", "private")
DIMENSIONS = ("method", "source")

# Constraint names are fixed so migrations written by hand and the models always agree.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A UTC timestamp: stored naive (portable), always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Setting(Base):
    """Board-wide rules (daily limit, upload cap, which team entry is shown), so CLI and web agree."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    authors: Mapped[list["Author"]] = relationship(back_populates="team", cascade="all, delete-orphan")
    entries: Mapped[list["Entry"]] = relationship(back_populates="team")


class Author(Base):
    __tablename__ = "authors"
    __table_args__ = (UniqueConstraint("team_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))

    team: Mapped[Team] = relationship(back_populates="authors")


class Split(Base):
    """A split of the benchmark as the board knows it: its truth fingerprint and whether it is hidden.

    A robustness variant (`test_blur`: the same items, degraded images) is a split of its own, with
    its own fingerprint, pointing at its clean base split (`base_split_id`, `variant`); its scores
    never mix with the base's because every evaluation hangs off exactly one split row.
    """

    __tablename__ = "splits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(80))
    n_items: Mapped[int] = mapped_column(Integer)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    base_split_id: Mapped[int | None] = mapped_column(ForeignKey("splits.id"), nullable=True)
    variant: Mapped[str | None] = mapped_column(String(32), nullable=True)   # downscale | blur | both
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Entry(Base):
    """A model on the board. Its name is unique board-wide (it is how `compare` names it)."""

    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
        Index(None, "team_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[str] = mapped_column(Text, default="")
    paper_url: Mapped[str] = mapped_column(String(500), default="")
    code_url: Mapped[str] = mapped_column(String(500), default="")
    tasks: Mapped[str] = mapped_column(String(64))  # comma-separated, from the manifest
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    team: Mapped[Team] = relationship(back_populates="entries")


class Submission(Base):
    """One upload. Names are kept as text too: a failed upload may have no entry, team or split row."""

    __tablename__ = "submissions"
    __table_args__ = (
        CheckConstraint("status IN ('received', 'validating', 'scoring', 'scored', 'failed', 'withdrawn')",
                        name="status"),
        Index(None, "team_name", "split_name", "created_at"),   # daily limit
        Index(None, "entry_id", "split_id", "status"),
        Index(None, "files_hash"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"), nullable=True)
    split_id: Mapped[int | None] = mapped_column(ForeignKey("splits.id"), nullable=True)
    entry_name: Mapped[str] = mapped_column(String(200), default="")
    team_name: Mapped[str] = mapped_column(String(200), default="")
    split_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    source_name: Mapped[str] = mapped_column(String(500), default="")   # the uploaded file's name
    files_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)  # content-addressed tree
    files_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    protocol: Mapped[str] = mapped_column(String(16), default="strict")
    allow_missing: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[str] = mapped_column(Text, default="{}")   # JSON: the other scoring options
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    submission_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)  # the scorer's
    # a robustness-variant submission: the entry's clean submission it was linked to when stored
    clean_submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    worker: Mapped[str] = mapped_column(String(200), default="")   # host:pid while in progress
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    entry: Mapped[Entry | None] = relationship()
    split: Mapped[Split | None] = relationship()


class Evaluation(Base):
    """One scoring run of a submission, with the stamps that make it reproducible."""

    __tablename__ = "evaluations"
    __table_args__ = (
        Index(None, "split_id", "protocol", "current"),
        Index(None, "entry_id", "split_id", "protocol"),
        Index(None, "submission_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    split_id: Mapped[int] = mapped_column(ForeignKey("splits.id"))
    protocol: Mapped[str] = mapped_column(String(16))
    metric_version: Mapped[str] = mapped_column(String(32))
    dataset_fingerprint: Mapped[str] = mapped_column(String(80))
    submission_hash: Mapped[str] = mapped_column(String(80))
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    n_truth: Mapped[int] = mapped_column(Integer)
    n_scored: Mapped[int] = mapped_column(Integer)
    n_missing: Mapped[int] = mapped_column(Integer)
    tasks: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)   # JSON: policies, CI method, warnings (no per-sample)
    digest: Mapped[str] = mapped_column(String(80))   # of everything stored: re-scoring compares it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship()
    entry: Mapped[Entry] = relationship()
    split: Mapped[Split] = relationship()
    scores: Mapped[list["Score"]] = relationship(back_populates="evaluation", cascade="all, delete-orphan",
                                                 passive_deletes=True)


class Score(Base):
    """A headline metric with its 95% CI, stamped (entry, split, protocol, version, fingerprint)."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "metric"),
        Index(None, "entry_id", "split_id", "protocol", "metric"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    split_id: Mapped[int] = mapped_column(ForeignKey("splits.id"))
    protocol: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    metric_version: Mapped[str] = mapped_column(String(32))
    dataset_fingerprint: Mapped[str] = mapped_column(String(80))

    evaluation: Mapped[Evaluation] = relationship(back_populates="scores")


class BreakdownScore(Base):
    """A metric on one group of images: a manipulation method or an image source."""

    __tablename__ = "breakdown_scores"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "dimension", "group_name", "metric"),
        CheckConstraint("dimension IN ('method', 'source', 'region')", name="dimension")  # BREAKDOWN_AXES,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    dimension: Mapped[str] = mapped_column(String(16))
    group_name: Mapped[str] = mapped_column(String(64))
    n: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class SampleScores(Base):
    """One per-sample column of an evaluation (ids, groups or a metric), compressed.

    `encoding` is `json` (a list of strings) or `f4` (little-endian float32, `shape` as JSON),
    zlib-compressed; see `benchmark.store.scores` for the codec.
    """

    __tablename__ = "sample_scores"
    __table_args__ = (UniqueConstraint("evaluation_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    encoding: Mapped[str] = mapped_column(String(8))
    shape: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
