"""A corpus of hostile inputs, tried as an attacker would, each through the real `mmtt` command.

Every case must end the same way: exit status 2, one located `error:` line (naming the file,
line, member, option or name at fault), no traceback, within a time bound and a memory bound,
and the board unchanged — no entry, score, team or setting written, no submission file kept;
the one row a refused `mmtt submit` may add is its own `failed` submission row (the audit trail
and what the daily limit counts), never one that holds kept files when a rule refused it.

Cases that could hang or exhaust memory (FIFOs, devices, bombs, giant lines) run in a
subprocess with a timeout, an address-space limit and their peak memory measured; the others run
in this process (`benchmark.cli.main`), which is much faster and just as real.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from benchmark.store.board import Board
from tests.conftest import make_random_dataset, write_submission
from tests.test_store_helpers import cli, snapshot

N_ITEMS = 8
CASE_TIMEOUT_S = 60          # a subprocess case: a hang is a failure, not a stuck suite
IN_PROCESS_S = 20            # CPU seconds of an in-process case (this process and its workers)
WALL_SLACK = 6               # wall-time bound of an in-process case: CPU bound x this (a loaded machine)
SUB_RSS_EXTRA_MB = 200       # peak memory a subprocess case may use over a plain refused run
ADDRESS_SPACE = 6 * 1024**3  # RLIMIT_AS of a subprocess case (numpy and friends reserve address space)
ROOT = os.geteuid() == 0


# ------------------------------------------------------------------------------------- world
@dataclass
class World:
    tmp: Path
    data: Path
    other_data: Path          # a data root with different truth (same ids)
    records: list[dict]
    good: Path                # a valid submission folder (template: cases copy it)
    db: Path
    files: Path
    cases: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def case_dir(self) -> Path:
        self.counter[0] += 1
        path = self.cases / f"c{self.counter[0]:03d}"
        path.mkdir(parents=True)
        return path

    def sub(self) -> Path:
        """A fresh copy of the valid submission."""
        dst = self.case_dir() / "sub"
        shutil.copytree(self.good, dst, symlinks=True)
        return dst

    def mask_of(self, sub: Path, k: int = 0) -> Path:
        return sub / "masks" / Path(self.records[k]["img_path"]).with_suffix(".png")

    def truth_mask(self, k: int = 0) -> Path:
        return self.data / self.records[k]["mask_path"]

    def score(self, target: Path | str, *extra: str) -> list[str]:
        return ["score", str(target), "--data", str(self.data), "--split", "test", "--no-meteor", "--n-boot", "20",
                *extra]

    def submit(self, target: Path | str, *extra: str, name: str = "hostile") -> list[str]:
        return ["submit", str(target), "--data", str(self.data), "--split", "test", "--db", str(self.db),
                "--files", str(self.files), "--name", name, "--no-meteor", "--n-boot", "20", *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("hostile")
    env = pytest.MonkeyPatch()
    env.setenv("MMTT_CACHE_DIR", str(tmp / "cache"))
    env.setenv("MMTT_DAILY_LIMIT", "0")   # no limit unless a case sets one: cases stay independent
    env.delenv("MMTT_DEBUG", raising=False)
    data = tmp / "data"
    records = make_random_dataset(data, n=N_ITEMS, size=32)
    other = tmp / "other"
    make_random_dataset(other, n=N_ITEMS, size=32, seed=5)
    manifest = {"model": "m", "team": "Lab", "authors": "A. Author", "description": "a fine model"}
    good = write_submission(tmp / "good", records, manifest=manifest)
    w = World(tmp=tmp, data=data, other_data=other, records=records, good=good, db=tmp / "board.sqlite",
              files=tmp / "board.files", cases=tmp / "cases")
    # a board with one scored entry of team "Lab" today: rules have something to bite on
    out = cli(*w.submit(good, name="lab-entry"))
    assert out.returncode == 0, out.stderr
    yield w
    env.undo()


def board_state(w: World) -> dict:
    """Everything a refused command must leave as it was (see the module doc)."""
    with Board.open(str(w.db), w.files, upgrade=False) as board:
        rows = snapshot(board)
    objects = sorted(str(p.relative_to(w.files)) for p in (w.files / "objects").rglob("*") if p.is_file())
    return {"rows": rows, "objects": objects}


def assert_board_unchanged(before: dict, after: dict) -> None:
    assert after["objects"] == before["objects"], "a refused command kept files"
    for table, rows in before["rows"].items():
        if table != "submissions":
            assert after["rows"][table] == rows, f"table {table} changed"
    old = set(before["rows"]["submissions"])
    added = [r for r in after["rows"]["submissions"] if r not in old]
    assert set(before["rows"]["submissions"]) <= set(after["rows"]["submissions"]), "a submission row changed"
    assert len(added) <= 1, added
    for row in added:
        assert "failed" in row, f"a refused submit left a non-failed row: {row}"


# ---------------------------------------------------------------------------- runners
@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    rss_kb: int = 0
    cpu_seconds: float = 0.0


def _cpu_now() -> float:
    """CPU seconds of this process and of its reaped children (the mask pass's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_in_process(args: list[str]) -> Outcome:
    """`benchmark.cli.main` here. Its time bound is on CPU seconds, which a busy machine does not
    stretch; the wall clock gets a looser bound (a hang is still caught)."""
    start, cpu = time.monotonic(), _cpu_now()
    out = cli(*args)
    return Outcome(out.returncode, out.stdout, out.stderr, time.monotonic() - start, cpu_seconds=_cpu_now() - cpu)


def run_subprocess(args: list[str | bytes], timeout: float = CASE_TIMEOUT_S) -> Outcome:
    """The real `mmtt` in a child process: stdout/stderr to files (no pipe can block), killed at
    `timeout`, address space capped, peak memory read from the child's own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "benchmark", *args], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=limit)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Outcome(proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                       seconds, usage.ru_maxrss)


@pytest.fixture(scope="module")
def baseline_rss(world: World) -> int:
    """Peak memory of a plain refused `mmtt score` (the cost of starting up)."""
    sub = world.sub()
    (sub / "predictions.jsonl").write_text('{"image_id": 1}\n')
    out = run_subprocess(world.score(sub))
    assert out.returncode == 2, out.stderr
    return out.rss_kb


# ------------------------------------------------------------------------------ builders
def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels (grey) with almost no data: decoding it would
    allocate the whole image; reading its header costs nothing."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
            + chunk(b"IEND", b""))


def zip_folder(folder: Path, dest: Path, *, extra: list[tuple[str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, payload in extra:
            zf.writestr(name, payload)
    return dest


def patch_zip(path: Path, *, flags: int | None = None, method: int | None = None, size: int | None = None) -> None:
    """Rewrite fields of every local and central header (what a hand-made archive may claim)."""
    data = bytearray(path.read_bytes())
    i = 0
    while (i := data.find(b"PK\x03\x04", i)) != -1:
        if flags is not None:
            data[i + 6:i + 8] = struct.pack("<H", struct.unpack("<H", data[i + 6:i + 8])[0] | flags)
        if method is not None:
            data[i + 8:i + 10] = struct.pack("<H", method)
        if size is not None:
            data[i + 22:i + 26] = struct.pack("<I", size)
        i += 4
    i = 0
    while (i := data.find(b"PK\x01\x02", i)) != -1:
        if flags is not None:
            data[i + 8:i + 10] = struct.pack("<H", struct.unpack("<H", data[i + 8:i + 10])[0] | flags)
        if method is not None:
            data[i + 10:i + 12] = struct.pack("<H", method)
        if size is not None:
            data[i + 24:i + 28] = struct.pack("<I", size)
        i += 4
    path.write_bytes(bytes(data))


def tar_folder(folder: Path, dest: Path, *, extra: Callable[[tarfile.TarFile], None] | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname="sub")
        if extra:
            extra(tf)
    return dest


def lines_of(w: World, sub: Path) -> list[str]:
    return (sub / "predictions.jsonl").read_text().splitlines()


def replace_line(w: World, sub: Path, k: int, text: str) -> Path:
    lines = lines_of(w, sub)
    lines[k] = text
    (sub / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return sub


def caption_line(w: World, k: int, caption: str) -> str:
    return json.dumps({"image_id": w.records[k]["image_id"], "caption": caption})


def write_manifest(sub: Path, text: str) -> Path:
    (sub / "manifest.json").write_text(text)
    return sub


# --------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[World], list]          # -> the mmtt arguments
    where: str                              # what the one error line must name
    subprocess: bool = False                # hangs / memory: run in a child process
    max_seconds: float = IN_PROCESS_S


CASES: list[Case] = []


def case(id: str, where: str, *, subprocess: bool = False, max_seconds: float | None = None):
    def register(build: Callable[[World], list]) -> Callable[[World], list]:
        CASES.append(Case(id, build, where, subprocess,
                          max_seconds or (CASE_TIMEOUT_S if subprocess else IN_PROCESS_S)))
        return build
    return register


# 1. hangs and unbounded reads ---------------------------------------------------------------
@case("fifo-predictions", "predictions.jsonl", subprocess=True)
def _(w):
    sub = w.sub()
    (sub / "predictions.jsonl").unlink()
    os.mkfifo(sub / "predictions.jsonl")
    return w.score(sub)


@case("fifo-mask", "masks/", subprocess=True)
def _(w):
    sub = w.sub()
    w.mask_of(sub, 2).unlink()
    os.mkfifo(w.mask_of(sub, 2))
    return w.score(sub)


@case("fifo-manifest", "manifest.json", subprocess=True)
def _(w):
    sub = w.sub()
    (sub / "manifest.json").unlink()
    os.mkfifo(sub / "manifest.json")
    return w.score(sub)


@case("fifo-given-as-predictions-file", "preds.jsonl", subprocess=True)
def _(w):
    fifo = w.case_dir() / "preds.jsonl"
    os.mkfifo(fifo)
    return w.score(fifo)


@case("fifo-named-like-an-archive", "sub.zip", subprocess=True)
def _(w):
    fifo = w.case_dir() / "sub.zip"
    os.mkfifo(fifo)
    return w.score(fifo)


@case("mask-links-to-dev-zero", "masks/", subprocess=True)
def _(w):
    sub = w.sub()
    w.mask_of(sub, 1).unlink()
    w.mask_of(sub, 1).symlink_to("/dev/zero")
    return w.score(sub)


@case("predictions-link-to-dev-zero", "predictions.jsonl", subprocess=True)
def _(w):
    sub = w.sub()
    (sub / "predictions.jsonl").unlink()
    (sub / "predictions.jsonl").symlink_to("/dev/zero")
    return w.score(sub)


@case("mask-link-chain-to-device", "masks/", subprocess=True)
def _(w):
    sub = w.sub()
    (sub / "zero").symlink_to("/dev/zero")
    w.mask_of(sub, 0).unlink()
    w.mask_of(sub, 0).symlink_to(os.path.relpath(sub / "zero", w.mask_of(sub, 0).parent))
    return w.score(sub)


@case("masks-option-is-a-fifo", "masks", subprocess=True)
def _(w):
    fifo = w.case_dir() / "masks"
    os.mkfifo(fifo)
    return w.score(w.good, "--masks", str(fifo))


@case("giant-line-in-folder", "predictions.jsonl", subprocess=True)
def _(w):
    sub = w.sub()
    lines = lines_of(w, sub)
    with open(sub / "predictions.jsonl", "w") as fh:
        fh.write("\n".join(lines[:2]) + "\n")
        fh.write('{"image_id": "x", "caption": "')
        block = "a" * (1 << 20)
        for _ in range(200):           # a 200 MiB line: must be skipped, never held whole
            fh.write(block)
        fh.write('"}\n' + "\n".join(lines[2:]) + "\n")
    return w.score(sub)


@case("giant-line-in-small-zip", "sub.zip", subprocess=True)
def _(w):
    sub = w.sub()
    dest = w.case_dir() / "sub.zip"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.name != "predictions.jsonl":
                zf.write(f, f.relative_to(sub).as_posix())
        with zf.open("predictions.jsonl", "w", force_zip64=True) as out:
            out.write(b'{"image_id": "x", "caption": "')
            block = b"a" * (1 << 20)
            for _ in range(1024):     # a 1 GiB line
                out.write(block)
            out.write(b'"}\n')
    return w.score(dest)


# 2. what used to be tracebacks --------------------------------------------------------------
@case("bomb-png-first-mask", "masks/", subprocess=True)
def _(w):
    sub = w.sub()
    w.mask_of(sub, 0).write_bytes(png_header(30000, 30000))
    return w.score(sub)


@case("bomb-png-later-mask", "masks/", subprocess=True)
def _(w):
    sub = w.sub()
    w.mask_of(sub, 5).write_bytes(png_header(30000, 30000))
    return w.score(sub)


@case("hundred-megapixel-mask", "over the limit of 67108864 pixels", subprocess=True)
def _(w):
    sub = w.sub()
    w.mask_of(sub, 0).write_bytes(png_header(10000, 10000))
    return w.score(sub)


@case("huge-integer-in-line", "predictions.jsonl:2")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 1, '{"image_id": "a", "n": ' + "9" * 5000 + "}"))


@case("deep-nesting-in-line", "predictions.jsonl:2")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 1, '{"image_id": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}"))


@case("huge-integer-in-json-file", "preds.json")
def _(w):
    folder = w.case_dir()
    (folder / "preds.json").write_text('[{"image_id": "a", "n": ' + "1" * 5000 + "}]")
    return w.score(folder / "preds.json")


@case("deep-nesting-in-json-file", "preds.json")
def _(w):
    folder = w.case_dir()
    (folder / "preds.json").write_text("[" * 100_000 + "]" * 100_000)
    return w.score(folder / "preds.json")


@case("huge-integer-in-manifest", "manifest.json")
def _(w):
    return w.score(write_manifest(w.sub(), '{"model": "m", "team": "t", "x": ' + "7" * 5000 + "}"))


@case("deep-nesting-in-manifest", "manifest.json")
def _(w):
    return w.score(write_manifest(w.sub(), '{"model": "m", "team": "t", "x": ' + "{\"a\":" * 5000 + "1"
                                  + "}" * 5000 + "}"))


@case("predictions-is-a-directory", "predictions.jsonl")
def _(w):
    sub = w.sub()
    (sub / "predictions.jsonl").unlink()
    (sub / "predictions.jsonl").mkdir()
    return w.score(sub)


@case("lone-surrogate-in-manifest-submit", "manifest.json")
def _(w):
    return w.submit(write_manifest(w.sub(), '{"model": "m\\ud800", "team": "Lab"}'), name="surrogate")


@case("lone-surrogate-in-manifest-score", "manifest.json")
def _(w):
    return w.score(write_manifest(w.sub(), '{"model": "m", "team": "t", "description": "x\\udfff"}'))


@case("lone-surrogate-in-caption", "predictions.jsonl:1")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 0, '{"image_id": "%s", "caption": "The nose \\ud800"}'
                                % w.records[0]["image_id"]))


@case("lone-surrogate-in-caption-submit", "predictions.jsonl:4")
def _(w):
    sub = w.sub()
    return w.submit(replace_line(w, sub, 3, '{"image_id": "%s", "caption": "\\udc00 eye"}' % w.records[3]["image_id"]),
                    name="surrogate-caption")


@case("encrypted-zip", "encrypted")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    patch_zip(dest, flags=0x1)
    return w.score(dest)


@case("deflate64-zip", "compression method 9")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    patch_zip(dest, method=9)
    return w.score(dest)


@case("non-utf8-name", "entry name", subprocess=True)
def _(w):
    return ["submit", str(w.good), "--data", str(w.data), "--db", str(w.db), "--files", str(w.files),
            b"--name", b"bad\xff\xfe", "--no-meteor", "--n-boot", "20"]


@case("corrupt-db-leaderboard", "junk.sqlite")
def _(w):
    db = w.case_dir() / "junk.sqlite"
    db.write_bytes(os.urandom(4096))
    return ["leaderboard", "--db", str(db), "--split", "test"]


@case("corrupt-db-submit", "junk.sqlite")
def _(w):
    db = w.case_dir() / "junk.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    return ["submit", str(w.good), "--data", str(w.data), "--db", str(db), "--name", "x", "--no-meteor"]


@case("directory-db-leaderboard", "dbdir")
def _(w):
    db = w.case_dir() / "dbdir"
    db.mkdir()
    return ["leaderboard", "--db", str(db), "--split", "test"]


@case("directory-db-submit", "dbdir")
def _(w):
    db = w.case_dir() / "dbdir"
    db.mkdir()
    return ["submit", str(w.good), "--data", str(w.data), "--db", str(db), "--name", "x", "--no-meteor"]


@case("read-only-db-submit", "readonly")
def _(w):
    folder = w.case_dir()
    shutil.copy(w.db, folder / "readonly.sqlite")
    if ROOT:   # permissions do not stop root: open the database read-only instead
        db = f"sqlite:///file:{folder / 'readonly.sqlite'}?mode=ro&uri=true"
    else:
        os.chmod(folder / "readonly.sqlite", 0o444)
        os.chmod(folder, 0o555)
        db = str(folder / "readonly.sqlite")
    return ["submit", str(w.good), "--data", str(w.data), "--db", db, "--files", str(folder / "files"),
            "--name", "ro-entry", "--no-meteor", "--n-boot", "20"]


# 3. links out of the submission ----------------------------------------------------------------
@case("mask-link-to-truth", "leaves the submission")
def _(w):
    sub = w.sub()
    for k in range(N_ITEMS):
        w.mask_of(sub, k).unlink()
        w.mask_of(sub, k).symlink_to(w.truth_mask(k))
    return w.score(sub)


@case("masks-folder-link-outside", "leaves the submission")
def _(w):
    sub = w.sub()
    outside = w.case_dir() / "elsewhere"
    shutil.move(sub / "masks", outside)
    (sub / "masks").symlink_to(outside)
    return w.score(sub)


@case("submit-follows-link-to-private-file", "leaves the submission")
def _(w):
    sub = w.sub()
    (sub / "notes.txt").symlink_to("/etc/hostname")
    return w.submit(sub, name="exfil")


@case("predictions-link-outside-submit", "leaves the submission")
def _(w):
    sub = w.sub()
    target = w.case_dir() / "real.jsonl"
    shutil.move(sub / "predictions.jsonl", target)
    (sub / "predictions.jsonl").symlink_to(target)
    return w.submit(sub, name="exfil2")


@case("manifest-link-outside", "leaves the submission")
def _(w):
    sub = w.sub()
    target = w.case_dir() / "manifest.json"
    shutil.move(sub / "manifest.json", target)
    (sub / "manifest.json").symlink_to(target)
    return w.score(sub)


@case("explicit-mask-path-escapes-by-link", "sub/inner")
def _(w):
    sub = w.sub()
    (sub / "inner").symlink_to(w.data)
    return w.score(replace_line(w, sub, 0, json.dumps({"image_id": w.records[0]["image_id"], "caption": "eye",
                                                       "mask": "inner/" + w.records[0]["mask_path"]})))


@case("explicit-mask-path-dotdot", "predictions.jsonl:1")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 0, json.dumps({"image_id": w.records[0]["image_id"], "caption": "eye",
                                                       "mask": "../../data/" + w.records[0]["mask_path"]})))


@case("explicit-mask-path-absolute", "predictions.jsonl:1")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 0, json.dumps({"image_id": w.records[0]["image_id"], "caption": "eye",
                                                       "mask": str(w.truth_mask(0))})))


@case("explicit-mask-path-nul", "predictions.jsonl:1")
def _(w):
    sub = w.sub()
    return w.score(replace_line(w, sub, 0, json.dumps({"image_id": w.records[0]["image_id"], "caption": "eye",
                                                       "mask": "masks/a\u0000.png"})))


def _tar_member(kind: bytes, name: str, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tf.addfile(info)
    return add


@case("tar-symlink-member", "sub/masks/evil.png")
def _(w):
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz",
                              extra=_tar_member(tarfile.SYMTYPE, "sub/masks/evil.png", "/etc/passwd")))


@case("tar-hardlink-member", "sub/evil")
def _(w):
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz",
                              extra=_tar_member(tarfile.LNKTYPE, "sub/evil", "/etc/passwd")))


@case("tar-device-member", "sub/dev")
def _(w):
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz", extra=_tar_member(tarfile.CHRTYPE, "sub/dev")))


@case("tar-fifo-member", "sub/pipe")
def _(w):
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz", extra=_tar_member(tarfile.FIFOTYPE, "sub/pipe")))


@case("zip-symlink-member", "link.png")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    with zipfile.ZipFile(dest, "a") as zf:
        info = zipfile.ZipInfo("masks/link.png")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    return w.score(dest)


@case("zip-dotdot-member", "../evil.txt")
def _(w):
    return w.score(zip_folder(w.good, w.case_dir() / "sub.zip", extra=[("../evil.txt", b"x")]))


@case("zip-absolute-member", "/tmp/evil.txt")
def _(w):
    return w.score(zip_folder(w.good, w.case_dir() / "sub.zip", extra=[("/tmp/evil.txt", b"x")]))


@case("zip-control-char-member", "control character")
def _(w):
    return w.score(zip_folder(w.good, w.case_dir() / "sub.zip", extra=[("masks/a\x07.png", b"x")]))


# 4. resource limits ---------------------------------------------------------------------------
@case("zip-bomb-declared-size", "uncompressed bytes")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip", extra=[("big.bin", b"\0" * 1000)])
    patch_zip(dest, size=4_000_000_000)
    return w.score(dest)


@case("zip-bomb-real-ratio", "sub.zip", subprocess=True)
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    with zipfile.ZipFile(dest, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        block = b"\0" * (1 << 20)
        for _ in range(60):   # 60 MiB of zeros in ~60 KB: under the split's cap, over the ratio cap
            out.write(block)
    return w.score(dest)


@case("zip-lying-header", "sub.zip", subprocess=True)
def _(w):
    dest = w.case_dir() / "sub.zip"
    zip_folder(w.good, dest)
    with zipfile.ZipFile(dest, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        block = b"\0" * (1 << 20)
        for _ in range(100):
            out.write(block)
    patch_zip(dest, size=100)   # every member claims 100 bytes
    return w.score(dest)


@case("tar-gz-bomb", "sub.tar.gz", subprocess=True)
def _(w):
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("sub/zeros.bin")
        info.size = 150 << 20
        tf.addfile(info, io.BufferedReader(io.BytesIO(bytes(info.size))))
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz", extra=add))


@case("manifest-20mb-description", "manifest.json")
def _(w):
    return w.submit(write_manifest(w.sub(), json.dumps({"model": "m", "team": "Lab", "description": "x" * 20_000_000})),
                    name="long-desc")


@case("manifest-description-over-field-cap", "description")
def _(w):
    return w.submit(write_manifest(w.sub(), json.dumps({"model": "m", "team": "Lab", "description": "y" * 20_000})),
                    name="long-desc2")


@case("manifest-model-over-field-cap", "model")
def _(w):
    return w.score(write_manifest(w.sub(), json.dumps({"model": "m" * 5000, "team": "Lab"})))


@case("mask-file-over-byte-cap", "masks/")
def _(w):
    sub = w.sub()
    with open(w.mask_of(sub, 4), "r+b") as fh:
        fh.truncate(65 << 20)   # sparse: costs no disk
    return w.score(sub)


@case("predictions-over-byte-cap", "predictions.jsonl")
def _(w):
    sub = w.sub()
    with open(sub / "predictions.jsonl", "r+b") as fh:
        fh.truncate((256 << 20) + 1)
    return w.score(sub)


@case("daily-limit-reached", "submission(s)")
def _(w):
    return w.submit(w.sub(), "--daily-limit", "1", name="second-today")


@case("entry-name-of-another-team", "belongs to team")
def _(w):
    return w.submit(w.sub(), "--team", "Intruders", name="lab-entry")


# 5. silent acceptance -----------------------------------------------------------------------
@case("empty-predictions-allow-missing", "predictions.jsonl")
def _(w):
    sub = w.sub()
    (sub / "predictions.jsonl").write_text("")
    return w.score(sub, "--allow-missing")


@case("blank-lines-predictions-allow-missing", "predictions.jsonl")
def _(w):
    sub = w.sub()
    (sub / "predictions.jsonl").write_text("\n  \n\t\n")
    return w.score(sub, "--allow-missing")


@case("caption-zero-width", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, caption_line(w, 0, "\u200b\u200c\u200d\u2060\ufeff")))


@case("caption-hangul-fillers", "predictions.jsonl:2")
def _(w):
    return w.score(replace_line(w, w.sub(), 1, caption_line(w, 1, "\u3164 \u3164\u115f\uffa0")))


@case("caption-bidi-and-spaces", "predictions.jsonl:3")
def _(w):
    return w.score(replace_line(w, w.sub(), 2, caption_line(w, 2, "\u202e \u200f\u00a0\u2800 \u202c")))


@case("nan-in-line", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, '{"image_id": "%s", "caption": "eye", "score": NaN}'
                                % w.records[0]["image_id"]))


@case("infinity-in-line", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, '{"image_id": "%s", "caption": "eye", "score": -Infinity}'
                                % w.records[0]["image_id"]))


@case("overflowing-float-in-line", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, '{"image_id": "%s", "caption": "eye", "score": 1e999}'
                                % w.records[0]["image_id"]))


@case("duplicate-key-in-line", "predictions.jsonl:1")
def _(w):
    rid = w.records[0]["image_id"]
    return w.score(replace_line(w, w.sub(), 0, '{"image_id": "%s", "caption": "eye", "image_id": "%s"}'
                                % (w.records[1]["image_id"], rid)))


@case("duplicate-key-in-manifest", "manifest.json")
def _(w):
    return w.score(write_manifest(w.sub(), '{"model": "m", "team": "a", "team": "b"}'))


@case("nan-in-json-file", "preds.json")
def _(w):
    folder = w.case_dir()
    (folder / "preds.json").write_text('[{"image_id": "a", "caption": NaN}]')
    return w.score(folder / "preds.json")


@case("duplicate-zip-members", "duplicate name")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    with zipfile.ZipFile(dest, "a") as zf:
        zf.writestr("predictions.jsonl", "\n".join(caption_line(w, k, "the nose") for k in range(N_ITEMS)))
    return w.score(dest)


@case("duplicate-tar-members", "duplicate name")
def _(w):
    def add(tf: tarfile.TarFile) -> None:
        payload = b"{}\n"
        info = tarfile.TarInfo("sub/predictions.jsonl")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return w.score(tar_folder(w.good, w.case_dir() / "sub.tar.gz", extra=add))


@case("zip-file-and-folder-same-name", "is a file and the folder")
def _(w):
    return w.score(zip_folder(w.good, w.case_dir() / "sub.zip", extra=[("extra", b"x"), ("extra/inner.txt", b"y")]))


@case("entry-name-case-variant-of-other-team", "belongs to team")
def _(w):
    return w.submit(w.sub(), "--team", "Intruders", name="LAB-ENTRY")


@case("entry-name-fullwidth-variant-of-other-team", "belongs to team")
def _(w):
    return w.submit(w.sub(), "--team", "Intruders", name="ｌａｂ-ｅｎｔｒｙ")


@case("entry-name-zero-width", "U+200B")
def _(w):
    return w.submit(w.sub(), name="lab\u200b-entry")


@case("entry-name-bidi-override", "U+202E")
def _(w):
    return w.submit(w.sub(), name="\u202eyrtne-bal")


@case("entry-name-only-fillers", "filler")
def _(w):
    return w.submit(w.sub(), name="\u3164\u3164")


@case("team-name-control-char", "U+0007")
def _(w):
    return w.submit(w.sub(), "--team", "La\x07b", name="bell")


@case("team-case-variant-sidesteps-daily-limit", "submission(s)")
def _(w):
    return w.submit(w.sub(), "--team", "LAB", "--daily-limit", "1", name="lab-second")


@case("team-fullwidth-variant-sidesteps-daily-limit", "submission(s)")
def _(w):
    return w.submit(w.sub(), "--team", "Ｌａｂ", "--daily-limit", "1", name="lab-third")


@case("rescore-against-different-truth", "--update")
def _(w):
    return ["rescore", "--db", str(w.db), "--files", str(w.files), "--data", str(w.other_data)]


# 6. messages ---------------------------------------------------------------------------------
@case("mask-not-an-image", "masks/")
def _(w):
    sub = w.sub()
    w.mask_of(sub, 3).write_bytes(b"this is not a png")
    return w.score(sub)


@case("corrupt-zip", "sub.zip")
def _(w):
    dest = w.case_dir() / "sub.zip"
    dest.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    return w.score(dest)


@case("corrupt-tar-gz", "sub.tar.gz")
def _(w):
    dest = w.case_dir() / "sub.tar.gz"
    dest.write_bytes(b"\x1f\x8b" + os.urandom(2000))
    return w.score(dest)


@case("truncated-zip", "sub.zip")
def _(w):
    dest = zip_folder(w.good, w.case_dir() / "sub.zip")
    dest.write_bytes(dest.read_bytes()[:-300])
    return w.score(dest)


@case("bad-mask-inside-archive", "sub.zip")
def _(w):
    sub = w.sub()
    w.mask_of(sub, 3).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return w.score(zip_folder(sub, w.case_dir() / "sub.zip"))


@case("bad-mask-inside-archive-submit", "sub.zip")
def _(w):
    sub = w.sub()
    w.mask_of(sub, 3).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return w.submit(zip_folder(sub, w.case_dir() / "sub.zip"), name="bad-mask")


@case("truncated-png-mask", "masks/")
def _(w):
    sub = w.sub()
    w.mask_of(sub, 6).write_bytes(w.mask_of(sub, 6).read_bytes()[:60])
    return w.score(sub)


# more hostile shapes ---------------------------------------------------------------------------
@case("predictions-not-utf8", "predictions.jsonl:2")
def _(w):
    sub = w.sub()
    raw = (sub / "predictions.jsonl").read_bytes().split(b"\n")
    raw[1] = b'{"image_id": "\xff\xfe"}'
    (sub / "predictions.jsonl").write_bytes(b"\n".join(raw))
    return w.score(sub)


@case("millions-of-lines", "predictions for this split")
def _(w):
    sub = w.sub()
    with open(sub / "predictions.jsonl", "a") as fh:   # ~1 MiB: under the byte cap, far over the line cap
        fh.write("".join('{"image_id": "%x"}\n' % i for i in range(60_000)))
    return w.score(sub)


@case("line-is-an-array", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, "[1, 2, 3]"))


@case("image-id-not-a-string", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, '{"image_id": {"$ne": null}, "caption": "x"}'))


@case("caption-with-newline-control", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, caption_line(w, 0, "the nose\u2028is fake")))


@case("caption-too-long", "predictions.jsonl:1")
def _(w):
    return w.score(replace_line(w, w.sub(), 0, caption_line(w, 0, "nose " * 2000)))


@case("manifest-not-an-object", "manifest.json")
def _(w):
    return w.submit(write_manifest(w.sub(), "[1, 2]"), name="arr")


@case("manifest-tasks-injection", "manifest.json")
def _(w):
    return w.submit(write_manifest(w.sub(), json.dumps({"model": "m", "team": "Lab", "tasks": ["rm -rf"]})),
                    name="tasks")


@case("submission-is-a-device", "/dev/zero")
def _(w):
    return w.score("/dev/zero")


@case("socket-in-submission", "sock")
def _(w):
    import socket

    sub = w.sub()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sub / "sock"))
    s.close()
    return w.score(sub)


def test_corpus_is_large_and_covers_every_class() -> None:
    assert len(CASES) >= 60, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_cleanly(hostile: Case, world: World, baseline_rss: int) -> None:
    args = hostile.build(world)
    before = board_state(world)
    out = run_subprocess(args, hostile.max_seconds) if hostile.subprocess else run_in_process(args)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr[-2000:]
    first = out.stderr.splitlines()[0] if out.stderr else ""
    assert first.startswith("error: "), out.stderr[-2000:]
    assert hostile.where in first or hostile.where in out.stderr, (hostile.where, out.stderr[-2000:])
    assert "BytesIO" not in out.stderr and "mmtt-sub-" not in out.stderr and "mmtt-upload-" not in out.stderr
    if hostile.subprocess:
        assert out.seconds < hostile.max_seconds, out.seconds
    else:
        assert out.cpu_seconds < hostile.max_seconds, out.cpu_seconds
        assert out.seconds < hostile.max_seconds * WALL_SLACK, out.seconds
    if hostile.subprocess:
        assert out.rss_kb < baseline_rss + SUB_RSS_EXTRA_MB * 1024, (out.rss_kb, baseline_rss)
    assert_board_unchanged(before, board_state(world))
