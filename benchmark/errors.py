"""One exception type for every problem a user can fix: it carries a one-line, located message.

The CLI prints `error: <message>` and exits non-zero; no traceback ever reaches the user for these.
"""

from __future__ import annotations


class BenchmarkError(Exception):
    """A user-facing error. `str(err)` is one line naming the file, line and/or id at fault."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def report(self) -> str:
        """The full report: the headline, then every problem found (one per line)."""
        lines = [str(self)]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


class DatasetError(BenchmarkError):
    """The MMTT data on disk is broken (missing file, bad JSON, duplicate id, ...)."""
