"""PTB tokenization exactly as pycocoevalcap 1.2 does it, without writing into site-packages.

pycocoevalcap's ``PTBTokenizer`` runs Stanford's Java PTBTokenizer (the jar shipped in the
wheel) with ``-preserveLines -lowerCase`` over a temporary file that it creates *inside the
package folder*, then drops a fixed list of punctuation tokens. This module runs the same jar,
with the same options, on the same text, so the output is identical, with these differences:

* the temporary file lives in a private temporary directory (site-packages may be read-only);
* every character the Java lexer treats as a line break (``\\r``, ``\\n``, ``\\v``, ``\\f``,
  U+2028, U+2029) becomes a space, so that one caption is always one line. pycocoevalcap only
  replaces ``\\n``: a caption holding ``\\r`` shifts every later caption onto the wrong image;
* the number of lines coming back is checked, and Java failures raise :class:`RuntimeError`.

All captions go through one Java call.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["PUNCTUATIONS", "PTBRun", "ptb_tokenize_lines", "tokenize"]

# The punctuation tokens pycocoevalcap removes after tokenization (same list, same order).
PUNCTUATIONS = ("''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                ".", "?", "!", ",", ":", "-", "--", "...", ";")
_PUNCT = frozenset(PUNCTUATIONS)

# Characters the Java PTBLexer turns into line breaks.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\u2028\u2029]")

_JAR = "stanford-corenlp-3.4.1.jar"


def pycocoevalcap_file(*parts: str) -> Path:
    """Path of a file shipped in the pycocoevalcap wheel (a namespace package: no ``__file__``)."""
    spec = importlib.util.find_spec("pycocoevalcap")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root, *parts)
        if path.is_file():
            return path
    raise RuntimeError(f"{'/'.join(parts)} not found in pycocoevalcap (is pycocoevalcap 1.2 installed?)")


def _jar_path() -> Path:
    return pycocoevalcap_file("tokenizer", _JAR)


def one_line(text: str) -> str:
    """``text`` with every line-break character the Java lexer knows replaced by a space."""
    return _LINE_BREAKS.sub(" ", text)


def ptb_tokenize_lines(sentences: Sequence[str]) -> list[str]:
    """Tokenize each sentence as pycocoevalcap does; returns one string of tokens per sentence."""
    return PTBRun(sentences).result()


class PTBRun:
    """One PTBTokenizer process over a list of sentences, started now, its tokens collected by
    `result()` (so that the JVM works while the caller does something else). Its output goes to a
    file, not a pipe, so it never waits to be read; the process and its files go with the object."""

    def __init__(self, sentences: Sequence[str]) -> None:
        sentences = list(sentences)
        for s in sentences:
            if not isinstance(s, str):
                raise TypeError(f"captions must be str, got {type(s).__name__}")
        self.n = len(sentences)
        self._tokens: list[str] | None = [] if not sentences else None
        if not sentences:
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="mmtt-ptb-")
        tmp = Path(self._tmp.name)
        path = tmp / "captions.txt"
        path.write_bytes("\n".join(one_line(s) for s in sentences).encode("utf-8", errors="replace"))
        # C1 compiler only: this JVM lives ~1 s, so C2's compiling costs more CPU than it saves
        # (measured: half the CPU seconds on 21,679 captions, the same output)
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-cp", str(_jar_path()), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(path)]
        self._out, self._err = tmp / "tokens.txt", tmp / "stderr.txt"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            except FileNotFoundError as exc:
                self._tmp.cleanup()
                raise RuntimeError("Java is required for PTB tokenization but `java` was not found") from exc
        weakref.finalize(self, _stop, self._proc, self._tmp)

    def result(self) -> list[str]:
        """The tokens of each sentence (waits for the process; computed once)."""
        if self._tokens is None:
            code = self._proc.wait()
            if code != 0:
                tail = self._err.read_bytes().decode("utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"PTBTokenizer failed (exit {code}): {tail}")
            lines = self._out.read_bytes().decode("utf-8", errors="replace").split("\n")
            if len(lines) != self.n:
                raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {self.n} captions")
            self._tokens = [" ".join(w for w in line.rstrip().split(" ") if w not in _PUNCT) for line in lines]
            self._tmp.cleanup()
        return self._tokens


def _stop(proc: subprocess.Popen, tmp: tempfile.TemporaryDirectory) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    tmp.cleanup()


def tokenize(captions: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    """``{id: caption or [captions]}`` -> ``{id: [tokenized caption, ...]}``, one Java call.

    Same output as ``PTBTokenizer().tokenize({id: [{"caption": c}, ...]})`` of pycocoevalcap.
    """
    keys: list[str] = []
    flat: list[str] = []
    out: dict[str, list[str]] = {}
    for key, value in captions.items():
        values = [value] if isinstance(value, str) else list(value)
        out[key] = []
        keys.extend([key] * len(values))
        flat.extend(values)
    for key, line in zip(keys, ptb_tokenize_lines(flat)):
        out[key].append(line)
    return out
