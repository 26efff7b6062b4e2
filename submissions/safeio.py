"""Safe reading of submission files: regular files only, inside the submission, size-capped.

A submission is hostile input: any of its files may be a FIFO (an open that never returns), a
device (`/dev/zero` reads forever), a directory, or a link to somewhere else on the machine (the
truth masks, a private file). Every read of a submission file goes through `open_file` /
`read_file`, which
- opens with `O_NONBLOCK` (opening a FIFO returns at once) and checks the *opened* file with
  `fstat`: anything but a regular file is refused before a byte is read;
- refuses a path that, once every link is resolved, leaves the submission root. Links that stay
  inside the submission are followed (a mask shared by two ids may be one file and a link to it);
  links that leave it are refused, whatever they point at;
- caps the bytes read *while reading*, so a file that grows, or lies about its size, still cannot
  make us read more than the cap.
`scan_tree` applies the same rules to every entry of a folder before anything in it is used
(and before `mmtt submit` keeps a copy of it).
Messages name the file as the submission names it (`label`), never a server-side temp path.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

from benchmark.errors import BenchmarkError

_CHUNK = 1 << 20


class UnsafeFileError(BenchmarkError):
    """A submission file that must not be read. `code` says why (see `Problem` codes)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def check_inside(path: Path, root: Path, label: str) -> str:
    """The real path of `path`, or an `UnsafeFileError` when it resolves outside `root`."""
    real = os.path.realpath(path)
    if not _inside(real, os.path.realpath(root)):
        raise UnsafeFileError(f"{label}: is a link that leaves the submission folder", code="outside")
    return real


def _open_checked(path: Path, label: str, max_bytes: int, root: Path | None) -> int:
    """A file descriptor of `path`, a regular file, checked as the module says (the caller closes it)."""
    target = check_inside(path, root, label) if root is not None else os.fspath(path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsafeFileError(f"{label}: file not found", code="missing") from None
    except OSError as exc:   # a socket (ENXIO), no permission, a loop of links...
        raise UnsafeFileError(f"{label}: cannot be opened: {exc.strerror or type(exc).__name__}",
                              code="unreadable") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{label}: is {_kind(info.st_mode)}, not a regular file", code="not_regular")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{label}: {info.st_size} bytes, over the limit of {max_bytes}", code="too_large")
        # a regular file: O_NONBLOCK (which kept the open from waiting on a FIFO) has no effect on it
    except BaseException:
        os.close(fd)
        raise
    return fd


def _grew(label: str, cap: int) -> UnsafeFileError:
    return UnsafeFileError(f"{label}: grew past the limit of {cap} bytes while read", code="too_large")


def open_file(path: Path, *, label: str, max_bytes: int, root: Path | None = None) -> BinaryIO:
    """`path` opened for reading, checked as the module says; reads past `max_bytes` raise."""
    fd = _open_checked(path, label, max_bytes, root)
    try:
        raw = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(_CappedReader(raw, max_bytes, label), _CHUNK)  # type: ignore[arg-type]


def read_file(path: Path, *, label: str, max_bytes: int, root: Path | None = None) -> bytes:
    """The whole content of `path` (at most `max_bytes`), checked as `open_file` does.

    Plain `os.read` calls on the descriptor (a mask is read whole ~20,000 times a scoring run);
    the cap holds however the file changes while read."""
    fd = _open_checked(path, label, max_bytes, root)
    try:
        chunks, left = [], max_bytes + 1
        while left > 0:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
    finally:
        os.close(fd)
    if left <= 0:
        raise _grew(label, max_bytes)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # b"" for an empty file


class _CappedReader(io.RawIOBase):
    """A raw reader that raises once more than `cap` bytes have been read."""

    def __init__(self, raw: BinaryIO, cap: int, label: str) -> None:
        self._raw, self._left, self._label, self._cap = raw, cap, label, cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._left -= n
            if self._left < 0:
                raise _grew(self._label, self._cap)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def scan_tree(root: Path, *, label: str, max_entries: int) -> list[str]:
    """Every problem with the entries under `root` (links leaving it, FIFOs, devices, sockets,
    more than `max_entries` entries), as located messages; [] when the folder is safe to use.
    Links to folders are not descended into: their target, when inside `root`, is scanned where
    it lies."""
    problems: list[str] = []
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        return [f"{label}: not a folder"]
    seen = 0
    stack = [(real_root, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{label}/{rel_folder}: cannot be listed: {exc.strerror}")
            continue
        for entry in entries:
            seen += 1
            if seen > max_entries:
                return problems + [f"{label}: more than {max_entries} files and folders"]
            rel = f"{rel_folder}{entry.name}"
            where = f"{label}/{rel}"
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not _inside(real, real_root):
                        problems.append(f"{where}: is a link that leaves the submission folder")
                        continue
                    if os.path.exists(real):
                        mode = os.stat(real).st_mode
                        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                            problems.append(f"{where}: links to {_kind(mode)}; only regular files are read")
                    continue
                if entry.is_dir(follow_symlinks=False):     # the directory entry's type: no system call
                    stack.append((entry.path, rel + "/"))
                elif not entry.is_file(follow_symlinks=False):
                    mode = entry.stat(follow_symlinks=False).st_mode
                    problems.append(f"{where}: is {_kind(mode)}; only regular files are read")
            except OSError as exc:
                problems.append(f"{where}: cannot be checked: {exc.strerror}")
    return problems
