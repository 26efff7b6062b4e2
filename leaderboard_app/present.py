"""Turning store rows into what the pages show: labels, number formats, filters, tables, CSV.

No Streamlit and no database here, so the board's logic (filtering, breakdown switching,
column choice, CSV content) is plain functions over `BoardRow`s, testable without a server.
Scores are shown x100 (as in the MMTT paper; CIDEr too), with their 95% interval.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence
from urllib.parse import urlencode

import pandas as pd

from benchmark.metrics import registry
from benchmark.scoring.score import BREAKDOWN_AXES
from benchmark.store.ranking import BoardRow, rank_rows

SCALE = 100.0
# every table below is derived from the metric registry (the one place a metric is declared)
_ALL = registry.metrics()
HEADLINE: tuple[tuple[str, str], ...] = tuple((k, m.label) for k, m in _ALL.items() if m.headline)
EXTRA: tuple[tuple[str, str], ...] = tuple((k, m.label) for k, m in _ALL.items() if not m.headline)
LABELS: dict[str, str] = dict(HEADLINE + EXTRA)
MASK_METRICS = tuple(k for k, _ in HEADLINE if _ALL[k].family == "mask")
TEXT_METRICS = tuple(k for k, _ in HEADLINE if _ALL[k].family != "mask")
METRIC_HELP: dict[str, str] = {k: m.help for k, m in _ALL.items()}
TASK_FILTERS = {"any task": None, "localization": {"localization"}, "interpretation": {"interpretation"},
                "both": {"localization", "interpretation"}}
TASK_SHORT = {("localization",): "mask", ("interpretation",): "text",
              ("localization", "interpretation"): "mask + text"}
# the breakdown's METEOR is the mean of segment scores, named so by the scorer
BREAKDOWN_ALIASES = {"meteor_segment_mean": "meteor"}
DEFAULT_COLUMNS = ("Kind", "Team", "Tasks", "Date", "Scorer", "Protocol")
OPTIONAL_COLUMNS = ("Kind", "Team", "Model", "Tasks", "Date", "Scorer", "Protocol", "Images", "Data", "Details")


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def scaled(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) * SCALE


def fmt(value: float | None, digits: int = 2) -> str:
    v = scaled(value)
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_ci(value: float | None, ci: Sequence[float | None] | None) -> str:
    """`66.06 (65.2–66.9)`: value x100 with its 95% interval, or the value alone."""
    text = fmt(value)
    if value is None or not ci or ci[0] is None or ci[1] is None:
        return text
    return f"{text} ({fmt(ci[0], 1)}–{fmt(ci[1], 1)})"


def tasks_label(tasks: Iterable[str]) -> str:
    key = tuple(t for t in ("localization", "interpretation") if t in set(tasks))
    return TASK_SHORT.get(key, ", ".join(key) or "–")


def board_metrics(rows: Sequence[BoardRow]) -> list[str]:
    """Metrics to offer: every headline metric (even when no row has it yet), then extras present."""
    present = {m for r in rows for m in r.metrics}
    return [m for m, _ in HEADLINE] + [m for m, _ in EXTRA if m in present]


# ------------------------------------------------------------------------------- filters
def search(rows: Sequence[BoardRow], text: str) -> list[BoardRow]:
    """Rows whose entry, team or model contains `text` (case-insensitive, literal: no regex)."""
    needle = (text or "").strip().casefold()
    if not needle:
        return list(rows)
    return [r for r in rows if needle in r.entry.casefold() or needle in r.team.casefold()
            or needle in r.model.casefold()]


def by_task(rows: Sequence[BoardRow], choice: str) -> list[BoardRow]:
    """Rows whose entry covers the chosen task(s): localization, interpretation, or both."""
    need = TASK_FILTERS.get(choice)
    if not need:
        return list(rows)
    return [r for r in rows if need <= set(r.tasks)]


@dataclass(frozen=True)
class Breakdown:
    """A view of the board: all images (dimension None) or one group of a breakdown axis."""

    dimension: str | None = None
    group: str | None = None

    @property
    def title(self) -> str:
        if self.dimension is None:
            return "all images"
        return f"{self.dimension}: {self.group}"


def breakdown_choices(breakdowns: dict[int, dict[str, dict[str, dict]]]) -> list[Breakdown]:
    groups: dict[str, set[str]] = {axis: set() for axis in BREAKDOWN_AXES}
    for dims in breakdowns.values():
        for dim, g in dims.items():
            groups.setdefault(dim, set()).update(g)
    return [Breakdown()] + [Breakdown(dim, name) for dim in BREAKDOWN_AXES for name in sorted(groups[dim])]


def apply_breakdown(rows: Sequence[BoardRow], breakdowns: dict[int, dict[str, dict[str, dict]]],
                    view: Breakdown, metric: str | None) -> list[BoardRow]:
    """The rows with their numbers switched to one method / source group, re-ranked.

    Which entry represents a team stays the board's choice (made on all images); the order and
    the ranks are recomputed by `benchmark.store.ranking.rank_rows` — the board's own rules —
    on the group's numbers. Groups have no stored CI, so none is shown; rows without the group
    are left out. `n_scored` becomes the group's size.
    """
    if view.dimension is None:
        return list(rows)
    out = []
    for row in rows:
        group = breakdowns.get(row.submission_id, {}).get(view.dimension, {}).get(view.group)
        if group is None:
            continue
        r = copy.copy(row)
        r.metrics = {BREAKDOWN_ALIASES.get(k, k): v for k, v in group["metrics"].items()}
        r.ci95 = {}
        r.n_scored = int(group["n"])
        out.append(r)
    return rank_rows(out, metric=metric, team_entry="all")


# --------------------------------------------------------------------------------- table
def entry_link(entry: str, split: str, protocol: str) -> str:
    """A link to the entry page (relative: works under any base path)."""
    return "entry?" + urlencode({"entry": entry, "split": split, "protocol": protocol})


def board_table(rows: Sequence[BoardRow], metrics: Sequence[str], columns: Sequence[str], *,
                show_ci: bool, split: str) -> pd.DataFrame:
    """The displayed table: rank, entry, chosen info columns, chosen metrics (x100, with CIs)."""
    data: dict[str, list[Any]] = {"Rank": [r.rank for r in rows], "Entry": [r.entry for r in rows]}
    info = {
        "Kind": lambda r: " ".join(x for x in ("★ baseline" if r.baseline else "", "⚑ flagged" if r.flagged else "")
                                   if x),
        "Team": lambda r: r.team,
        "Model": lambda r: r.model,
        "Tasks": lambda r: tasks_label(r.tasks),
        "Date": lambda r: r.submitted_at.strftime("%Y-%m-%d"),
        "Scorer": lambda r: f"v{r.metric_version}" + (" (stale)" if r.stale else ""),
        "Protocol": lambda r: r.protocol,
        "Images": lambda r: r.n_scored,
        "Data": lambda r: r.dataset_fingerprint.removeprefix("sha256:")[:12],
        "Details": lambda r: entry_link(r.entry, split, r.protocol),
    }
    for col in columns:
        if col in info:
            data[col] = [info[col](r) for r in rows]
    for m in metrics:
        if show_ci:
            data[label(m)] = [fmt_ci(r.metrics.get(m), r.ci95.get(m)) for r in rows]
        else:
            data[label(m)] = [scaled(r.metrics.get(m)) for r in rows]
    order = ["Rank", "Entry"] + (["Details"] if "Details" in columns else []) \
        + [c for c in OPTIONAL_COLUMNS if c in columns and c != "Details"] + [label(m) for m in metrics]
    return pd.DataFrame(data, columns=order)


def csv_table(rows: Sequence[BoardRow], metrics: Sequence[str], columns: Sequence[str], *, split: str,
              view: Breakdown) -> pd.DataFrame:
    """The shown rows and columns for download: numbers x100 as shown, CIs as their own columns."""
    table = board_table(rows, [], [c for c in columns if c != "Details"], show_ci=False, split=split)
    table.insert(0, "split", split)
    table.insert(1, "images", view.title)
    for m in metrics:
        table[label(m)] = [scaled(r.metrics.get(m)) for r in rows]
        if any(m in r.ci95 for r in rows):
            table[f"{label(m)} CI low"] = [scaled((r.ci95.get(m) or [None, None])[0]) for r in rows]
            table[f"{label(m)} CI high"] = [scaled((r.ci95.get(m) or [None, None])[1]) for r in rows]
    return table


def csv_bytes(table: pd.DataFrame) -> bytes:
    """CSV (UTF-8); text cells that a spreadsheet would run as a formula are
    prefixed with a quote (CSV injection: names are user content)."""
    safe = table.copy()
    for col in safe.columns:
        if safe[col].dtype == object:
            safe[col] = safe[col].map(_defuse)
    return safe.to_csv(index=False, float_format="%.4f").encode("utf-8")


def _defuse(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# ---------------------------------------------------------------------------------- text
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&^=\"'/%;,?@])")


def md_escape(text: str, *, inline: bool = True) -> str:
    """User text made inert for Streamlit markdown: every ASCII punctuation mark is backslash-
    escaped (CommonMark treats those as literals), so no link, image, HTML, colour directive or
    formula can be formed; newlines are flattened for inline use."""
    text = str(text)
    if inline:
        text = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def safe_url(url: str | None) -> str | None:
    """An http(s) URL without spaces or control characters, else None (never `javascript:`)."""
    url = (url or "").strip()
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", url, re.IGNORECASE) or any(ord(c) < 32 for c in url):
        return None
    return url


# ---------------------------------------------------------------------------- robustness
def fmt_pct(value: float | None, ci: Sequence[float | None] | None = None) -> str:
    """`2.9% (2.2–3.5)`: a share as a percentage with its 95% interval, or the value alone."""
    v = scaled(value)
    if v is None:
        return "–"
    if not ci or ci[0] is None or ci[1] is None:
        return f"{v:.1f}%"
    return f"{v:.1f}% ({scaled(ci[0]):.1f}–{scaled(ci[1]):.1f})"


def robust_table(table: Any, metric: str) -> pd.DataFrame:
    """One row per entry for `metric`: robustness rank, status, mean relative drop, and the clean
    (with its 95% CI) and degraded scores x100; "not evaluated" where an entry has no run on a
    variant (never a zero)."""
    from benchmark.store.robust import NOT_EVALUATED

    out: list[dict[str, Any]] = []
    for row in table.rows:
        item: dict[str, Any] = {"Robustness rank": row.rank, "Entry": row.entry + (" ★" if row.baseline else ""),
                                "Status": row.status,
                                "Mean rel. drop": fmt_pct(row.score) if row.score is not None else "–",
                                "Clean": fmt_ci(row.clean.get(metric), row.clean_ci95.get(metric))
                                if metric in row.clean else "–"}
        for variant in table.variants:
            drops = row.variants.get(variant)
            d = drops.get(metric) if drops is not None else None
            item[variant.capitalize()] = NOT_EVALUATED if drops is None else "–" if d is None else fmt(d.degraded)
        out.append(item)
    return pd.DataFrame(out)


def robust_drops(table: Any, metric: str) -> pd.DataFrame:
    """One row per entry for `metric`: per variant the drop clean - degraded (x100) and the relative
    drop (%), each with its paired-bootstrap 95% CI; "not evaluated" as in `robust_table`."""
    from benchmark.store.robust import NOT_EVALUATED

    out: list[dict[str, Any]] = []
    for row in table.rows:
        item: dict[str, Any] = {"Entry": row.entry + (" ★" if row.baseline else "")}
        for kind in ("Drop", "Rel. drop"):
            for variant in table.variants:
                drops = row.variants.get(variant)
                d = drops.get(metric) if drops is not None else None
                if drops is None:
                    item[f"{kind} {variant}"] = NOT_EVALUATED
                elif d is None:
                    item[f"{kind} {variant}"] = "–"
                else:
                    item[f"{kind} {variant}"] = (fmt_ci(d.drop, d.drop_ci) if kind == "Drop"
                                                 else fmt_pct(d.rel_drop, d.rel_ci))
        out.append(item)
    return pd.DataFrame(out)


def robust_long(table: Any) -> pd.DataFrame:
    """Every entry x variant x metric with numbers (x100; relative drops in %), for the full view and CSV."""
    out = []
    for row in table.rows:
        for variant, drops in row.variants.items():
            for m, d in drops.items():
                out.append({"Entry": row.entry, "Variant": variant, "Metric": label(m), "Clean": scaled(d.clean),
                            "Degraded": scaled(d.degraded), "Drop": scaled(d.drop),
                            "Drop CI low": scaled(d.drop_ci[0]), "Drop CI high": scaled(d.drop_ci[1]),
                            "Rel. drop %": scaled(d.rel_drop), "Rel. CI low %": scaled(d.rel_ci[0]),
                            "Rel. CI high %": scaled(d.rel_ci[1]), "Paired": d.paired})
    return pd.DataFrame(out)


def robust_plot_frame(table: Any, metric: str) -> pd.DataFrame:
    """Long rows (entry, condition, score x100) of `metric` for the clean-vs-degraded plot; only
    entries evaluated on at least one variant, conditions in the fixed order clean, variants."""
    out = []
    for row in table.rows:
        if metric not in row.clean or not any(metric in d for d in row.variants.values()):
            continue
        out.append({"entry": row.entry, "condition": "clean", "order": 0, "score": scaled(row.clean[metric])})
        for k, variant in enumerate(table.variants, start=1):
            d = row.variants.get(variant, {}).get(metric)
            if d is not None and d.degraded is not None:
                out.append({"entry": row.entry, "condition": variant, "order": k, "score": scaled(d.degraded)})
    return pd.DataFrame(out, columns=["entry", "condition", "order", "score"])
