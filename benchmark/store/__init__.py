"""The results store: everything needed to trust and reproduce a leaderboard number.

- `models` — the schema (teams, authors, splits, entries, submissions, evaluations, scores,
  breakdown and per-sample scores, settings); `migrations/` + `migrate` — Alembic, applied
  automatically by every command (`mmtt db upgrade` explicitly).
- `db` — engine and transactions (SQLite: WAL, `BEGIN IMMEDIATE`, retried lock conflicts);
  `board.Board` — a database plus `filestore.FileStore`, the content-addressed kept files.
- `submission` (`mmtt submit`), `rescore` (`mmtt rescore`), `rules` (daily limit, upload cap,
  which team entry is shown), `faults` (checkpoints for kill/failure tests).
- Read side, shared by the CLI and the web board: `ranking` (the ranked board), `detail`
  (entry pages, per-sample tables, hidden-split gating), `compare` (paired bootstrap tests).

Reading the board from another program::

    from benchmark.store.board import Board
    from benchmark.store.ranking import leaderboard

    with Board.open("sqlite:///.mmtt/board.sqlite", upgrade=False) as board:
        rows = board.db.read(lambda s: leaderboard(s, "test"))
"""
