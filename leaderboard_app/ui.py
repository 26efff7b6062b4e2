"""Streamlit pieces shared by the pages: config, safe text, errors, split and protocol pickers.

User content (entry names, descriptions, error messages quoting uploaded files) only ever goes
through `text()` / `md_escape`: never raw into markdown and never with `unsafe_allow_html`.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import streamlit as st

from benchmark.errors import BenchmarkError
from benchmark.metrics import METRIC_VERSION
from leaderboard_app import queries
from leaderboard_app.config import AppConfig, load_config
from leaderboard_app.present import md_escape

PROTOCOLS = ("strict", "official")
PROTOCOL_HELP = {
    "strict": "the whole split is scored; missing predictions are rejected (or, when allowed, count as "
              "empty); CIDEr's IDF comes from the whole split",
    "official": "the official evaluate_metrics.py rules: only ids present in both truth and predictions are "
                "scored (as in the paper)",
}


def config() -> AppConfig:
    return load_config()


def error(exc: BaseException | str, *, hint: str = "") -> None:
    """A user-facing error in plain words: the one-line message, then every listed problem."""
    headline = str(exc)
    st.error(md_escape(headline) + (f"  \n{hint}" if hint else ""), icon="⚠️")
    problems = getattr(exc, "problems", None) or []
    if problems:
        with st.expander(f"All {len(problems)} problem(s) found", expanded=True):
            st.code("\n".join(str(p) for p in problems), language=None, wrap_lines=True)


def show_internal_error(exc: BaseException) -> None:
    """What the public sees when a page breaks: one plain sentence. The traceback (with its
    server paths) goes to the server's log only."""
    logging.getLogger("mmtt.board").error("page failed", exc_info=exc)
    st.error("This part of the board could not be shown (an internal error; the details are in the server's "
             "log). The rest of the board is unaffected.", icon="⚠️")


def board_or_stop(cfg: AppConfig) -> list[dict[str, Any]]:
    """The board's splits, or an explanation and `st.stop()` when the board cannot be read."""
    try:
        splits = queries.splits(cfg.db)
    except BenchmarkError as exc:
        error(exc, hint="Start the board with `mmtt board --db URL` pointing at an existing board.")
        st.stop()
    if not splits:
        st.info("No scores on this board yet. Submit with `mmtt submit` (or on the Submit page).")
        st.stop()
    return splits


def split_picker(splits: Sequence[dict[str, Any]], *, key: str, label: str = "Split") -> dict[str, Any]:
    """A split chooser (the query string's `split` preselects); shows which splits are hidden."""
    names = [s["name"] for s in splits]
    wanted = st.query_params.get("split")
    default = wanted if wanted in names else ("test" if "test" in names else names[0])
    by_name = {s["name"]: s for s in splits}
    choice = st.selectbox(label, names, index=names.index(default), key=key,
                          format_func=lambda n: n + ("  (hidden truth)" if by_name[n]["hidden"] else "")
                          + (f"  ({by_name[n]['variant']} variant of {by_name[n]['base']})"
                             if by_name[n].get("variant") else ""))
    return by_name[choice]


def protocol_picker(*, key: str) -> str:
    wanted = st.query_params.get("protocol")
    return st.selectbox("Protocol", PROTOCOLS, index=PROTOCOLS.index(wanted) if wanted in PROTOCOLS else 0,
                        key=key, help="; ".join(f"{k}: {v}" for k, v in PROTOCOL_HELP.items()))


def stamps_caption(protocol: str) -> None:
    st.caption(f"Scorer (metric code) v{METRIC_VERSION} · protocol **{protocol}**: {PROTOCOL_HELP[protocol]}.")


def text(value: str, *, muted: bool = False) -> None:
    """User text shown as text (escaped markdown: no links, HTML, images or formulas). Text that is
    not valid Unicode (a lone surrogate kept from before submissions were checked for it) is shown
    with U+FFFD in its place: it cannot be sent to the browser as it is."""
    value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    (st.caption if muted else st.markdown)(md_escape(value, inline=False).replace("\n", "  \n"))
