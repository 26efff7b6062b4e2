"""Content-addressed storage of submitted files, so any entry can be re-scored from what was sent.

Each file is kept once, under its SHA-256 (`objects/ab/cdef...`): a mask sent by twenty
submissions is stored once. A submission is a *tree*: a canonical JSON list of (path, digest,
size), itself stored as an object; its digest is the submission's `files_hash`. Objects are
written to a temporary file and renamed into place, so a killed process leaves either nothing or
a whole object, and storing the same content twice is a no-op — which is what lets a re-run of
an interrupted `mmtt submit` simply carry on. Objects are never modified or deleted here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError

TREE_FORMAT = "mmtt-files-v1"
_CHUNK = 1 << 20


class FileStoreError(BenchmarkError):
    """A stored file is missing or corrupt."""


@dataclass(frozen=True)
class StoredTree:
    hash: str        # "sha256:<hex>" of the tree document
    size: int        # bytes of all files
    n_files: int


def tree_size(root: Path) -> int:
    """Bytes of the regular files under `root` (what `put_tree` would store)."""
    return sum(p.stat().st_size for p in _walk(root))


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                files.append(path)
    return files


def _tree_doc(entries: list[list]) -> bytes:
    return json.dumps({"format": TREE_FORMAT, "files": entries}, sort_keys=True, separators=(",", ":")).encode("utf-8")


class FileStore:
    """The object folder. `root` is created on first write."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _object(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
            raise FileStoreError(f"not a stored-file digest: {digest!r}")
        return self.root / "objects" / hexd[:2] / hexd[2:]

    def has(self, digest: str) -> bool:
        return self._object(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._install(digest, lambda fh: fh.write(data))
        return digest

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store one file; returns (digest, size). Reads it once to hash, once more only if new."""
        h, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        if not self.has(digest):
            def copy(out) -> None:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)

            self._install(digest, copy)
            if self.get_digest(digest) != digest:   # the file changed while being stored
                os.unlink(self._object(digest))
                raise FileStoreError(f"{path}: changed while it was being stored; submit again")
        return digest, size

    def _install(self, digest: str, write) -> None:
        target = self._object(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="obj-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)   # atomic: a reader sees nothing or the whole object
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get_digest(self, digest: str) -> str:
        h = hashlib.sha256()
        with open(self._object(digest), "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    def put_tree(self, root: Path) -> StoredTree:
        """Store every regular file under `root` (links to files are followed, folder links are
        not) and the tree that names them; returns the tree's digest."""
        root = Path(root)
        entries, total = [], 0
        for path in _walk(root):
            digest, size = self.put_file(path)
            entries.append([path.relative_to(root).as_posix(), digest, size])
            total += size
        return StoredTree(hash=self.put_bytes(_tree_doc(entries)), size=total, n_files=len(entries))

    @staticmethod
    def hash_tree(root: Path) -> str:
        """The digest `put_tree(root)` would return, computed without keeping anything (so a
        submission is identified before it is known to deserve its files being kept)."""
        root = Path(root)
        entries = []
        for path in _walk(root):
            h, size = hashlib.sha256(), 0
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
            entries.append([path.relative_to(root).as_posix(), "sha256:" + h.hexdigest(), size])
        return "sha256:" + hashlib.sha256(_tree_doc(entries)).hexdigest()

    def read_tree(self, tree_hash: str) -> list[tuple[str, str, int]]:
        path = self._object(tree_hash)
        if not path.is_file():
            raise FileStoreError(f"stored files {tree_hash} not found under {self.root}")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != TREE_FORMAT:
            raise FileStoreError(f"{tree_hash}: not a stored submission tree")
        return [tuple(e) for e in doc["files"]]

    def materialize(self, tree_hash: str, dest: Path, *, verify: bool = True) -> Path:
        """Rebuild the submission folder `dest` from a tree (checked against its digests)."""
        dest = Path(dest)
        for rel, digest, size in self.read_tree(tree_hash):
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or not parts:
                raise FileStoreError(f"{tree_hash}: unsafe path {rel!r} in the stored tree")
            src = self._object(digest)
            if not src.is_file():
                raise FileStoreError(f"stored file {rel} ({digest}) of {tree_hash} is missing under {self.root}")
            if src.stat().st_size != size or (verify and self.get_digest(digest) != digest):
                raise FileStoreError(f"stored file {rel} ({digest}) of {tree_hash} is corrupt")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, target)          # objects are immutable: a hard link is a free copy
            except OSError:
                shutil.copyfile(src, target)
        return dest
