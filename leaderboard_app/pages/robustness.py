"""Robustness: how much each entry loses when the test images are downscaled, blurred, or both —
the same models re-run on the degraded variants of the split, each drop with a paired interval."""

from __future__ import annotations

import altair as alt
import streamlit as st

from benchmark.errors import BenchmarkError
from benchmark.store.robust import RANK_RULE, ROBUST_METRICS
from leaderboard_app import queries
from leaderboard_app.present import (
    METRIC_HELP,
    csv_bytes,
    label,
    md_escape,
    robust_drops,
    robust_long,
    robust_plot_frame,
    robust_table,
)
from leaderboard_app.ui import board_or_stop, config, protocol_picker, split_picker, stamps_caption

HOW_TO_READ = f"""
Each entry's model is run again on three **degraded copies** of the split's images — the official
robustness variants: **downscale** (0.75× nearest-neighbour down and back up), **blur** (5×5
Gaussian) and **both** — and scored against the same truth. *Drop* = clean − degraded (×100;
positive: worse when degraded); *rel. drop* = drop / clean. The bracket is the **95% interval of the
paired difference**: a bootstrap that resamples the *same images* in the clean and the degraded run,
so image difficulty cancels out.

**Robustness rank:** {RANK_RULE}. An entry without runs on a variant is shown as *not evaluated* —
never as a zero. A trivial predictor that ignores the image (an empty or full mask) loses nothing by
construction: read the rank together with the clean score.
"""

cfg = config()
st.title("Robustness")
st.markdown("How much does each entry lose on degraded images? Clean vs downscaled, blurred and both, per "
            "headline metric, with paired 95% intervals of the drop.")
with st.expander("How to read this page", expanded=False, icon=":material/help:"):
    st.markdown(HOW_TO_READ)
splits = board_or_stop(cfg)
with_variants = {s["base"] for s in splits if s.get("base")}
clean = [s for s in splits if not s.get("variant")]
if not with_variants:
    st.info("No robustness variant is registered on this board yet. A maintainer registers them with "
            "`mmtt split add --data DIR --split test --robust`; entries then submit their runs on the "
            "variants with `mmtt run MODEL --robust` and `mmtt submit ... --variant NAME`.")
    st.stop()
c_split, c_proto, c_metric = st.columns([1.2, 1, 1.2])
with c_split:
    split = split_picker([s for s in clean if s["name"] in with_variants], key="robust_split")
with c_proto:
    protocol = protocol_picker(key="robust_protocol")
try:
    with st.spinner("Computing paired intervals…"):
        table = queries.robustness(cfg.db, split["name"], protocol, n_boot=cfg.n_boot)
except BenchmarkError as exc:
    st.error(md_escape(str(exc)))
    st.stop()
if not table.rows:
    st.info("No public entry on this split yet.")
    st.stop()
present = [m for m in ROBUST_METRICS if any(m in r.clean for r in table.rows)]
with c_metric:
    metric = st.selectbox("Metric", present, format_func=label, key="robust_metric",
                          index=present.index("iou") if "iou" in present else 0, help=METRIC_HELP.get(present[0]))

evaluated = sum(1 for r in table.rows if r.variants)
st.caption(f"{evaluated} of {len(table.rows)} entries evaluated on the variants "
           + ", ".join(f"{v} (split {md_escape(s)})" for v, s in table.variant_splits.items()))
st.subheader(f"{label(metric)}: clean vs degraded (×100)")
frame = robust_table(table, metric)
st.dataframe(frame, hide_index=True, key="robust_table", height=38 + 35 * len(frame),
             column_config={"Robustness rank": st.column_config.NumberColumn(width="small")})
st.markdown(f"**Drop of {md_escape(label(metric))}** (clean − degraded, ×100) and **relative drop**, each with the "
            "95% interval of the paired difference")
drops = robust_drops(table, metric)
st.dataframe(drops, hide_index=True, key="robust_drops", height=38 + 35 * len(drops))
notes = [(r.entry, n) for r in table.rows for n in r.notes]
for entry, note in notes:
    st.caption(md_escape(f"{entry}: {note}"))

plot = robust_plot_frame(table, metric)
if len(plot):
    st.subheader(f"{label(metric)} per entry: clean and degraded")
    order = [r.entry for r in table.rows if r.entry in set(plot["entry"])]
    colour = alt.Color("condition:N", title="images", legend=alt.Legend(orient="top"),
                       scale=alt.Scale(domain=["clean", *table.variants],
                                       range=["#1d6fa5", "#e8a33d", "#7cb342", "#c0392b"]),
                       sort=["clean", *table.variants])
    y = alt.Y("entry:N", sort=order, title=None)
    span = alt.Chart(plot).mark_rule(color="#bbbbbb").encode(y=y, x="min(score):Q", x2="max(score):Q")
    dots = alt.Chart(plot).mark_point(filled=True, size=90).encode(
        y=y, x=alt.X("score:Q", title=f"{label(metric)} ×100", scale=alt.Scale(zero=False)), color=colour,
        shape=alt.Shape("condition:N", sort=["clean", *table.variants], legend=None),
        tooltip=["entry", "condition", alt.Tooltip("score:Q", format=".2f")])
    height = max(180, 48 * len(order))
    st.altair_chart((span + dots).properties(height=height), width="stretch", height=height + 90)

with st.expander("Every metric, variant and entry (numbers ×100)"):
    long = robust_long(table)
    if len(long):
        st.dataframe(long, hide_index=True, key="robust_long")
        st.download_button("Download CSV", csv_bytes(long), file_name=f"robustness-{split['name']}.csv",
                           mime="text/csv", key="robust_csv")
    else:
        st.write("No entry is evaluated on the variants yet.")
st.caption(f"{table.n_boot} paired bootstrap replicates (seed {table.seed}). {md_escape(table.method)}.")
stamps_caption(protocol)
