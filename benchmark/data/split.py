"""Read an MMTT split exactly as released: `<root>/<split>-mutilabel(-simple).json` + image root.

The data root is the folder that holds the split JSONs; record paths are relative to it and, in
the release, start with `dataset/` (the image root). Paths written relative to the image root
itself (`celeb512/...`) are accepted too. Nothing is converted: the official files are read as
they are, and every problem is reported with the file and the record at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable

from benchmark.data.record import Record
from benchmark.data.regions import N_REGIONS, multilabel
from benchmark.errors import DatasetError

IMAGE_ROOT = "dataset"
MAX_PROBLEMS = 50
_KNOWN_KEYS = ("image_id", "instance_id", "img_path", "mask_path", "caption", "multilabel")


def split_candidates(name: str) -> list[str]:
    """The file names a split name may refer to, in order of preference.

    `test` -> `test-mutilabel.json`, then `test-mutilabel-simple.json`; `eval-simple` ->
    `eval-mutilabel-simple.json`; a robustness variant `test_blur` -> `test-mutilabel_blur.json`
    (the official robustness script's naming); a name ending in `.json` is taken literally.
    """
    if name.endswith(".json"):
        return [name]
    if name.endswith("-simple"):
        return [f"{name[: -len('-simple')]}-mutilabel-simple.json"]
    base, _, variant = name.partition("_")
    if variant:
        return [f"{base}-mutilabel_{variant}.json"]
    return [f"{name}-mutilabel.json", f"{name}-mutilabel-simple.json"]


def split_file(root: Path, name: str) -> Path:
    """The split JSON for `name` under `root`, or a located error listing what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data directory not found")
    for candidate in split_candidates(name):
        path = root / candidate
        if path.is_file():
            return path
    tried = ", ".join(split_candidates(name))
    have = ", ".join(sorted(available_splits(root))) or "none"
    raise DatasetError(f"{root}: split '{name}' not found (looked for {tried}; splits here: {have})")


def available_splits(root: Path) -> list[str]:
    """Split names present under `root` (inverse of `split_candidates`)."""
    names = []
    for path in sorted(Path(root).glob("*-mutilabel*.json")):
        stem = path.name[: -len(".json")]
        base, _, rest = stem.partition("-mutilabel")
        if rest == "":
            names.append(base)
        elif rest == "-simple":
            names.append(f"{base}-simple")
        elif rest.startswith("_"):
            names.append(f"{base}{rest}")
    return names


def resolve_data_path(root: Path, rel: str, is_file=os.path.isfile) -> Path | None:
    """The file a record path names: `<root>/<rel>`, else `<root>/dataset/<rel>`; None if neither."""
    found = _resolve(os.fspath(root), rel, is_file)
    return None if found is None else Path(found)


def _resolve(base: str, rel: str, is_file) -> str | None:
    rel = rel.replace("\\", "/")
    for candidate in (f"{base}/{rel}", f"{base}/{IMAGE_ROOT}/{rel}"):
        if is_file(candidate):  # plain strings: 40k pathlib objects cost more than the lookups
            return candidate
    return None


class _Listings:
    """`is_file(path)` answered from one listing per folder (a split names ~40,000 files in a few
    dozen folders: a few dozen `scandir` calls instead of one `stat` each)."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def __call__(self, path: str) -> bool:
        folder, _, name = path.rpartition("/")
        names = self._names.get(folder)
        if names is None:
            try:
                with os.scandir(folder or "/") as entries:
                    names = frozenset(e.name for e in entries if e.is_file())
            except OSError:
                names = frozenset()
            self._names[folder] = names
        return name in names


class _Paths(Mapping):
    """image_id -> `Path`, kept as strings and made a `Path` when asked for (most are never asked
    for by a scoring run, and building 40,000 `Path` objects up front costs more than the rest)."""

    def __init__(self, raw: dict[str, str]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> Path:
        return Path(self._raw[key])

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def strings(self) -> Mapping[str, str]:
        return MappingProxyType(self._raw)


@dataclass
class Split:
    """A loaded split: its records in file order plus where their files are."""

    name: str
    root: Path
    json_path: Path
    records: list[Record]
    image_files: Mapping[str, Path] = field(repr=False)
    mask_files: Mapping[str, Path] = field(repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def by_id(self) -> dict[str, Record]:
        return {r.image_id: r for r in self.records}

    @cached_property
    def ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def mask_paths(self) -> Mapping[str, str]:
        """image_id -> truth mask path, as strings (all of them, without making 20,000 `Path`s)."""
        files = self.mask_files
        return files.strings if isinstance(files, _Paths) else {k: os.fspath(v) for k, v in files.items()}

    def counts(self, key: str) -> dict[str, int]:
        """How many records per `method` or `source`."""
        return dict(sorted(Counter(getattr(r, key) for r in self.records).items()))

    @cached_property
    def fingerprint(self) -> str:
        """A stable hash of the truth: every record's fields and the bytes of its truth mask.

        Record order does not matter; any change to an id, path, caption, label vector or truth
        mask changes it. Images are not hashed (they are inputs, not truth), only their paths.
        """
        h = hashlib.sha256(b"mmtt-split-v1\0")
        for rec in sorted(self.records, key=lambda r: r.image_id):
            row = [rec.image_id, rec.img_path, rec.mask_path, rec.caption, list(rec.multilabel)]
            h.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
            h.update(hashlib.sha256(self.mask_files[rec.image_id].read_bytes()).digest())
        return "sha256:" + h.hexdigest()


def _parse_record(item: Any, where: str, problems: list[str]) -> Record | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object, got {type(item).__name__}")
        return None
    image_id = item.get("image_id")
    label = f"{where} (image_id {image_id!r})" if isinstance(image_id, str) else where
    bad = []
    for key in ("image_id", "caption", "mask_path"):
        if not isinstance(item.get(key), str) or (key != "caption" and not item.get(key)):
            bad.append(f"'{key}' must be a non-empty string" if key != "caption" else "'caption' must be a string")
    img_path = item.get("img_path", item.get("relative_path"))
    if not isinstance(img_path, str) or not img_path:
        bad.append("'img_path' must be a non-empty string")
    instance_id = item.get("instance_id")
    if instance_id is not None and not isinstance(instance_id, (str, int)):
        bad.append("'instance_id' must be a string or an integer")
    vector = item.get("multilabel")
    if vector is None and isinstance(item.get("caption"), str):
        vector = multilabel(item["caption"])  # the official rule, for files released without it
    if not (isinstance(vector, list) and len(vector) == N_REGIONS and set(map(type, vector)) == {int}
            and vector.count(0) + vector.count(1) == N_REGIONS):   # ints (not bools), each 0 or 1
        bad.append(f"'multilabel' must be a list of {N_REGIONS} zeros/ones")
    if bad:
        problems.append(f"{label}: " + "; ".join(bad))
        return None
    extra = {k: v for k, v in item.items() if k not in _KNOWN_KEYS and k != "relative_path"}
    return Record(
        image_id=item["image_id"],
        img_path=img_path,
        mask_path=item["mask_path"],
        caption=item["caption"],
        multilabel=tuple(vector),
        instance_id=None if instance_id is None else str(instance_id),
        extra=extra,
    )


def read_records(json_path: Path) -> list[Record]:
    """Parse a split JSON into records; every malformed record is reported, none is dropped."""
    json_path = Path(json_path)
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{json_path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{json_path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{json_path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{json_path}: expected a JSON list of records, got {type(data).__name__}")
    problems: list[str] = []
    records: list[Record] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(data):
        rec = _parse_record(item, f"{json_path.name}[{index}]", problems)
        if rec is None:
            continue
        if rec.image_id in first_index:
            problems.append(f"{json_path.name}[{index}]: duplicate image_id {rec.image_id!r} "
                            f"(first at [{first_index[rec.image_id]}])")
            continue
        first_index[rec.image_id] = index
        records.append(rec)
    _raise_if(problems, json_path)
    if not records:
        raise DatasetError(f"{json_path}: the split has no records")
    return records


def _raise_if(problems: list[str], path: Path) -> None:
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        head = f"{path}: {len(problems)} problem(s); first: {problems[0]}"
        raise DatasetError(head, problems=shown + ([f"... and {more} more"] if more else []))


def load_split(root: Path | str, name: str = "test", *, check_files: bool = True) -> Split:
    """Load split `name` from data root `root`; with `check_files`, every image and mask must exist."""
    root = Path(root)
    json_path = split_file(root, name)
    records = read_records(json_path)
    images: dict[str, str] = {}
    masks: dict[str, str] = {}
    problems: list[str] = []
    base, is_file = os.fspath(root), _Listings()
    for rec in records:
        for rel, store, what in ((rec.img_path, images, "image"), (rec.mask_path, masks, "mask")):
            path = _resolve(base, rel, is_file)
            if path is None:
                if check_files:
                    problems.append(f"image_id {rec.image_id!r}: {what} file not found: {rel}")
                path = os.fspath(root / rel)
            store[rec.image_id] = path
    _raise_if(problems, json_path)
    return Split(name=name, root=root, json_path=json_path, records=records, image_files=_Paths(images),
                 mask_files=_Paths(masks))


def write_split(path: Path, records: Iterable[Record]) -> None:
    """Write records as an official split JSON (atomic: a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([r.to_json() for r in records], indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
