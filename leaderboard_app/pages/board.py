"""The main board: one ranked table per split, every headline metric with its 95% CI."""

from __future__ import annotations

import streamlit as st

from benchmark.metrics import METRIC_VERSION
from benchmark.scoring.score import BREAKDOWN_AXES
from benchmark.store.detail import HiddenSplitError
from leaderboard_app import queries
from leaderboard_app.present import (
    DEFAULT_COLUMNS,
    HEADLINE,
    METRIC_HELP,
    OPTIONAL_COLUMNS,
    TASK_FILTERS,
    Breakdown,
    apply_breakdown,
    board_metrics,
    board_table,
    by_task,
    csv_bytes,
    csv_table,
    label,
    md_escape,
    search,
)
from leaderboard_app.ui import board_or_stop, config, error, protocol_picker, split_picker, stamps_caption

HOW_TO_READ = """
**How to read it.** Scores are ×100 (CIDEr too, as in the MMTT paper); higher is better.
Next to each score, in brackets, is its **95% confidence interval** — a bootstrap over the split's
images: where the score would likely land on another set of images of the same kind. When two
entries' intervals overlap, their order may be luck; **Compare** runs a paired test that tells
whether a difference is real.

**Ranking.** By IoU (localization), then CIDEr (explanation); entries that only explain follow, by
CIDEr. *Rank by* re-ranks on any metric. One entry per team (its best) unless *every entry of a team*
is on; **★ baselines** are always shown; **⚑ flagged** entries are under review.
*Scorer* is the version of the metric code behind the numbers (*stale*: scored by older code or
truth, a re-score is due); *protocol* is the scoring rule set. The *method*, *source* and *region*
views switch the numbers to one manipulation method, image source or facial region (no intervals there).
"""

RANK_PX, ENTRY_PX, DETAILS_PX = 56, 240, 72   # fixed: the first columns stay put while scrolling

cfg = config()
st.title(md_escape(cfg.title))
st.markdown("Facial forgery **localization** (a mask of the forged pixels) and **interpretation** "
            "(an explanation of what looks fake) on MMTT. Every number is reproducible from the kept "
            "submission with the stamped scorer version and protocol.")
with st.expander("How to read this board", expanded=False, icon=":material/help:"):
    st.markdown(HOW_TO_READ)
splits = board_or_stop(cfg)

c_split, c_proto, c_rank, c_task = st.columns([1.5, 1, 1.3, 1.2])
with c_split:
    split = split_picker(splits, key="board_split")
with c_proto:
    protocol = protocol_picker(key="board_protocol")

try:
    base_rows, team_rule = queries.board(cfg.db, split["name"], protocol)
except Exception as exc:  # noqa: BLE001 - shown to the user in plain words
    error(exc)
    st.stop()
metrics = board_metrics(base_rows)
with c_rank:
    rank_choice = st.selectbox("Rank by", ["default"] + metrics, key="board_rank",
                               format_func=lambda m: "IoU, then CIDEr" if m == "default" else label(m),
                               help="Re-rank on one metric (higher is better; entries without it come last).")
with c_task:
    task = st.selectbox("Task", list(TASK_FILTERS), key="board_task",
                        help="Entries that submitted masks (localization), explanations (interpretation), or both.")

c_view, c_group, c_search, c_more = st.columns([1.5, 1, 1.3, 1.2])
with c_view:
    dimension = st.segmented_control(
        "Images", ["all", *BREAKDOWN_AXES], default="all", key="board_view", disabled=split["hidden"],
        format_func=lambda d: "All images" if d == "all" else f"By {d}",
        help="Hidden splits publish aggregate scores only." if split["hidden"] else
        "Switch the numbers to one manipulation method, image source or facial region (an image counts in "
        "every region its truth explanation names).") or "all"
