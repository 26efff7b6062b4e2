"""`python -m leaderboard_app [--db URL ...]` = `mmtt board ...` (also `... token add|list|revoke`)."""

from leaderboard_app.commands import main

raise SystemExit(main())
