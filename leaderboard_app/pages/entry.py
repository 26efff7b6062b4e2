"""One entry: every metric with its CI, breakdowns per method and source, and (public splits,
with `--data`) a gallery of samples: image, truth and predicted masks, both explanations."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from benchmark.errors import BenchmarkError
from benchmark.store.detail import HiddenSplitError
from benchmark.metrics import registry
from benchmark.scoring.score import BREAKDOWN_AXES
from benchmark.store.ranking import PRIMARY_METRIC
from leaderboard_app import queries
from leaderboard_app.present import (
    BREAKDOWN_ALIASES,
    HEADLINE,
    LABELS,
    METRIC_HELP,
    fmt,
    label,
    md_escape,
    safe_url,
    scaled,
    tasks_label,
)
from leaderboard_app.ui import PROTOCOLS, board_or_stop, config, error, stamps_caption, text

PER_PAGE = 6
SAMPLE_METRICS = tuple(m.per_image for m in registry.metrics().values() if m.headline and m.per_image)

cfg = config()
board_or_stop(cfg)
params = st.query_params
protocol = params.get("protocol") if params.get("protocol") in PROTOCOLS else "strict"
catalogue = queries.entries(cfg.db, protocol)
if not catalogue:
    st.info(f"No public entry has a {protocol} score yet.")
    st.stop()

names = list(catalogue)
c_entry, c_split, c_proto = st.columns([2.2, 1, 1])
with c_entry:
    wanted = params.get("entry")
    entry = st.selectbox("Entry", names, index=names.index(wanted) if wanted in names else 0, key="entry_name")
with c_split:
    entry_splits = catalogue[entry]
    wanted_split = params.get("split")
    split = st.selectbox("Split", entry_splits, key=f"entry_split_{entry}",
                         index=entry_splits.index(wanted_split) if wanted_split in entry_splits else
                         (entry_splits.index("test") if "test" in entry_splits else 0))
with c_proto:
    st.selectbox("Protocol", [protocol], key="entry_protocol", disabled=True,
                 help="Open the page with ?protocol=official for the official protocol's scores.")
st.query_params.update({"entry": entry, "split": split, "protocol": protocol})

try:
    d = queries.entry_detail(cfg.db, entry, split, protocol)
except BenchmarkError as exc:
    error(exc)
    st.stop()

# ------------------------------------------------------------------------------- header
st.title(md_escape(d["entry"]))
badges = [f"team **{md_escape(d['team'])}**", f"model {md_escape(d['model'])}", tasks_label(d["tasks"])]
if d["baseline"]:
    badges.append(":blue-badge[★ baseline]")
if d["flagged"]:
    badges.append(":orange-badge[⚑ flagged" + (f": {md_escape(d['flag_reason'])}" if d.get("flag_reason") else "")
                  + "]")
st.markdown(" · ".join(badges))
if d.get("authors"):
    text("Authors: " + d["authors"], muted=True)
if d.get("description"):
    with st.container(border=True):
        text(d["description"])
links = [(name, safe_url(d.get(key))) for name, key in (("Paper", "paper_url"), ("Code", "code_url"))]
if any(url for _, url in links):
    cols = st.columns(8)
    for col, (name, url) in zip(cols, [(n, u) for n, u in links if u]):
        col.link_button(name, url, icon=":material/description:" if name == "Paper" else ":material/code:")

# ------------------------------------------------------------------------------ metrics
metrics, ci = d["metrics"], d["ci95"]
top = [m for m in PRIMARY_METRIC.values() if metrics.get(m) is not None]
if top:
    for col, m in zip(st.columns(len(top) + 2), top):
        lo_hi = ci.get(m)
        col.metric(label(m), fmt(metrics[m]), help=METRIC_HELP.get(m),
                   delta=f"95% CI {fmt(lo_hi[0], 1)}–{fmt(lo_hi[1], 1)}" if lo_hi and None not in lo_hi else None,
                   delta_color="off", delta_arrow="off")
order = [m for m, _ in HEADLINE] + [m for m in LABELS if m not in dict(HEADLINE)]
main_metrics = [m for m in order if m in metrics]
other_metrics = sorted(m for m in metrics if m not in LABELS)


def metric_table(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "Metric": [label(m) for m in names],
        "Score ×100": [scaled(metrics[m]) for m in names],
        "95% CI low": [scaled((ci.get(m) or [None, None])[0]) for m in names],
        "95% CI high": [scaled((ci.get(m) or [None, None])[1]) for m in names],
        "What it measures": [METRIC_HELP.get(m, "") for m in names],
    })


number = {c: st.column_config.NumberColumn(format="%.2f") for c in ("Score ×100", "95% CI low", "95% CI high")}
st.subheader("All metrics")
st.dataframe(metric_table(main_metrics), hide_index=True, key="entry_metrics", height=38 + 35 * len(main_metrics),
             column_config=number)
if other_metrics:
    with st.expander(f"Other statistics ({len(other_metrics)})"):
        st.dataframe(metric_table(other_metrics), hide_index=True, key="entry_other_metrics",
                     column_config=number)
stamps_caption(d["protocol"])
st.caption(f"{d['n_scored']:,} of {d['n_truth']:,} images scored ({d['n_missing']:,} missing) · data "
           f"`{d['dataset_fingerprint'][:19]}…` · submission `{d['submission_hash'][:19]}…` · scored "
           f"{d['scored_at'][:16].replace('T', ' ')} UTC · CIs: {md_escape(d.get('ci_method') or 'n/a')}")

# ---------------------------------------------------------------------------- breakdown
st.subheader("By manipulation method, image source and facial region")
if d["hidden"]:
    st.info("This split's truth is hidden: only aggregate scores are published (no breakdowns, no samples).")
    st.stop()
breakdown = d.get("breakdown") or {}
if not breakdown:
    st.caption("No breakdown stored for this score.")
else:
    import altair as alt

    present = sorted({BREAKDOWN_ALIASES.get(m, m) for dims in breakdown.values() for g in dims.values()
                      for m in g["metrics"]}, key=lambda m: order.index(m) if m in order else 99)
    choice = st.selectbox("Metric", present, format_func=label, key="entry_bd_metric",
                          index=present.index("iou") if "iou" in present else 0)
    cols = st.columns(len(BREAKDOWN_AXES))
    for col, dim in zip(cols, BREAKDOWN_AXES):
        groups = breakdown.get(dim, {})
        rows = [{"group": g, "n": v["n"], "value": scaled(next((x for k, x in v["metrics"].items()
                                                                 if BREAKDOWN_ALIASES.get(k, k) == choice), None))}
                for g, v in groups.items()]
        rows = [r for r in rows if r["value"] is not None]
        with col:
            st.markdown(f"**By {dim}**")
            if not rows:
                st.caption("–")
                continue
            frame = pd.DataFrame(rows)
            chart = alt.Chart(frame).mark_bar(color="#1d6fa5").encode(
                x=alt.X("value:Q", title=f"{label(choice)} ×100"),
                y=alt.Y("group:N", sort="-x", title=None),
                tooltip=[alt.Tooltip("group:N"), alt.Tooltip("n:Q", title="images"),
                         alt.Tooltip("value:Q", format=".2f")])
            st.altair_chart(chart, width="stretch")
    full = [{"dimension": dim, "group": g, "images": v["n"],
             **{label(BREAKDOWN_ALIASES.get(k, k)): scaled(x) for k, x in v["metrics"].items()}}
            for dim, groups in breakdown.items() for g, v in groups.items()]
    with st.expander("Breakdown table (all metrics, ×100)"):
        st.dataframe(pd.DataFrame(full), hide_index=True, key="entry_bd_table")

# ------------------------------------------------------------------------------ gallery
st.subheader("Samples")
if cfg.data is None:
    st.info("The sample gallery needs the data root: start the board with `--data DIR`.")
    st.stop()
try:
    samples = queries.sample_table(cfg.db, entry, split, protocol)
    kept = queries.kept_files(cfg.db, cfg.files, entry, split, protocol)
except HiddenSplitError as exc:
    error(exc)
    st.stop()
except BenchmarkError as exc:
    error(exc)
    st.stop()

from leaderboard_app import gallery  # noqa: E402 - only needed here

try:
    truth = gallery.load_truth(str(cfg.data), split)
    if gallery.truth_fingerprint(str(cfg.data), split) != kept["fingerprint"]:
        st.warning("The data given to this board (`--data`) is not the truth this split was scored on "
                   "(fingerprints differ): the gallery is off.")
        st.stop()
    preds = gallery.kept_predictions(kept["files_root"], kept["files_hash"] or "",
                                     {r.image_id: r.pred_mask_path for r in truth.records})
except BenchmarkError as exc:
    error(exc)
    st.stop()

c_method, c_order, c_page = st.columns([1.2, 1.2, 1])
methods = sorted(set(samples["method"])) if "method" in samples else []
with c_method:
    method = st.selectbox("Method", ["all"] + methods, key="gallery_method")
sort_metric = next((m for m in PRIMARY_METRIC.values() if m in samples), None)
with c_order:
    order_by = st.selectbox("Order", ["split order"] + ([f"worst {label(sort_metric)} first",
                                                         f"best {label(sort_metric)} first"] if sort_metric else []),
                            key="gallery_order")
view = samples if method == "all" else samples[samples["method"] == method]
if sort_metric and order_by != "split order":
    view = view.sort_values(sort_metric, ascending=order_by.startswith("worst"), na_position="last", kind="stable")
pages = max(1, -(-len(view) // PER_PAGE))
with c_page:
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="gallery_page")
st.caption(f"Red: forged pixels in the truth · blue: pixels {md_escape(entry)} marked forged · scores ×100")

for _, row in view.iloc[(page - 1) * PER_PAGE: page * PER_PAGE].iterrows():
    iid = row["image_id"]
    rec = truth.by_id.get(iid)
    if rec is None:
        continue
    pred = preds.get(iid)
    with st.container(border=True):
        img, truth_png, pred_png = gallery.panels(str(truth.image_files[iid]), str(truth.mask_files[iid]),
                                                  kept["files_root"], pred.mask_digest if pred else None)
        c_img, c_truth, c_pred, c_text = st.columns([1, 1, 1, 2.2])
        c_img.image(img, caption=f"{iid} · {row.get('method', '')}", width="stretch")
        c_truth.image(truth_png, caption="truth mask", width="stretch")
        if pred_png is not None:
            c_pred.image(pred_png, caption="predicted mask", width="stretch")
        else:
            c_pred.caption("no predicted mask")
        with c_text:
            st.markdown("**Truth explanation**")
            text(rec.caption)
            st.markdown("**Predicted explanation**")
            if pred and pred.caption is not None:
                text(pred.caption)
            else:
                st.caption("none")
            scores = [f"{label(m)} {fmt(row[m])}" for m in SAMPLE_METRICS if m in row and pd.notna(row[m])]
            st.caption(" · ".join(scores))
