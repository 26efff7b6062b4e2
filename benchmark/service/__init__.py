"""The submission service: an HTTP API that queues submissions, and workers that score them.

It sits after the store in the one-way flow (data -> ... -> scoring -> store -> service) and
never imports the web board. Pieces:
- `settings`: where the store, data, files and broker are (one object, parsed once);
- `queue`: the Celery app and its one task (the engine: Redis at scale, SQLite embedded);
- `worker`: what a worker process keeps warm and how it runs a job exactly once;
- `api`: the ASGI app (FastAPI) — intake, status, public boards, OpenAPI;
- `client`: the researcher's side (`mmtt remote submit`, the board's Submit page);
- `commands`: `mmtt serve`, `mmtt worker`, `mmtt remote submit`.
"""
