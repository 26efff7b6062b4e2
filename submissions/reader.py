"""Open a submission (directory, archive or predictions file) and read its lines, strictly.

Reading never stops at the first problem: every line is checked and every problem is kept as a
located `Problem` (file:line and/or image id), so a researcher fixes all of them in one go. Which
problems are fatal is the protocol's decision (see `benchmark.scoring`), not the reader's.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from benchmark.errors import BenchmarkError
from submissions import strictjson
from submissions.archive import extract_archive, is_archive
from submissions.format import DEFAULT_LIMITS, MANIFEST, MASKS_DIR, PREDICTIONS, TASKS, Limits, Manifest, Prediction
from submissions.safeio import UnsafeFileError, check_inside, open_file, read_file, scan_tree


class SubmissionError(BenchmarkError):
    """The submission cannot be scored; `problems` lists every reason found."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission. `code` lets a protocol decide whether it is fatal."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Submission:
    """Where a submission's parts are on disk (archives are extracted to a temporary folder).

    `source` is how messages name the submission: the path as the user gave it, or for an
    archive (and the folder extracted from it) the archive's file name — never a temp path."""

    source: Path
    root: Path
    predictions_file: Path
    masks_dir: Path | None
    manifest_file: Path | None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._tmp is not None:
            _EXTRACTED.pop(str(self.root.resolve()), None)
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Submission":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_mask(self, rel: str) -> tuple[Path | None, str | None]:
        """The file for mask path `rel` (relative to the masks folder for default paths, to the
        submission root for explicit ones), or a reason when it would leave the submission."""
        rel = rel.replace("\\", "/")
        if _CONTROL.search(rel):
            return None, "holds a control character"
        if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
            return None, "is absolute"
        norm = posixpath.normpath(rel)
        if norm == ".." or norm.startswith("../"):
            return None, "leaves the submission folder"
        path = self.root / norm
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return None, "leaves the submission folder (through a link)"
        return path, None


def _single(paths: list[Path]) -> Path | None:
    return paths[0] if len(paths) == 1 else None


_EXTRACTED: dict[str, str] = {}   # real path of an extracted archive's root -> the archive's name


