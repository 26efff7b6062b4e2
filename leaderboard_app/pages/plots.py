"""Pictures of the board: localization vs interpretation, scores with their intervals, and
per-method bars — for readers who would rather look than read."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from benchmark.errors import BenchmarkError
from benchmark.store.detail import HiddenSplitError
from leaderboard_app import queries
from leaderboard_app.present import (BREAKDOWN_ALIASES, HEADLINE, MASK_METRICS, TEXT_METRICS, board_metrics, label,
                                     md_escape, scaled)
from leaderboard_app.ui import board_or_stop, config, protocol_picker, split_picker, stamps_caption

TOP_N = 30
BAR_ENTRIES = 8

cfg = config()
st.title("Plots")
splits = board_or_stop(cfg)
c_split, c_proto = st.columns(2)
with c_split:
    split = split_picker(splits, key="plots_split")
with c_proto:
    protocol = protocol_picker(key="plots_protocol")
try:
    rows, _ = queries.board(cfg.db, split["name"], protocol)
except BenchmarkError as exc:
    st.error(md_escape(str(exc)))
    st.stop()
if not rows:
    st.info("No public entry on this split yet.")
    st.stop()


def frame(metric_x: str, metric_y: str | None = None) -> pd.DataFrame:
    out = []
    for r in rows:
        x = scaled(r.metrics.get(metric_x))
        y = scaled(r.metrics.get(metric_y)) if metric_y else None
        if x is None or (metric_y and y is None):
            continue
        lo_x, hi_x = (r.ci95.get(metric_x) or [None, None])
        item = {"entry": r.entry, "team": r.team, "rank": r.rank, "kind": "baseline" if r.baseline else "entry",
                "x": x, "x_lo": scaled(lo_x) if lo_x is not None else x,
                "x_hi": scaled(hi_x) if hi_x is not None else x}
        if metric_y:
            lo_y, hi_y = (r.ci95.get(metric_y) or [None, None])
            item.update(y=y, y_lo=scaled(lo_y) if lo_y is not None else y, y_hi=scaled(hi_y) if hi_y is not None else y)
        out.append(item)
    return pd.DataFrame(out)


metrics = board_metrics(rows)
present = [m for m in metrics if any(r.metrics.get(m) is not None for r in rows)]
shape = alt.Shape("kind:N", title=None, scale=alt.Scale(domain=["entry", "baseline"], range=["circle", "diamond"]))
loose = alt.Scale(zero=False)   # scores cluster: do not stretch the axes to 0
color = alt.Color("kind:N", title=None, scale=alt.Scale(domain=["entry", "baseline"], range=["#1d6fa5", "#e8a33d"]))

# ------------------------------------------------------------ localization vs interpretation
st.subheader("Localization vs interpretation")
c_x, c_y = st.columns(2)
mask_opts = [m for m in MASK_METRICS if m in present] or present
text_opts = [m for m in TEXT_METRICS if m in present] or present
with c_x:
    mx = st.selectbox("Horizontal", mask_opts, format_func=label, key="plots_x")
with c_y:
    my = st.selectbox("Vertical", text_opts, format_func=label, key="plots_y")
both = frame(mx, my)
if both.empty:
    st.caption("No entry has both metrics (entries that do only one task are left out).")
else:
    base = alt.Chart(both)
    tooltip = [alt.Tooltip("entry:N"), alt.Tooltip("team:N"), alt.Tooltip("rank:Q"),
               alt.Tooltip("x:Q", title=label(mx), format=".2f"), alt.Tooltip("y:Q", title=label(my), format=".2f")]
    chart = (base.mark_rule(opacity=0.35).encode(x=alt.X("x_lo:Q", scale=loose), x2="x_hi:Q",
                                                 y=alt.Y("y:Q", scale=loose))
             + base.mark_rule(opacity=0.35).encode(x=alt.X("x:Q", scale=loose), y=alt.Y("y_lo:Q", scale=loose),
                                                 y2="y_hi:Q")
             + base.mark_point(filled=True, size=90).encode(
                 x=alt.X("x:Q", title=f"{label(mx)} ×100", scale=loose),
                 y=alt.Y("y:Q", title=f"{label(my)} ×100", scale=loose),
                 shape=shape, color=color, tooltip=tooltip))
    st.altair_chart(chart.properties(height=420).interactive(), width="stretch")
    st.caption("Each point is an entry; the lines are its 95% intervals. Up and right is better at both tasks.")

# ------------------------------------------------------------------------ scores with CIs
st.subheader("Scores with their 95% intervals")
fm = st.selectbox("Metric", present, format_func=label, key="plots_forest",
                  index=present.index("iou") if "iou" in present else 0)
forest = frame(fm)
if not forest.empty:
    forest = forest.sort_values("x", ascending=False).head(TOP_N)
    order = forest["entry"].tolist()
    base = alt.Chart(forest)
    chart = (base.mark_rule(strokeWidth=2, opacity=0.6).encode(
                 x=alt.X("x_lo:Q", title=f"{label(fm)} ×100", scale=loose), x2="x_hi:Q",
                 y=alt.Y("entry:N", sort=order, title=None), color=color)
             + base.mark_point(filled=True, size=70).encode(
                 x=alt.X("x:Q", scale=loose), y=alt.Y("entry:N", sort=order), shape=shape, color=color,
                 tooltip=[alt.Tooltip("entry:N"), alt.Tooltip("team:N"),
                          alt.Tooltip("x:Q", title=label(fm), format=".2f"),
                          alt.Tooltip("x_lo:Q", title="CI low", format=".2f"),
                          alt.Tooltip("x_hi:Q", title="CI high", format=".2f")]))
    st.altair_chart(chart.properties(height=max(160, 24 * len(forest))), width="stretch")
    st.caption(f"Top {min(TOP_N, len(forest))} by {label(fm)}. Overlapping bars: the order may be noise "
               "(see Compare).")

# ------------------------------------------------------------------------ per-method bars
st.subheader("Per manipulation method")
if split["hidden"]:
    st.info("This split's truth is hidden: per-method scores are not published.")
else:
    try:
        bd = queries.breakdowns(cfg.db, split["name"], protocol)
    except HiddenSplitError:
        bd = {}
    c_m, c_d = st.columns(2)
    with c_m:
        bm = st.selectbox("Metric", [m for m, _ in HEADLINE if m in present], format_func=label, key="plots_bar_metric")
    with c_d:
        dim = st.segmented_control("Group by", ["method", "source"], default="method", key="plots_bar_dim") or "method"
    leaders = [r for r in sorted(rows, key=lambda r: -(r.metrics.get(bm) or -1)) if r.metrics.get(bm) is not None]
    bars = []
    for r in leaders[:BAR_ENTRIES]:
        for group, g in bd.get(r.submission_id, {}).get(dim, {}).items():
            value = next((v for k, v in g["metrics"].items() if BREAKDOWN_ALIASES.get(k, k) == bm), None)
            if value is not None:
                bars.append({"entry": r.entry, "group": group, "value": scaled(value), "n": g["n"]})
    if not bars:
        st.caption("No breakdown stored.")
    else:
        data = pd.DataFrame(bars)
        entry_order = [r.entry for r in leaders[:BAR_ENTRIES]]
        chart = alt.Chart(data).mark_bar().encode(
            x=alt.X("value:Q", title=f"{label(bm)} ×100"),
            y=alt.Y("entry:N", sort=entry_order, title=None),
            yOffset=alt.YOffset("group:N"),
            color=alt.Color("group:N", title=dim),
            tooltip=[alt.Tooltip("entry:N"), alt.Tooltip("group:N"), alt.Tooltip("n:Q", title="images"),
                     alt.Tooltip("value:Q", format=".2f")])
        st.altair_chart(chart.properties(height=max(200, 18 * len(bars))), width="stretch")
        st.caption(f"The {len(entry_order)} best entries by {label(bm)}, one bar per {dim}. Where an entry's bars "
                   "differ a lot, it is much better on some kinds of forgery than others.")
stamps_caption(protocol)
