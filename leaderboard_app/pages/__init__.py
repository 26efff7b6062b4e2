"""The board's pages (run by `st.navigation` in `app.py`; a package only so that installs ship them)."""
