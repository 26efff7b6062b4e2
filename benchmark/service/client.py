"""The researcher's side of the submission API (`mmtt remote submit`, the board's Submit page).

Uploads stream from disk (a folder is packed into a .tar.gz first) with a progress bar; `wait`
polls the status, showing the queue position, until the submission is scored or failed. Every
refusal becomes a `BenchmarkError` with the server's message and its list of problems.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from benchmark.errors import BenchmarkError

CHUNK = 1 << 16
DONE = ("scored", "failed", "withdrawn")


class RemoteError(BenchmarkError):
    """The API refused a request or could not be reached."""


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {"detail": resp.text.strip()[:300]}
    detail = body.get("detail", body)
    if isinstance(detail, list):   # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    raise RemoteError(f"{what}: HTTP {resp.status_code}: {detail}", problems=list(body.get("problems") or []))


def _pack(folder: Path, out_dir: Path) -> Path:
    archive = out_dir / f"{folder.name or 'submission'}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    return archive


def _auth(token: str) -> dict[str, str]:
    """The token header (none for an empty or multi-line token: the API then refuses with 401)."""
    token = (token or "").strip()
    return {"Authorization": f"Bearer {token}"} if token and token.isprintable() else {}


def _chunks(path: Path, on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            on_bytes(len(chunk))
            yield chunk


def submit_archive(url: str, token: str, path: Path | str, *, name: str, split: str = "test",
                   allow_missing: bool = False, progress: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
    """Upload a submission (folder or archive); returns the API's answer (`submission_id`, `status`, ...)."""
    path = Path(path)
    if not path.exists():
        raise RemoteError(f"{path}: submission not found")
    with tempfile.TemporaryDirectory(prefix="mmtt-remote-") as tmp:
        archive = _pack(path, Path(tmp)) if path.is_dir() else path
        size = archive.stat().st_size
        bar = _bar(size, "upload", "B", progress)
        params = {"name": name, "split": split, "allow_missing": str(bool(allow_missing)).lower(),
                  "filename": archive.name}
        headers = {**_auth(token), "Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s) as client:
                resp = client.post("/api/submissions", params=params, headers=headers,
                                   content=_chunks(archive, bar.update if bar else (lambda n: None)))
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {url}: {exc}") from None
        finally:
            if bar:
                bar.close()
    _raise_for(resp, f"{path.name}: submission refused")
    return resp.json()


def status(url: str, token: str, submission_id: int, *, client: httpx.Client | None = None) -> dict[str, Any]:
    own = client is None
    client = client or httpx.Client(base_url=url.rstrip("/"), timeout=60)
    try:
        resp = client.get(f"/api/submissions/{int(submission_id)}", headers=_auth(token))
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from None
    finally:
        if own:
            client.close()
    _raise_for(resp, f"submission #{submission_id}")
    return resp.json()


def wait(url: str, token: str, submission_id: int, *, poll_s: float = 2.0, timeout_s: float = 3600.0,
         progress: bool = False) -> dict[str, Any]:
    """Poll until the submission is scored, failed or withdrawn (RemoteError on timeout)."""
    deadline = time.monotonic() + timeout_s
    bar = _bar(None, f"#{submission_id}", "", progress)
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
            while True:
                state = status(url, token, submission_id, client=client)
                if bar:
                    where = f"queued, position {state['position']}" if state["status"] == "queued" else state["status"]
                    bar.set_postfix_str(where, refresh=True)
                if state["status"] in DONE:
                    return state
                if time.monotonic() > deadline:
                    raise RemoteError(f"submission #{submission_id} still {state['status']} after {timeout_s:.0f} s; "
                                      "check again later")
                time.sleep(poll_s)
    finally:
        if bar:
            bar.close()


def _bar(total: int | None, desc: str, unit: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit or "it", unit_scale=bool(unit), file=sys.stderr,
                leave=False, bar_format=None if total else "{desc}: {elapsed} {postfix}")