breakdowns: dict = {}
view = Breakdown()
if dimension != "all" and not split["hidden"]:
    try:
        breakdowns = queries.breakdowns(cfg.db, split["name"], protocol)
    except HiddenSplitError as exc:
        error(exc)
    groups = sorted({g for dims in breakdowns.values() for g in dims.get(dimension, {})})
    with c_group:
        if groups:
            view = Breakdown(dimension, st.selectbox(dimension.capitalize(), groups, key=f"board_group_{dimension}"))
        else:
            st.caption("No breakdown stored.")
with c_search:
    query = st.text_input("Search", key="board_search", placeholder="entry, team or model")
with c_more:
    every = st.toggle("Every entry of a team", key="board_every", help=f"This board shows each team's "
                      f"{team_rule} entry by default.")
    show_ci = st.toggle("Show 95% CIs", value=True, key="board_ci",
                        help="Off: plain numbers (click a column header to sort by it).")

metric = None if rank_choice == "default" else rank_choice
if metric is not None or every:
    rows, team_rule = queries.board(cfg.db, split["name"], protocol, metric, "all" if every else None)
else:
    rows = base_rows
rows = apply_breakdown(rows, breakdowns, view, metric)
rows = search(by_task(rows, task), query)

with st.expander("Columns", expanded=False):
    chosen_metrics = st.multiselect("Metrics", metrics, default=[m for m in metrics if m in dict(HEADLINE)],
                                    format_func=label, key="board_metrics")
    chosen_cols = st.multiselect("Other columns", OPTIONAL_COLUMNS, default=list(DEFAULT_COLUMNS) + ["Details"],
                                 key="board_columns")

table = board_table(rows, chosen_metrics, chosen_cols, show_ci=show_ci and view.dimension is None,
                    split=split["name"])
numeric = not (show_ci and view.dimension is None)
column_config = {
    "Rank": st.column_config.NumberColumn("#", width=RANK_PX, pinned=True, help="Rank on this board"),
    "Entry": st.column_config.TextColumn("Entry", width=ENTRY_PX, pinned=True),
    "Details": st.column_config.LinkColumn("Details", display_text="open ›", width=DETAILS_PX, pinned=True,
                                           help="The entry's page: all metrics, breakdowns, samples"),
}
for m in chosen_metrics:
    help_text = METRIC_HELP.get(m, m) + (" — value (95% CI), ×100" if not numeric else " — ×100")
    column_config[label(m)] = (st.column_config.NumberColumn(label(m), format="%.2f", help=help_text)
                               if numeric else st.column_config.TextColumn(label(m), help=help_text))

shown = f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}"
st.markdown(f"**{md_escape(split['name'])}** · {split['n_items']:,} images · {md_escape(view.title)} · "
            f"ranked by {'IoU, then CIDEr' if metric is None else label(metric)} · {shown}"
            + (" · :orange-badge[hidden truth: aggregate scores only]" if split["hidden"] else ""))
st.caption(f"Scores ×100, higher is better{', with the 95% confidence interval in brackets' if not numeric else ''}"
           f" · ★ baseline (always shown) · ⚑ flagged · scorer v{METRIC_VERSION} · protocol {protocol}")
if not rows:
    st.info("No entry matches." if base_rows else "No public entry on this split yet.")
else:
    st.dataframe(table, hide_index=True, column_config=column_config, key="board_table",
                 height=min(38 + 35 * len(rows), 738))
    st.download_button("Download this table (CSV)", key="board_csv", icon="⬇️",
                       data=csv_bytes(csv_table(rows, chosen_metrics, chosen_cols, split=split["name"], view=view)),
                       file_name=f"mmtt-{split['name']}-{protocol}{'-' + view.group if view.group else ''}.csv",
                       mime="text/csv", on_click="ignore")
if view.dimension is not None:
    st.caption("Breakdown view: the numbers are for that group of images only; METEOR there is the mean of "
               "its segment scores. Which entry represents a team is chosen on all images.")
stamps_caption(protocol)
