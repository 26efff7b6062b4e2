"""The MMTT leaderboard web app: `streamlit run leaderboard_app/app.py -- --db URL [--data DIR]`
(or `mmtt board --db URL`). One file per page under `pages/`; every database read is in
`queries.py`; the app never writes to the board except through the Submit page. Any exception a
page raises is shown as a plain message (no traceback, no server path) and logged on the server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):   # run as a script by `streamlit run`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leaderboard_app.ui import config, show_internal_error  # noqa: E402

st.set_page_config(page_title=config().title, page_icon=":material/leaderboard:", layout="wide",
                   menu_items={"About": "MMTT benchmark leaderboard: facial forgery localization and explanation."})

PAGES = Path(__file__).resolve().parent / "pages"
page = st.navigation([
    st.Page(PAGES / "board.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
    st.Page(PAGES / "entry.py", title="Entry", icon=":material/badge:", url_path="entry"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(PAGES / "plots.py", title="Plots", icon=":material/scatter_plot:", url_path="plots"),
    st.Page(PAGES / "robustness.py", title="Robustness", icon=":material/blur_on:", url_path="robustness"),
    st.Page(PAGES / "submit.py", title="Submit", icon=":material/upload:", url_path="submit"),
])
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - the boundary (st.stop / st.rerun raise BaseExceptions: not caught)
    show_internal_error(exc)
