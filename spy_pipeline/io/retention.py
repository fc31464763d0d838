"""Retention: which old files of the data dir may go, and removing them without ever leaving the data dir.

Categories are the top-level folders of the data dir (plus, optionally, extra roots of log files):

| category | files considered | age from | default days |
|---|---|---|---|
| raw | `raw/**/*.parquet` (not `raw/corporate_actions/`) | the date in the name | 3650 |
| stream | `stream/{source}/{date}/*.{parquet,json,csv}` micro-batches | the `{date}/` folder (or a dated name) | 7 |
| processed | `processed/**/*.parquet` | the date in the name | 730 |
| reports | `reports/**/*.{csv,parquet,json}` | the file's mtime (a report's name holds the range it covers) | 365 |
| logs | `logs/**/*.{log,jsonl,json,out,err,complete}`, extra roots `*.{log,out,err,complete}` | name, else mtime | 30 |

A date "in the name" is a file stem `YYYY-MM-DD` or any enclosing folder named `YYYY-MM-DD` below the
category folder; when there are several, the latest counts (the conservative reading). A file goes when its
date is more than `days` days before `today` (date < today - days), or, for reports and logs without a date,
when it was last modified more than `days` days before `now`.

Rules no setting overrides:
- never the current trading day (the latest NYSE session on or before `today`), nor anything dated today or
  later; an undated file modified on or after that day is kept too;
- never `raw/corporate_actions/` (dividends and splits, rewritten whole; option pricing reads them);
- undated files in raw, stream and processed are kept: without a date they have no age;
- only the data files above, by suffix; hidden files (the temporary files of atomic writes) never;
- the walk never follows a symlink, and never removes one, wherever it points; removal re-opens every folder
  from the root with O_NOFOLLOW, so a folder swapped for a symlink between plan and removal is refused;
- folders: only a dated folder (or a folder inside one) that is past retention and empty once its planned
  files are gone; dataset folders (`raw/spy`) and category folders stay.

Extra log roots (e.g. Dagster's compute logs, `$DAGSTER_HOME/storage/{run_id}/compute_logs/*.{out,err,complete}`
with the default LocalComputeLogManager) are walked with the same rules and the category `logs`; such a root must
not be `/`, the home folder, the data dir, inside it, or one of its parents.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.storage import partition_day
from spy_pipeline.logs import get_logger

log = get_logger(__name__)

CATEGORIES = ("raw", "stream", "processed", "reports", "logs")
DEFAULT_RETENTION_DAYS: dict[str, int] = {"raw": 3650, "stream": 7, "processed": 730, "reports": 365, "logs": 30}
SUFFIXES: dict[str, frozenset[str]] = {
    "raw": frozenset({".parquet"}),
    "stream": frozenset({".parquet", ".json", ".csv"}),
    "processed": frozenset({".parquet"}),
    "reports": frozenset({".csv", ".parquet", ".json"}),
    "logs": frozenset({".log", ".jsonl", ".json", ".out", ".err", ".complete"}),
}
EXTRA_LOG_SUFFIXES = frozenset({".log", ".out", ".err", ".complete"})
BY_MTIME = frozenset({"reports", "logs"})
NEVER = datasets.unpartitioned_folders()  # raw/corporate_actions: rewritten whole, no age
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class RetentionError(ValueError):
    """Bad retention settings, or an extra log root that is not safe to clean."""


@dataclass(frozen=True)
class Removal:
    """One file or folder past retention: `root / relative`, and why."""

    root: Path  # the resolved data dir (or extra log root)
    relative: str  # POSIX path below root
    category: str
    dataset: str  # e.g. raw/spy, stream/spy, reports; an extra log root: its absolute path
    kind: Literal["file", "folder"]
    bytes: int
    day: dt.date | None  # the date in the name; None when aged by mtime
    basis: Literal["name", "mtime"]
    age_days: int

    @property
    def path(self) -> Path:
        return self.root / self.relative


@dataclass(frozen=True)
class _Rules:
    category: str
    days: int
    suffixes: frozenset[str]
    by_mtime: bool
    today: dt.date
    protected_from: dt.date
    now: float

    def expired(self, day: dt.date) -> bool:
        return day < self.today - dt.timedelta(days=self.days) and day < self.protected_from


def resolve_retention_days(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The defaults with `overrides` applied; every value a whole number of days >= 1."""
    days = dict(DEFAULT_RETENTION_DAYS)
    for category, value in (overrides or {}).items():
        if category not in DEFAULT_RETENTION_DAYS:
            raise RetentionError(f"unknown retention category {category!r}: expected one of {', '.join(CATEGORIES)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RetentionError(f"retention for {category} must be a whole number of days >= 1, got {value!r}")
        days[category] = value
    return days


def protected_from(today: dt.date) -> dt.date:
    """The first day retention never touches: the current trading day (latest session on or before today)."""
    try:
        session = cal.last_trading_days(today, 1)[0]
    except cal.TradingCalendarError:
        return today
    return min(session, today)


def plan_retention(
    data_dir: Path | str,
    today: dt.date,
    retention_days: Mapping[str, int] | None = None,
    now: dt.datetime | None = None,
    extra_log_roots: Sequence[Path | str] = (),
) -> list[Removal]:
    """Files and emptied dated folders past retention under `data_dir` (and the extra log roots); removes nothing.

    `retention_days` overrides DEFAULT_RETENTION_DAYS per category; `now` (default: the current
    time) ages the undated reports and logs by mtime.
    """
    days = resolve_retention_days(retention_days)
    root = Path(data_dir).expanduser().resolve()
    moment = (now or dt.datetime.now(dt.UTC)).timestamp()
    first_protected = protected_from(today)
    extras = [_checked_extra_root(extra, root) for extra in extra_log_roots]
    plan: list[Removal] = []
    if root.is_dir():
        for category in CATEGORIES:
            top = root / category
            if top.is_symlink() or not top.is_dir():
                continue
            rules = _Rules(category, days[category], SUFFIXES[category], category in BY_MTIME, today,
                           first_protected, moment)
            _scan(root, (category,), None, (category,), rules, plan)
    for extra in dict.fromkeys(extras):
        rules = _Rules("logs", days["logs"], EXTRA_LOG_SUFFIXES, True, today, first_protected, moment)
        found: list[Removal] = []
        _scan(extra, (), None, (), rules, found)
        plan += [replace(removal, dataset=str(extra)) for removal in found]
    return plan


def _checked_extra_root(extra: Path | str, data_root: Path) -> Path:
    path = Path(extra).expanduser().resolve()
    if not path.is_dir():
        raise RetentionError(f"extra log root {path} is not a folder")
    unsafe = (
        path == Path(path.anchor)
        or path == Path.home().resolve()
        or path == data_root
        or path in data_root.parents
        or data_root in path.parents
    )
    if unsafe:
        raise RetentionError(f"extra log root {path} is not allowed: / , the home folder, the data dir, inside it "
                             "or a parent of it")
    return path


def _later(first: dt.date | None, second: dt.date | None) -> dt.date | None:
    if first is None or second is None:
        return first or second
    return max(first, second)


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _scan(
    root: Path, parts: tuple[str, ...], day: dt.date | None, dataset: tuple[str, ...], rules: _Rules,
    plan: list[Removal],
) -> bool:
    """Plan the removals below root/parts; True when the folder would be empty afterwards."""
    try:
        with os.scandir(root.joinpath(*parts)) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return False
    empty = True
    for entry in entries:
        here = (*parts, entry.name)
        if entry.is_symlink():
            empty = False  # never followed, never removed
        elif entry.is_dir(follow_symlinks=False):
            if here in NEVER:
                empty = False
                continue
            own = partition_day(entry.name)
            inner = _later(day, own)
            inner_dataset = dataset if inner else (*dataset, entry.name)
            if _scan(root, here, inner, inner_dataset, rules, plan) and inner is not None and rules.expired(inner):
                plan.append(Removal(root, "/".join(here), rules.category, "/".join(dataset), "folder", 0, inner,
                                    "name", (rules.today - inner).days))
            else:
                empty = False
        elif entry.is_file(follow_symlinks=False) and (removal := _file(root, here, entry, day, dataset, rules)):
            plan.append(removal)
        else:
            empty = False
    return empty


def _file(
    root: Path, here: tuple[str, ...], entry: os.DirEntry, day: dt.date | None, dataset: tuple[str, ...],
    rules: _Rules,
) -> Removal | None:
    name = entry.name
    suffix = _suffix(name)
    if name.startswith(".") or suffix not in rules.suffixes:
        return None
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:  # gone meanwhile
        return None
    dated = _later(day, partition_day(name[: -len(suffix)]))
    where = "/".join(dataset)
    if dated is not None:
        if not rules.expired(dated):
            return None
        return Removal(root, "/".join(here), rules.category, where, "file", info.st_size, dated, "name",
                       (rules.today - dated).days)
    if not rules.by_mtime:
        return None
    modified = dt.datetime.fromtimestamp(info.st_mtime, cal.NEW_YORK).date()
    age_s = rules.now - info.st_mtime
    if age_s <= rules.days * 86_400 or modified >= rules.protected_from:
        return None
    return Removal(root, "/".join(here), rules.category, where, "file", info.st_size, None, "mtime",
                   int(age_s // 86_400))


def apply_retention(plan: Iterable[Removal], dry_run: bool = True) -> list[Removal]:
    """Remove the planned files, then the planned folders that are empty; returns what was removed (bytes as
    found at removal), or with `dry_run` the plan itself, removing nothing.

    Each removal is checked again: a regular file (or a folder) reached from its root without crossing a
    symlink, of a category's data suffix, not hidden, not in raw/corporate_actions. Anything else, or a file
    that vanished, is skipped (and logged), never an error.
    """
    removals = list(plan)
    if dry_run:
        return removals
    files = [r for r in removals if r.kind == "file"]
    folders = sorted((r for r in removals if r.kind == "folder"), key=lambda r: r.relative.count("/"), reverse=True)
    removed = []
    for removal in [*files, *folders]:
        size = _remove(removal)
        if size is not None:
            removed.append(replace(removal, bytes=size))
    return removed


def _remove(removal: Removal) -> int | None:
    relative = PurePosixPath(removal.relative)
    parts = relative.parts
    name = parts[-1] if parts else ""
    refused = (
        not removal.root.is_absolute()
        or relative.is_absolute()
        or not parts
        or any(part in ("", ".", "..") for part in parts)
        or name.startswith(".")
        or tuple(parts[:2]) in NEVER
        or (removal.kind == "file" and _suffix(name) not in SUFFIXES.get(removal.category, frozenset()))
    )
    if refused:
        log.warning("retention_refused", path=str(removal.path), reason="not a removable data path")
        return None
    try:
        folder = _open_folder(removal.root, parts[:-1])
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("retention_refused", path=str(removal.path), reason=f"cannot open its folder: {exc}")
        return None
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        if removal.kind == "file" and stat.S_ISREG(info.st_mode):
            os.unlink(name, dir_fd=folder)
            return info.st_size
        if removal.kind == "folder" and stat.S_ISDIR(info.st_mode):
            os.rmdir(name, dir_fd=folder)
            return 0
        log.warning("retention_refused", path=str(removal.path), reason=f"not a {removal.kind}")
        return None
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. a folder that is no longer empty
        log.warning("retention_skipped", path=str(removal.path), reason=str(exc))
        return None
    finally:
        os.close(folder)


def _open_folder(root: Path, parts: Sequence[str]) -> int:
    """A descriptor of root/parts, opened one component at a time without following any symlink."""
    handle = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            inner = os.open(part, _DIR_FLAGS, dir_fd=handle)
            os.close(handle)
            handle = inner
    except BaseException:
        os.close(handle)
        raise
    return handle


def summarize(removals: Iterable[Removal]) -> list[dict[str, Any]]:
    """Per category and dataset: files, folders, bytes, oldest and newest day."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for removal in removals:
        row = groups.setdefault(
            (removal.category, removal.dataset),
            {"category": removal.category, "dataset": removal.dataset, "files": 0, "folders": 0, "bytes": 0,
             "oldest_day": None, "newest_day": None},
        )
        row["files" if removal.kind == "file" else "folders"] += 1
        row["bytes"] += removal.bytes
        if removal.day is not None:
            day = removal.day.isoformat()
            row["oldest_day"] = min(filter(None, (row["oldest_day"], day)))
            row["newest_day"] = max(filter(None, (row["newest_day"], day)))
    return [groups[key] for key in sorted(groups)]
