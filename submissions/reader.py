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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from benchmark.errors import BenchmarkError
from submissions.archive import extract_archive, is_archive
from submissions.format import DEFAULT_LIMITS, MANIFEST, MASKS_DIR, PREDICTIONS, TASKS, Limits, Manifest, Prediction


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
    """Where a submission's parts are on disk (archives are extracted to a temporary folder)."""

    source: Path
    root: Path
    predictions_file: Path
    masks_dir: Path | None
    manifest_file: Path | None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._tmp is not None:
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


def open_submission(path: Path | str, *, masks: Path | str | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> Submission:
    """Locate predictions, masks and manifest for a directory, an archive or a predictions file.

    A directory without `predictions.jsonl` may hold exactly one `*.jsonl` (the official
    harness's captions file) and one mask folder beside it (its `--output_mask_dir`).
    """
    source = Path(path)
    tmp = None
    if not source.exists():
        raise SubmissionError(f"{source}: submission not found")
    if is_archive(source):
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
        raise SubmissionError(f"{source}: not a submission (a folder, .zip, .tar.gz or predictions .jsonl)")

    if source.is_file() and not tmp:
        predictions = source
    elif (root / PREDICTIONS).is_file():
        predictions = root / PREDICTIONS
    else:
        found = _single(sorted(root.glob("*.jsonl")))
        if found is None:
            if tmp:
                tmp.cleanup()
            listed = ", ".join(p.name for p in sorted(root.glob("*.jsonl"))) or "none"
            raise SubmissionError(f"{source}: no {PREDICTIONS} (and not exactly one *.jsonl; found {listed})")
        predictions = found

    if masks is not None:
        masks_dir: Path | None = Path(masks)
        if not masks_dir.is_dir():
            raise SubmissionError(f"{masks_dir}: mask folder not found")
    elif (root / MASKS_DIR).is_dir():
        masks_dir = root / MASKS_DIR
    else:
        masks_dir = _single([p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")])
    manifest = root / MANIFEST
    return Submission(source=source, root=root, predictions_file=predictions, masks_dir=masks_dir,
                      manifest_file=manifest if manifest.is_file() else None, _tmp=tmp)


# Unicode category Cc (C0, DEL, C1) plus the line/paragraph separators a tokenizer splits on
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _caption_problem(caption: str, limits: Limits) -> tuple[str, str] | None:
    if not caption.strip():
        return "caption_empty", "empty caption"
    if len(caption) > limits.max_caption_chars or len(caption.split()) > limits.max_caption_words:
        return "caption_long", (f"caption too long ({len(caption)} characters, {len(caption.split())} words; "
                                f"limits {limits.max_caption_chars} / {limits.max_caption_words})")
    bad = _CONTROL.search(caption)
    if bad:
        return "caption_control", f"caption contains control character U+{ord(bad.group()):04X}"
    return None


def iter_lines(path: Path, limits: Limits) -> Iterator[tuple[int, object | None, Problem | None]]:
    """(line number, parsed object or None, problem or None) for each non-blank line."""
    name = path.name
    if path.suffix == ".json":  # the official scorer also takes a JSON list
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            yield 0, None, Problem("utf8", f"{name}: not UTF-8 (byte {exc.start})")
            return
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, Problem("json", f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
            return
        if not isinstance(data, list):
            yield 1, None, Problem("json", f"{name}: expected a JSON list of predictions")
            return
        for i, item in enumerate(data):
            yield i + 1, item, None
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if len(raw) > limits.max_line_bytes:
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
                yield lineno, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield lineno, None, Problem("json", f"{name}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})")


def read_predictions(sub: Submission, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Prediction], list[Problem]]:
    """Every line of the predictions file as a `Prediction`, plus every problem found.

    On duplicate ids the last line wins (as in the official scorer) and a `duplicate` problem is
    recorded. Caption content checks (empty, too long, control characters) are problems too.
    """
    name = sub.predictions_file.name
    preds: dict[str, Prediction] = {}
    problems: list[Problem] = []
    for lineno, obj, problem in iter_lines(sub.predictions_file, limits):
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
    return preds, problems


def read_manifest(sub: Submission, *, required: bool = False) -> Manifest | None:
    """The manifest, checked; `required` for `mmtt submit` (scoring works without one)."""
    path = sub.manifest_file
    if path is None:
        if required:
            raise SubmissionError(f"{sub.source}: {MANIFEST} is required to submit (model, team, tasks)")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SubmissionError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: expected a JSON object")
    problems = []
    model = data.get("model") or data.get("model_name")
    team = data.get("team")
    for key, value in (("model", model), ("team", team)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{path.name}: '{key}' must be a non-empty string")
    tasks = data.get("tasks", list(TASKS))
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
        problems.append(f"{path.name}: 'tasks' must be a list drawn from {list(TASKS)}")
    for key in ("split", "authors", "paper_url", "code_url", "description"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{path.name}: '{key}' must be a string")
    authors = data.get("authors", "")
    if isinstance(authors, list) and all(isinstance(a, str) for a in authors):
        authors = ", ".join(authors)
        problems = [p for p in problems if "'authors'" not in p]
    if problems:
        raise SubmissionError(f"{path}: {problems[0]}", problems=problems)
    known = {"model", "model_name", "team", "split", "tasks", "authors", "paper_url", "code_url", "description"}
    return Manifest(model=model.strip(), team=team.strip(), split=data.get("split"),
                    tasks=tuple(t for t in TASKS if t in tasks), authors=authors,
                    paper_url=data.get("paper_url", ""), code_url=data.get("code_url", ""),
                    description=data.get("description", ""),
                    extra={k: v for k, v in data.items() if k not in known})
