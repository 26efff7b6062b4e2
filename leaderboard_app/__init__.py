"""The Streamlit leaderboard (read-only over the store)."""
