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
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["PUNCTUATIONS", "ptb_tokenize_lines", "tokenize"]

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
    sentences = list(sentences)
    if not sentences:
        return []
    for s in sentences:
        if not isinstance(s, str):
            raise TypeError(f"captions must be str, got {type(s).__name__}")
    text = "\n".join(one_line(s) for s in sentences)
    with tempfile.TemporaryDirectory(prefix="mmtt-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_bytes(text.encode("utf-8", errors="replace"))
        # C1 compiler only: this JVM lives ~1 s, so C2's compiling costs more CPU than it saves
        # (measured: half the CPU seconds on 21,679 captions, the same output)
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-cp", str(_jar_path()), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(path)]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, check=False)
        except FileNotFoundError as exc:
            raise RuntimeError("Java is required for PTB tokenization but `java` was not found") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"PTBTokenizer failed (exit {proc.returncode}): {tail}")
    lines = proc.stdout.decode("utf-8", errors="replace").split("\n")
    if len(lines) != len(sentences):
        raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(sentences)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in _PUNCT) for line in lines]


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
