"""METEOR 1.5 as pycocoevalcap computes it, on every core.

pycocoevalcap runs ``meteor-1.5.jar - - -stdio -l en -norm``: one JVM that parses its synonym
and paraphrase tables (~15 s of CPU, nearly all of it the 5.3 million paraphrase entries), then
aligns one ``SCORE`` line at a time, and answers an ``EVAL`` of all the statistics with the
segment scores and the corpus score.

``MeteorPool.java`` (beside this module) speaks the same protocol with the same classes of the
same jar, but aligns the ``SCORE`` lines on several threads, each with its own ``MeteorScorer``
made by the jar's sharing constructor (tables loaded once, only read). Given all its lines at
once (a ``BATCH`` line first), it prepares them on its threads and keeps only the paraphrase
entries whose words occur in them: the jar's alignments exactly (the reasoning is in the Java
file; the tests compare both on paraphrase-rich text), for ~4 s of CPU instead of ~15 and half
the memory. It is compiled once, by the JVM's own compiler module, into the cache folder
(``$MMTT_CACHE_DIR`` or ``~/.cache/mmtt-bench``; a temporary folder when that cannot be written).
A Java runtime without that module runs the jar's own ``-stdio`` mode instead: the same numbers,
on one thread, with the whole table.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np

from benchmark.cache import default_cache_dir
from benchmark.metrics.ptb import pycocoevalcap_file

__all__ = ["MeteorProcess", "meteor_score", "meteor_threads"]

METEOR_OPTIONS = ("-stdio", "-l", "en", "-norm")
"""pycocoevalcap's options: read stdin, English, tokenize / normalise punctuation and lowercase."""
JAVA_OPTIONS = ("-Xmx2G", "-XX:+UseSerialGC")
"""pycocoevalcap's heap limit; the serial collector: the tables stay loaded for the whole run and
the garbage is short-lived, so it keeps the JVM's resident memory about half of the default
collector's at no measurable cost in time (the jar's own mode on the full test split: ~650 MB
instead of ~1.3 GB)."""
MAX_THREADS = 8
DRIVER = "MeteorPool"
_COMPILE_TIMEOUT_S = 300


