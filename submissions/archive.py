"""Safe intake of submission archives (.zip, .tar.gz/.tgz/.tar).

Every member is checked before anything is extracted: no absolute path, no `..`, no link or
device, no duplicate name, no encryption or compression method we cannot decompress, no more
files or uncompressed bytes than the limits allow (a cap derived from the split's size, see
`Limits.for_split`), no compression ratio of a bomb. Extraction then counts the bytes really
written against the same caps, since headers can lie. A bad archive is rejected with every
offending member listed; nothing is kept for it. Messages name the archive by its file name and
its members by their names, never by a path on the machine that extracts them.
"""

from __future__ import annotations

import errno
import lzma
import posixpath
import shutil
import tarfile
import zipfile
import zlib
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
    size: int           # uncompressed bytes, as the header claims (the copy counts the real ones)
    kind: str           # "file", "dir", or what makes it unsafe
    problem: str = ""   # a feature we refuse to handle (encryption, an unsupported compression)


# what zipfile can decompress; anything else (deflate64, PPMd, ...) would fail half-way through
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_ZIP_KINDS = {0o120000: "symlink", 0o020000: "device", 0o060000: "device", 0o010000: "FIFO",
              0o140000: "socket"}


def _zip_members(path: Path, limits: Limits) -> list[_Member]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_archive_files:
            raise ArchiveError(f"{path.name}: {len(infos)} members, more than the limit of {limits.max_archive_files}")
        out = []
        for info in infos:
            mode = (info.external_attr >> 16) & 0o170000
            kind = _ZIP_KINDS.get(mode, "dir" if info.is_dir() else "file")
            problem = ""
            if info.flag_bits & 0x1:
                problem = "is encrypted (encrypted archives are not accepted)"
            elif info.compress_type not in _ZIP_METHODS:
                problem = (f"uses compression method {info.compress_type}, which is not supported "
                           f"(use one of: {', '.join(_ZIP_METHODS.values())})")
            out.append(_Member(info.filename, info.file_size, kind, problem))
        return out


def _tar_members(path: Path, limits: Limits) -> list[_Member]:
    out: list[_Member] = []
    total = 0
    with tarfile.open(path, "r:*") as tf:
        # one header at a time: a compressed bomb is refused at the first header over the cap,
        # not after decompressing all of it to list the members
        while (info := tf.next()) is not None:
            kind = ("file" if info.isfile() else "dir" if info.isdir() else
                    "symlink" if info.issym() else "hard link" if info.islnk() else "special file")
            size = info.size if info.isfile() else 0
            out.append(_Member(info.name, size, kind))
            total += size
            if total > limits.max_archive_bytes:
                raise ArchiveError(f"{path.name}: member '{info.name}' takes the uncompressed size past the "
                                   f"limit of {limits.max_archive_bytes} bytes")
            if len(out) > limits.max_archive_files:
                raise ArchiveError(f"{path.name}: more than {limits.max_archive_files} members")
    return out


def _members(path: Path, limits: Limits) -> list[_Member]:
    if path.name.lower().endswith(".zip"):
        return _zip_members(path, limits)
    return _tar_members(path, limits)


def _unsafe_name(name: str) -> str | None:
    if not name.strip("/"):
        return "empty name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path with '..'"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "control character in name"
    if len(name) > 1024:
        return "name longer than 1024 characters"
    return None


def _norm(name: str) -> str:
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/")


def _ratio_cap(path: Path, total: int, limits: Limits) -> str | None:
    packed = max(1, path.stat().st_size)
    if total > limits.ratio_free_bytes and total > limits.max_compression_ratio * packed:
        return (f"{path.name}: {total} uncompressed bytes from {packed} compressed (ratio {total // packed}:1, "
                f"over the limit of {limits.max_compression_ratio}:1): refused as a decompression bomb")
    return None


def check_archive(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[_Member]:
    """All members of `path`, or an ArchiveError listing every unsafe one (nothing extracted)."""
    try:
        members = _members(path, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"{path.name}: not a readable archive: {_reason(exc)}") from None
    problems = []
    seen: dict[str, str] = {}
    for m in members:
        why = _unsafe_name(m.name)
        if why:
            problems.append(f"{path.name}: member '{_show(m.name)}': {why}")
            continue
        if m.kind not in ("file", "dir"):
            problems.append(f"{path.name}: member '{m.name}': {m.kind} not allowed")
        if m.problem:
            problems.append(f"{path.name}: member '{m.name}' {m.problem}")
        key = _norm(m.name)
        if key in seen and not (m.kind == "dir" and seen[key] == "dir"):
            problems.append(f"{path.name}: member '{m.name}': duplicate name (each file may appear once)")
        seen.setdefault(key, m.kind)
    for key, kind in seen.items():   # a file that is also another member's folder
        parent = posixpath.dirname(key)
        while parent:
            if seen.get(parent) == "file":
                problems.append(f"{path.name}: member '{parent}' is a file and the folder of '{key}'")
                break
            parent = posixpath.dirname(parent)
    files = [m for m in members if m.kind == "file"]
    if len(files) > limits.max_archive_files:
        problems.append(f"{path.name}: {len(files)} files, more than the limit of {limits.max_archive_files}")
    total = sum(m.size for m in files)
    if total > limits.max_archive_bytes:
        problems.append(f"{path.name}: {total} uncompressed bytes, more than the limit of {limits.max_archive_bytes} "
                        "for this split")
    ratio = _ratio_cap(path, total, limits)
    if ratio:
        problems.append(ratio)
    if problems:
        raise ArchiveError(f"{path.name}: unsafe archive; {problems[0]}", problems=problems[: limits.max_problems])
    return members


def _reason(exc: BaseException) -> str:
    """An exception's text without the (temporary, server-side) path an OSError quotes."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]


def _show(name: str) -> str:
    """A member name as a message shows it: as it is, or escaped when it holds control characters."""
    return name[:200] if name.isprintable() else ascii(name[:200])


def extract_archive(path: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Check, then extract `path` into the empty folder `dest`; return the submission root.

    The root is `dest` itself, or its single top-level folder when the archive wraps everything
    in one (as `zip -r sub.zip sub/` does).
    """
    members = check_archive(path, limits)
    dest.mkdir(parents=True, exist_ok=True)
    # the cap on what is really written: headers can lie about sizes, so bytes are counted
    budget = min(limits.max_archive_bytes,
                 max(limits.ratio_free_bytes, limits.max_compression_ratio * max(1, path.stat().st_size)))
    written = 0
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    target = dest / _norm(info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "xb") as out:
                        written += _copy_capped(src, out, budget - written, path)
        else:
            with tarfile.open(path, "r:*") as tf:
                for info in tf.getmembers():
                    target = dest / _norm(info.name)
                    if info.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(info)
                    assert src is not None  # regular files only, checked above
                    with src, open(target, "xb") as out:
                        written += _copy_capped(src, out, budget - written, path)
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ArchiveError(f"{path.name}: no space left on the disk while extracting; nothing was kept") from None
        raise ArchiveError(f"{path.name}: archive is corrupt: {_reason(exc)}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError, NotImplementedError, RuntimeError,
            zlib.error, lzma.LZMAError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"{path.name}: archive is corrupt: {_reason(exc)}") from None
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
            raise ArchiveError(f"{path.name}: uncompressed content exceeds the size limit (the headers understate "
                               "it, or the compression ratio is a bomb's); nothing was kept")
        out.write(chunk)
    return n
