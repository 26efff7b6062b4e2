"""Content-addressed storage of submitted files: stored once, named by content, rebuilt exactly."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from benchmark.store.filestore import FileStore, FileStoreError
from benchmark.store.models import Submission
from benchmark.store.submission import submit
from tests.test_store_helpers import World, fake_scorer, rows, world  # noqa: F401


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tree_is_stored_once_and_rebuilt_exactly(tmp_path: Path) -> None:
    src = tmp_path / "sub"
    (src / "masks" / "a").mkdir(parents=True)
    (src / "predictions.jsonl").write_text('{"image_id": "x", "caption": "c"}\n')
    (src / "masks" / "a" / "1.png").write_bytes(b"same bytes")
    (src / "masks" / "a" / "2.png").write_bytes(b"same bytes")
    store = FileStore(tmp_path / "store")
    tree = store.put_tree(src)
    assert tree.n_files == 3 and tree.size == sum(len(b) for b in _files(src).values())
    digest = "sha256:" + hashlib.sha256(b"same bytes").hexdigest()
    assert store.has(digest)
    objects = [p for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 3   # two distinct files + the tree document: duplicates stored once
    assert store.put_tree(src) == tree   # idempotent, and the name depends on content only
    os.utime(src / "predictions.jsonl", (0, 0))
    assert store.put_tree(src).hash == tree.hash
    out = store.materialize(tree.hash, tmp_path / "out")
    assert _files(out) == _files(src)
    (src / "masks" / "a" / "2.png").write_bytes(b"other bytes")
    assert store.put_tree(src).hash != tree.hash


def test_corruption_and_unsafe_trees_are_detected(tmp_path: Path) -> None:
    src = tmp_path / "sub"
    src.mkdir()
    (src / "predictions.jsonl").write_text("{}\n")
    store = FileStore(tmp_path / "store")
    tree = store.put_tree(src)
    rel, digest, _ = store.read_tree(tree.hash)[0]
    obj = store._object(digest)
    os.chmod(obj, 0o644)
    obj.write_text("{}\r")   # same size, other bytes
    with pytest.raises(FileStoreError, match="corrupt"):
        store.materialize(tree.hash, tmp_path / "out")
    bad = store.put_bytes(json.dumps({"format": "mmtt-files-v1", "files": [["../evil", digest, 3]]}).encode())
    with pytest.raises(FileStoreError, match="unsafe"):
        store.materialize(bad, tmp_path / "out2")
    with pytest.raises(FileStoreError, match="not found"):
        store.read_tree("sha256:" + "0" * 64)


def test_submit_keeps_the_submission_content_addressed(world: World) -> None:
    """Folder and archive of the same submission keep the same files under the same hash."""
    sub = world.submission("m", seed=3)
    with world.board() as board:
        out = submit(board, world.request(sub, "m"), scorer=fake_scorer(iou=0.4))
        kept = board.files.materialize(out.files_hash, world.root / "kept")
        assert _files(kept) == _files(sub)
        archive = world.root / "m.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(sub, arcname="m")
        out2 = submit(board, world.request(archive, "m2"), scorer=fake_scorer(iou=0.4))
        assert out2.files_hash == out.files_hash
        stored = rows(board, Submission, Submission.status == "scored")
        assert {s.files_hash for s in stored} == {out.files_hash}
        assert stored[0].files_size == sum(len(b) for b in _files(sub).values())