def meteor_threads() -> int:
    """Alignment threads: one per core this process may use, at most `MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def _jar() -> Path:
    return pycocoevalcap_file("meteor", "meteor-1.5.jar")


def driver_classes() -> Path | None:
    """The folder of the compiled ``MeteorPool`` class (compiled on first use, then reused), or
    None where this Java runtime cannot compile it."""
    source = Path(__file__).with_name(f"{DRIVER}.java")
    jar = _jar()
    key = hashlib.sha256(source.read_bytes() + f"\0{jar.stat().st_size}".encode()).hexdigest()[:16]
    return _compiled(source, jar, default_cache_dir() / "java" / f"meteor-pool-{key}")


@lru_cache(maxsize=8)
def _compiled(source: Path, jar: Path, target: Path) -> Path | None:
    if (target / f"{DRIVER}.class").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    except OSError:            # the cache cannot be written: build for this process only
        build, target = Path(_scratch().name) / target.name, None
    if not _javac(source, jar, build):
        shutil.rmtree(build, ignore_errors=True)
        return None
    if target is None:
        return build
    for _ in range(2):
        try:
            os.rename(build, target)   # one step: another process sees all of it or none
            return target
        except OSError:
            if (target / f"{DRIVER}.class").is_file():   # another process published it first
                shutil.rmtree(build, ignore_errors=True)
                return target
            shutil.rmtree(target, ignore_errors=True)     # a damaged folder in its place
    return build if (build / f"{DRIVER}.class").is_file() else None


@lru_cache(maxsize=1)
def _scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mmtt-meteor-")


def _javac(source: Path, jar: Path, out: Path) -> bool:
    """Compile with the runtime's own compiler module (no separate JDK needed); class files for
    Java 11, so that any later runtime loads them."""
    cmd = ["java", "-m", "jdk.compiler/com.sun.tools.javac.Main", "--release", "11", "-nowarn",
           "-cp", str(jar), "-d", str(out), str(source)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=_COMPILE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and (out / f"{DRIVER}.class").is_file()


class MeteorProcess:
    """One METEOR JVM, started on creation and closed on leaving the block, killed if need be:
    ``MeteorPool`` on `threads` threads where it can be compiled, else the jar's own mode."""

    def __init__(self, threads: int | None = None) -> None:
        threads = threads or meteor_threads()
        classes = driver_classes()
        jar = _jar()
        if classes is None:
            cmd = ["java", *JAVA_OPTIONS, "-jar", jar.name, "-", "-", *METEOR_OPTIONS]
            self.threads = 1
        else:
            cmd = ["java", *JAVA_OPTIONS, "-cp", os.pathsep.join((jar.name, str(classes))), DRIVER, str(threads),
                   *METEOR_OPTIONS]
            self.threads = threads
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.err)
        except FileNotFoundError as exc:
            self.err.close()
            raise RuntimeError("Java is required for METEOR but `java` was not found") from exc
        self.batched = classes is not None   # the driver reads a BATCH line before the SCORE lines
        self.writer: threading.Thread | None = None
        self.closed = False
        self.finished = False   # its EVAL answered: closing its input ends it

    def __enter__(self) -> "MeteorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self, lines: list[str], cancel: threading.Event | None) -> list[str]:
        """The ``SCORE`` statistics of each line (the driver's one batch), written by a thread
        while this one reads (no pipe-buffer deadlock)."""
        failure: list[BaseException] = []
        sent = [f"BATCH {len(lines)}\n", *lines] if self.batched else lines
        self.writer = threading.Thread(target=_write_all, args=(self.proc.stdin, sent, failure), daemon=True)
        self.writer.start()
        out = []
        for k in range(len(lines)):
            if cancel is not None and k % 512 == 0 and cancel.is_set():
                raise ValueError("cancelled")
            out.append(_read_line(self.proc))
        self.writer.join()
        if failure:
            raise failure[0]
        return out

    def evaluate(self, stats: list[str]) -> tuple[float, np.ndarray]:
        """(corpus score, per-segment scores) of ``EVAL`` over `stats`."""
        self.proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        self.proc.stdin.flush()
        segments = np.array([float(_read_line(self.proc)) for _ in stats])
        total = float(_read_line(self.proc))
        self.finished = True
        return total, segments

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def error_tail(self) -> str:
        if self.closed:
            return ""
        self.err.seek(0)
        return self.err.read().decode("utf-8", errors="replace")[-2000:]

    def close(self) -> None:
        """End the process (at once if it is still loading or working: nothing more will be
        asked of it) and release its pipes; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            if not self.finished:   # unused, or stopped mid-way: nothing more is wanted from it
                self.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.writer is not None:
            self.writer.join(timeout=10)
        self.proc.stdout.close()
        self.err.close()


def meteor_score(refs: Sequence[Sequence[str]], hyps: Sequence[str], *, cancel: threading.Event | None = None,
                 process: MeteorProcess | None = None, threads: int | None = None) -> tuple[float, np.ndarray]:
    """METEOR 1.5 as pycocoevalcap's ``Meteor().compute_score`` on the same (tokenized) text.

    Returns the jar's corpus score and the per-segment scores. `process`: one started earlier
    (this call uses it up), else a new one with `threads`. It is closed at the end, killed as
    soon as `cancel` is set or it fails.
    """
    if len(refs) != len(hyps):
        raise ValueError("need one list of references per hypothesis")
    if not hyps:
        raise ValueError("no hypotheses")
    lines = []
    for rs, h in zip(refs, hyps):
        h = h.replace("|||", "").replace("  ", " ")
        lines.append(" ||| ".join(("SCORE", " ||| ".join(rs), h)) + "\n")
    running = process if process is not None else MeteorProcess(threads)
    with running:
        try:
            total, segments = running.evaluate(running.stats(lines, cancel))
        except BaseException as exc:
            running.kill()
            if not isinstance(exc, (OSError, ValueError)):
                raise
            raise RuntimeError(f"METEOR failed: {exc}; {running.error_tail()}") from exc
    return total, segments


def _write_all(stream: IO[bytes], lines: list[str], failure: list[BaseException]) -> None:
    try:
        for line in lines:
            stream.write(line.encode())
        stream.flush()
    except OSError as exc:
        failure.append(exc)


def _read_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    if not line:
        raise ValueError(f"METEOR ended early (exit {proc.poll()})")
    return line.decode().strip()
