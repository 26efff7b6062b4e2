"""Upload a submission archive with a maintainer-issued token: it is posted to the submission
API, queued and scored by the service's workers; this page follows it until it is scored, or
shows every problem in plain words. The board itself neither scores nor writes."""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from benchmark.errors import BenchmarkError
from leaderboard_app import queries
from leaderboard_app.intake import follow, handle_upload
from leaderboard_app.present import HEADLINE, fmt_ci, label, md_escape
from leaderboard_app.ui import config, error

FOLLOW_S = 600.0   # how long the page follows a queued submission before asking to check back
POLL_S = 1.0

cfg = config()
st.title("Submit")
st.markdown(
    "Upload a **.zip** or **.tar.gz** of a submission folder: `predictions.jsonl` (one "
    "`{\"image_id\", \"caption\"}` per line), `masks/` (8-bit greyscale PNGs, > 127 = forged) and "
    "`manifest.json` (model, team, tasks, paper/code URLs, description). Check it first with "
    "`mmtt score SUBMISSION --data DIR --split test`. You need a **submission token** from the board's "
    "maintainers; it fixes your team. Each team has a daily submission limit per split. "
    "The same API serves `mmtt remote submit SUB --url URL --token T --name N --wait`.")

if cfg.api is None:
    st.info("Web submissions are closed on this board (it was started without the submission API, `--api URL`). "
            "Ask the maintainers, or submit with `mmtt remote submit` to their API.")
    st.stop()

try:
    board_splits = queries.splits(cfg.db)
    cap = queries.upload_cap_mb(cfg.db, cfg.max_upload_mb)
except BenchmarkError as exc:
    error(exc)
    st.stop()
from benchmark.data.split import available_splits  # noqa: E402

from benchmark.data.robust import VARIANTS, parse_split_name  # noqa: E402

in_data = set(available_splits(cfg.data)) if cfg.data else set()
# clean splits only: a variant's predictions go to its base split with the images picked below
names = sorted({s["name"] for s in board_splits if not s.get("variant")}
               | {n for n in in_data if parse_split_name(n)[1] is None}) or ["test"]
hidden = {s["name"] for s in board_splits if s["hidden"]}

with st.form("submit_form", clear_on_submit=False):
    token = st.text_input("Submission token", type="password", key="submit_token",
                          placeholder="mmtt_xxxxxxxx_…")
    c_name, c_split = st.columns([2, 1])
    name = c_name.text_input("Entry name", key="submit_name", max_chars=200,
                             help="How the board lists it; resubmitting under the same name updates the entry.")
    split = c_split.selectbox("Split", names, key="submit_split",
                              index=names.index("test") if "test" in names else 0,
                              format_func=lambda n: n + (" (hidden truth)" if n in hidden else ""))
    variant = st.selectbox(
        "Images", ("clean",) + VARIANTS, key="submit_variant",
        help="clean: the split as released. downscale / blur / both: predictions on its robustness variant "
             "(`mmtt run MODEL --robust`); linked by entry name to the entry's clean submission, which must "
             "be on the board first.")
    allow_missing = st.checkbox("Score images without a prediction as empty (otherwise a missing image is an error)",
                                key="submit_allow_missing")
    upload = st.file_uploader(f"Archive (at most {cap:g} MiB)", type=["zip", "gz", "tgz", "tar"],
                              key="submit_file", max_upload_size=max(1, math.ceil(cap)))
    sent = st.form_submit_button("Upload and queue for scoring", type="primary")


def show_scored(answer: dict) -> None:
    summary = answer.get("summary") or answer
    metrics, ci = summary.get("metrics", {}), summary.get("ci95", {})
    shown = [m for m, _ in HEADLINE if m in metrics]
    st.dataframe(pd.DataFrame({"Metric": [label(m) for m in shown],
                               "Score (95% CI), ×100": [fmt_ci(metrics[m], ci.get(m)) for m in shown]}),
                 hide_index=True, key="submit_scores")
    st.caption(f"protocol {summary.get('protocol')} · scorer v{summary.get('metric_version')} · "
               f"{summary.get('n_scored')} images scored")
    for w in (summary.get("warnings") or [])[:10]:
        st.warning(md_escape(w))


if sent:
    if upload is None:
        st.error("Choose an archive to upload.")
        st.stop()
    with st.spinner("Uploading…"):
        result = handle_upload(cfg, token=token, name=name, split=split, filename=upload.name,
                               payload=upload.getvalue(), allow_missing=allow_missing,
                               variant=None if variant == "clean" else variant)
    if not result.ok:
        error(BenchmarkError(result.message, problems=result.problems))
        st.stop()
    st.success(md_escape(result.message), icon="✅")
    answer = result.answer
    if answer.get("status") != "scored":
        sid = int(answer["submission_id"])
        bar = st.progress(0.0, text="queued")
        deadline, first = time.monotonic() + FOLLOW_S, answer.get("position") or 1
        while answer.get("status") in ("queued", "running") and time.monotonic() < deadline:
            position = answer.get("position") or 0
            done = 0.5 if answer["status"] == "running" else 0.5 * (1 - (position - 1) / max(first, 1))
            bar.progress(min(max(done, 0.0), 0.95),
                         text=f"queued, position {position}" if answer["status"] == "queued" else "scoring…")
            time.sleep(POLL_S)
            try:
                answer = follow(cfg, token, sid)
            except BenchmarkError as exc:
                error(exc)
                st.stop()
        bar.empty()
        queries.invalidate()
        if answer["status"] == "failed":
            error(BenchmarkError(f"Submission #{sid} failed", problems=answer.get("problems") or []))
            st.caption("The attempt is recorded as a failed submission; it counts against the daily limit.")
            st.stop()
        if answer["status"] != "scored":
            st.info(f"Submission #{sid} is still {answer['status']}: check back on the board in a while.")
            st.stop()
        st.success(f"Scored: submission #{sid} is on the board.", icon="🏁")
    show_scored(answer)
