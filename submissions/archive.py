"""Safe intake of submission archives (.zip, .tar.gz/.tgz/.tar).

Every member is checked before anything is extracted: no absolute path, no `..`, no link or
device, no more files or uncompressed bytes than the limits allow. A bad archive is rejected
with every offending member listed; nothing is written for it.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError
from submissions.format import DEFAULT_LIMITS, Limits

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


class ArchiveError(BenchmarkError):
    """The archive is unsafe or unreadable."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    kind: str  # "file", "dir", or what makes it unsafe


def _members(path: Path) -> list[_Member]:
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            out = []
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                kind = "symlink" if mode == 0o120000 else ("dir" if info.is_dir() else "file")
                out.append(_Member(info.filename, info.file_size, kind))
            return out
    with tarfile.open(path, "r:*") as tf:
        out = []
        for info in tf.getmembers():
            kind = ("file" if info.isfile() else "dir" if info.isdir() else
                    "symlink" if info.issym() else "hard link" if info.islnk() else "special file")
            out.append(_Member(info.name, info.size if info.isfile() else 0, kind))
        return out


def _unsafe_name(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path with '..'"
    if any(ord(c) < 32 for c in name):
        return "control character in name"
    return None


def check_archive(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[_Member]:
    """All members of `path`, or an ArchiveError listing every unsafe one (nothing extracted)."""
    try:
        members = _members(path)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{path}: not a readable archive: {exc}") from None
    problems = []
    for m in members:
        why = _unsafe_name(m.name)
        if why:
            problems.append(f"{path.name}: member '{m.name}': {why}")
        if m.kind not in ("file", "dir"):
            problems.append(f"{path.name}: member '{m.name}': {m.kind} not allowed")
    files = [m for m in members if m.kind == "file"]
    if len(files) > limits.max_archive_files:
        problems.append(f"{path.name}: {len(files)} files, more than the limit of {limits.max_archive_files}")
    total = sum(m.size for m in files)
    if total > limits.max_archive_bytes:
        problems.append(f"{path.name}: {total} uncompressed bytes, more than the limit of {limits.max_archive_bytes}")
    if problems:
        raise ArchiveError(f"{path}: unsafe archive; {problems[0]}", problems=problems[: limits.max_problems])
    return members


def extract_archive(path: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Check, then extract `path` into the empty folder `dest`; return the submission root.

    The root is `dest` itself, or its single top-level folder when the archive wraps everything
    in one (as `zip -r sub.zip sub/` does).
    """
    members = check_archive(path, limits)
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    target = dest / posixpath.normpath(info.filename.replace("\\", "/"))
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        written += _copy_capped(src, out, limits.max_archive_bytes - written, path)
        else:
            with tarfile.open(path, "r:*") as tf:
                for info in tf.getmembers():
                    target = dest / posixpath.normpath(info.name)
                    if info.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(info)
                    assert src is not None  # regular files only, checked above
                    with src, open(target, "wb") as out:
                        written += _copy_capped(src, out, limits.max_archive_bytes - written, path)
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"{path}: archive is corrupt: {exc}") from None
    top = {m.name.replace("\\", "/").strip("/").split("/")[0] for m in members if m.name.strip("/")}
    if len(top) == 1:
        only = dest / top.pop()
        if only.is_dir():
            return only
    return dest


def _copy_capped(src, out, budget: int, path: Path) -> int:
    """Copy at most `budget` bytes (headers can lie about sizes: the cap holds on real bytes)."""
    n = 0
    while chunk := src.read(1 << 20):
        n += len(chunk)
        if n > budget:
            raise ArchiveError(f"{path}: uncompressed content exceeds the size limit")
        out.write(chunk)
    return n
