"""The store's user-facing errors (one located line each; the CLI exits 2 on them)."""

from __future__ import annotations

from benchmark.errors import BenchmarkError


class StoreError(BenchmarkError):
    """A problem with the board database, its contents or its rules."""


class RuleError(StoreError):
    """A submission breaks a challenge rule (daily limit, upload size)."""


class DailyLimitError(RuleError):
    """A team has used its submissions to a split for today (the API answers 429)."""
