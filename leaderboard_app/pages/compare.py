"""Two or more entries side by side, and per metric the paired test's verdict against the first
(the reference): a bootstrap over the same images for both, so image difficulty cancels out."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from benchmark.errors import BenchmarkError
from leaderboard_app import queries
from leaderboard_app.present import HEADLINE, fmt, fmt_ci, label, md_escape, scaled
from leaderboard_app.ui import board_or_stop, config, protocol_picker, split_picker, stamps_caption

MAX_ENTRIES = 6

cfg = config()
st.title("Compare entries")
st.markdown("Is a difference between two entries more than resampling noise? Each entry after the first is "
            "tested against the first (the **reference**) with a paired bootstrap over the split's images "
            "(the same image draws for both entries). *Significant* means p < 0.05 for that metric alone; with "
            "many metrics and entries, expect the odd false alarm.")
splits = board_or_stop(cfg)
c_split, c_proto = st.columns(2)
with c_split:
    split = split_picker(splits, key="cmp_split")
with c_proto:
    protocol = protocol_picker(key="cmp_protocol")

try:
    rows, _ = queries.board(cfg.db, split["name"], protocol, team_entry="all")
except BenchmarkError as exc:
    st.error(md_escape(str(exc)))
    st.stop()
names = [r.entry for r in rows]
if len(names) < 2:
    st.info("Comparing needs at least two public entries on this split.")
    st.stop()
wanted = [n for n in st.query_params.get_all("entry") if n in names]
chosen = st.multiselect(f"Entries (the first is the reference; up to {MAX_ENTRIES})", names,
                        default=wanted[:MAX_ENTRIES] if len(wanted) >= 2 else names[:2],
                        max_selections=MAX_ENTRIES, key="cmp_entries")
if len(chosen) < 2:
    st.info("Pick at least two entries.")
    st.stop()

by_name = {r.entry: r for r in rows}
metrics = [m for m, _ in HEADLINE if any(by_name[n].metrics.get(m) is not None for n in chosen)]
side = pd.DataFrame({"Metric": [label(m) for m in metrics],
                     **{n: [fmt_ci(by_name[n].metrics.get(m), by_name[n].ci95.get(m)) for m in metrics]
                        for n in chosen}})
st.subheader("Side by side (×100, 95% CI)")
st.dataframe(side, hide_index=True, key="cmp_side", height=38 + 35 * len(side))

ref = chosen[0]
st.subheader("Paired tests against the reference")
st.markdown(f"Reference: **{md_escape(ref)}**. Difference = reference − other, ×100.")
verdicts: dict[str, dict[str, str]] = {}
details = []
for other in chosen[1:]:
    try:
        with st.spinner(md_escape(f"Testing {ref} vs {other}…")):
            result = queries.compare(cfg.db, ref, other, split["name"], protocol, n_boot=cfg.n_boot)
    except BenchmarkError as exc:
        st.warning(md_escape(f"{ref} vs {other}: {exc}"))
        continue
    verdicts[other] = {}
    for m, r in result["metrics"].items():
        sig = r["significant"]
        if sig is None:
            verdict = "–"
        elif not sig:
            verdict = "no significant difference"
        else:
            verdict = "reference better" if (r["diff"] or 0) > 0 else "other better"
        verdicts[other][m] = {"–": "–", "no significant difference": "≈ no significant difference",
                              "reference better": "▲ reference better",
                              "other better": "▼ better than the reference"}[verdict]
        ci = (f"{fmt(r['low'])} to {fmt(r['high'])}" if r["low"] is not None else "not paired (CI overlap)")
        details.append({"Other": other, "Metric": label(m), "Reference": scaled(r["a"]), "Other value": scaled(r["b"]),
                        "Difference": scaled(r["diff"]), "95% CI of difference": ci,
                        "p": r["p_value"], "Verdict": verdict})
    if result.get("note"):
        st.caption(md_escape(f"{other}: {result['note']}"))

if verdicts:
    tested = [m for m, _ in HEADLINE if any(m in v for v in verdicts.values())]
    matrix = pd.DataFrame({"Metric": [label(m) for m in tested],
                           **{o: [v.get(m, "–") for m in tested] for o, v in verdicts.items()}})
    st.markdown("**Verdicts**, one column per entry compared with the reference")
    st.dataframe(matrix, hide_index=True, key="cmp_matrix", height=38 + 35 * len(matrix))
    with st.expander("All numbers", expanded=len(chosen) == 2):
        st.dataframe(pd.DataFrame(details), hide_index=True, key="cmp_details",
                     column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in ("Reference", "Other value", "Difference")}
                     | {"p": st.column_config.NumberColumn(format="%.4f")})
    st.caption(f"{cfg.n_boot} paired bootstrap replicates (seed 0). BLEU is corpus-level: it is paired through "
               "per-image n-gram statistics when stored, otherwise judged by non-overlapping stored 95% CIs "
               "(no p-value).")
stamps_caption(protocol)