def open_submission(path: Path | str, *, masks: Path | str | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> Submission:
    """Locate predictions, masks and manifest for a directory, an archive or a predictions file.

    A directory without `predictions.jsonl` may hold exactly one `*.jsonl` (the official
    harness's captions file) and one mask folder beside it (its `--output_mask_dir`).
    Every entry of the submission folder (and of the mask folder) is checked first: a link that
    leaves the submission, a FIFO, a device or a socket is refused (see `safeio`).
    """
    source = Path(path)
    label = _EXTRACTED.get(str(Path(source).resolve()), str(source))
    tmp = None
    if not source.exists():
        raise SubmissionError(f"{label}: submission not found")
    if is_archive(source):
        label = source.name
        tmp = tempfile.TemporaryDirectory(prefix="mmtt-sub-")
        try:
            root = extract_archive(source, Path(tmp.name) / "sub", limits)
        except BaseException:
            tmp.cleanup()
            raise
    elif source.is_dir():
        root = source
    elif source.is_file() and source.suffix in (".jsonl", ".json"):
        root = source.parent
    else:
        raise SubmissionError(f"{label}: not a submission (a folder, .zip, .tar.gz or predictions .jsonl)")
    try:
        sub = _locate(source, label, root, masks, limits, tmp)
    except BaseException:
        if tmp:
            tmp.cleanup()
        raise
    if tmp:
        _EXTRACTED[str(root.resolve())] = label
    return sub


def _locate(source: Path, label: str, root: Path, masks: Path | str | None, limits: Limits,
            tmp: tempfile.TemporaryDirectory | None) -> Submission:
    single_file = source.is_file() and not tmp
    if not single_file:   # the whole folder is the submission (and what `mmtt submit` keeps)
        _refuse_unsafe(scan_tree(root, label=label, max_entries=limits.max_archive_files), label, limits)
    if single_file:
        predictions = source
    elif (root / PREDICTIONS).exists() or (root / PREDICTIONS).is_symlink():
        predictions = root / PREDICTIONS
    else:
        listed = sorted(p for p in root.glob("*.jsonl") if p.is_file())
        found = _single(listed)
        if found is None:
            names = ", ".join(p.name for p in listed) or "none"
            raise SubmissionError(f"{label}: no {PREDICTIONS} (and not exactly one *.jsonl; found {names})")
        predictions = found
    _check_regular(predictions, None if single_file else root, predictions.name, limits)

    if masks is not None:
        masks_dir: Path | None = Path(masks)
        if not masks_dir.is_dir():
            raise SubmissionError(f"{masks_dir}: mask folder not found")
        masks_dir = masks_dir.resolve()   # the folder the user named: links inside it must stay inside it
        _refuse_unsafe(scan_tree(masks_dir, label=str(masks), max_entries=limits.max_archive_files), str(masks), limits)
    elif (root / MASKS_DIR).is_dir():
        masks_dir = root / MASKS_DIR
    else:
        masks_dir = _single([p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")])
    if single_file and masks is None and masks_dir is not None:   # the folder beside a predictions file
        try:
            check_inside(masks_dir, root, masks_dir.name)
        except UnsafeFileError as exc:
            raise SubmissionError(str(exc)) from None
        _refuse_unsafe(scan_tree(masks_dir, label=masks_dir.name, max_entries=limits.max_archive_files),
                       masks_dir.name, limits)
    manifest = root / MANIFEST
    has_manifest = manifest.exists() or manifest.is_symlink()
    if has_manifest:
        _check_regular(manifest, root, MANIFEST, limits)
    return Submission(source=Path(label), root=root, predictions_file=predictions, masks_dir=masks_dir,
                      manifest_file=manifest if has_manifest else None, _tmp=tmp)


def _refuse_unsafe(problems: list[str], label: str, limits: Limits) -> None:
    if problems:
        raise SubmissionError(f"{label}: {len(problems)} unsafe file(s) in the submission; first: {problems[0]}",
                              problems=problems[: limits.max_problems])


def _check_regular(path: Path, root: Path | None, name: str, limits: Limits) -> None:
    """Refuse `path` now (not when read) if it is not a regular file inside the submission."""
    try:
        open_file(path, label=name, max_bytes=max(limits.max_predictions_bytes, limits.max_manifest_bytes),
                  root=root).close()
    except UnsafeFileError as exc:
        raise SubmissionError(str(exc)) from None


# Unicode category Cc (C0, DEL, C1) plus the line/paragraph separators a tokenizer splits on
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# characters that draw nothing: format characters (zero-width space/joiners, bidi marks, BOM),
# combining marks on nothing, and the "filler" letters and blanks that render as empty space
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f\u17b4\u17b5")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


_ASCII_VISIBLE = re.compile("[!-~]")


def _draws_nothing(c: str) -> bool:
    return c in _FILLERS or c.isspace() or unicodedata.category(c) in _INVISIBLE_CATEGORIES


def has_visible_text(text: str) -> bool:
    """Whether `text` has a character that renders as something (an effectively empty caption,
    of zero-width characters and fillers, has none). Stops at the first one found."""
    return bool(_ASCII_VISIBLE.search(text)) or not all(_draws_nothing(c) for c in text)


def _caption_problem(caption: str, limits: Limits) -> tuple[str, str] | None:
    if not caption.strip():
        return "caption_empty", "empty caption"
    # (no more words than characters: a short caption is not split to count them)
    many_words = len(caption) > limits.max_caption_words and len(caption.split()) > limits.max_caption_words
    if len(caption) > limits.max_caption_chars or many_words:
        return "caption_long", (f"caption too long ({len(caption)} characters, {len(caption.split())} words; "
                                f"limits {limits.max_caption_chars} / {limits.max_caption_words})")
    bad = _CONTROL.search(caption)
    if bad:
        return "caption_control", f"caption contains control character U+{ord(bad.group()):04X}"
    if not has_visible_text(caption):
        return "caption_empty", "caption is empty once invisible characters (zero-width, fillers) are removed"
    return None


def _json_problem(where: str, exc: ValueError) -> Problem:
    if isinstance(exc, json.JSONDecodeError):
        return Problem("json", f"{where}: invalid JSON: {exc.msg} (column {exc.colno})")
    return Problem("json", f"{where}: refused JSON: {exc}")


def _lines(fh, max_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(line, too_long) for each line of `fh`; an over-long line is skipped in chunks, never held
    in memory whole."""
    while True:
        raw = fh.readline(max_bytes + 1)
        if not raw:
            return
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            while (rest := fh.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
            yield b"", True
            continue
        yield raw, len(raw) > max_bytes


def iter_lines(path: Path, limits: Limits) -> Iterator[tuple[int, object | None, Problem | None]]:
    """(line number, parsed object or None, problem or None) for each non-blank line."""
    name = path.name
    try:
        fh = open_file(path, label=name, max_bytes=limits.max_predictions_bytes)
    except UnsafeFileError as exc:
        raise SubmissionError(str(exc)) from None
    with fh:
        if path.suffix == ".json":  # the official scorer also takes a JSON list
            try:
                data = strictjson.loads(fh.read().decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield 0, None, Problem("utf8", f"{name}: not UTF-8 (byte {exc.start})")
                return
            except json.JSONDecodeError as exc:
                yield exc.lineno, None, Problem("json", f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
                return
            except ValueError as exc:
                yield 1, None, _json_problem(name, exc)
                return
            if not isinstance(data, list):
                yield 1, None, Problem("json", f"{name}: expected a JSON list of predictions")
                return
            for i, item in enumerate(data):
                yield i + 1, item, None
            return
        for lineno, (raw, too_long) in enumerate(_lines(fh, limits.max_line_bytes), start=1):
            if too_long:
                yield lineno, None, Problem("line_long", f"{name}:{lineno}: line longer than {limits.max_line_bytes} bytes")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, Problem("utf8", f"{name}:{lineno}: not UTF-8 (byte {exc.start} of the line)")
                continue
            if not text.strip():
                continue
            try:
                yield lineno, strictjson.loads(text), None
            except ValueError as exc:
                yield lineno, None, _json_problem(f"{name}:{lineno}", exc)


def read_predictions(sub: Submission, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Prediction], list[Problem]]:
    """Every line of the predictions file as a `Prediction`, plus every problem found.

    On duplicate ids the last line wins (as in the official scorer) and a `duplicate` problem is
    recorded. Caption content checks (empty, too long, control characters) are problems too.
    """
    name = sub.predictions_file.name
    preds: dict[str, Prediction] = {}
    problems: list[Problem] = []
    seen = 0
    for lineno, obj, problem in iter_lines(sub.predictions_file, limits):
        seen += 1
        if seen > limits.max_prediction_lines:
            problems.append(Problem("json", f"{name}:{lineno}: more than {limits.max_prediction_lines} predictions "
                                            "for this split; the rest of the file is not read"))
            break
        if problem:
            problems.append(problem)
            continue
        where = f"{name}:{lineno}"
        if not isinstance(obj, dict):
            problems.append(Problem("type", f"{where}: expected a JSON object, got {type(obj).__name__}"))
            continue
        image_id = obj.get("image_id")
        if not isinstance(image_id, str) or not image_id:
            problems.append(Problem("type", f"{where}: 'image_id' must be a non-empty string"))
            continue
        where = f"{where} (image_id {image_id!r})"
        bad = [k for k in ("caption", "mask", "img_path") if k in obj and not isinstance(obj[k], str)]
        if bad:
            problems.append(Problem("type", f"{where}: " + "; ".join(f"'{k}' must be a string" for k in bad)))
            continue
        caption = obj.get("caption")
        if caption is not None:
            issue = _caption_problem(caption, limits)
            if issue:
                problems.append(Problem(issue[0], f"{where}: {issue[1]}"))
        mask = obj.get("mask")
        if mask is not None:
            _, why = sub.resolve_mask(mask)
            if why:
                problems.append(Problem("mask_path", f"{where}: mask path '{mask}' {why}"))
                mask = None
        if image_id in preds:
            problems.append(Problem("duplicate", f"{where}: duplicate image_id (also on line {preds[image_id].line})"))
        preds[image_id] = Prediction(image_id=image_id, line=lineno, caption=caption, mask=mask,
                                     img_path=obj.get("img_path"))
    if not preds and not problems:   # even --allow-missing must not score an empty file as "all missing"
        raise SubmissionError(f"{name}: no predictions (the file is empty)")
    return preds, problems


def read_manifest(sub: Submission, *, required: bool = False, limits: Limits = DEFAULT_LIMITS) -> Manifest | None:
    """The manifest, checked; `required` for `mmtt submit` (scoring works without one)."""
    path = sub.manifest_file
    if path is None:
        if required:
            raise SubmissionError(f"{sub.source}: {MANIFEST} is required to submit (model, team, tasks)")
        return None
    try:
        data = strictjson.loads(read_file(path, label=MANIFEST, max_bytes=limits.max_manifest_bytes, root=sub.root)
                                .decode("utf-8"))
    except UnsafeFileError as exc:
        raise SubmissionError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{MANIFEST}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{MANIFEST}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise SubmissionError(f"{MANIFEST}: refused JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{MANIFEST}: expected a JSON object")
    problems = []
    model = data.get("model") or data.get("model_name")
    team = data.get("team")
    for key, value in (("model", model), ("team", team)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{MANIFEST}: '{key}' must be a non-empty string")
    tasks = data.get("tasks", list(TASKS))
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
        problems.append(f"{MANIFEST}: 'tasks' must be a list drawn from {list(TASKS)}")
    for key in ("split", "authors", "paper_url", "code_url", "description"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{MANIFEST}: '{key}' must be a string")
    authors = data.get("authors", "")
    if isinstance(authors, list) and all(isinstance(a, str) for a in authors):
        authors = ", ".join(authors)
        problems = [p for p in problems if "'authors'" not in p]
    for key, value in (("model", model), ("team", team), ("split", data.get("split")), ("authors", authors),
                       ("paper_url", data.get("paper_url")), ("code_url", data.get("code_url")),
                       ("description", data.get("description"))):
        cap = limits.max_description_chars if key == "description" else limits.max_field_chars
        if isinstance(value, str) and len(value) > cap:
            problems.append(f"{MANIFEST}: '{key}' has {len(value)} characters, over the limit of {cap}")
    if problems:
        raise SubmissionError(problems[0], problems=problems)
    known = {"model", "model_name", "team", "split", "tasks", "authors", "paper_url", "code_url", "description"}
    return Manifest(model=model.strip(), team=team.strip(), split=data.get("split"),
                    tasks=tuple(t for t in TASKS if t in tasks), authors=authors,
                    paper_url=data.get("paper_url", ""), code_url=data.get("code_url", ""),
                    description=data.get("description", ""),
                    extra={k: v for k, v in data.items() if k not in known})
