"""The gate's I/O edge: results, cases, coverage and calibration files turned into the plain values of
:mod:`judge.gate.decide`.

Conventions (documented in ``judge gate --help`` too):

* **Results** are `judge run` output (one `Verdict` per line). Every pair was built with the **candidate as
  response A** and the other side (the baseline's response, or the case's reference answer) as response B,
  so ``winner == "A"`` is a win for the candidate, ``"B"`` a loss, ``"tie"`` a tie and a failure a failure.
* A result belongs to the **case** whose id is its pair id, or the ``meta.case_id`` of that pair in a pair
  file given with ``pairs`` (several pairs, e.g. several samples, may then belong to one case).
* A case belongs to one or more **entries**: from a cases file (JSONL, or the JSON array of
  ``judge cases list --json``: ``id``, ``entries``, ``status``), or any callable / mapping from case id to
  entries (the case store, a test). Only accepted cases count.
* **Coverage** (distinct accepted cases per entry) is best taken from ``judge coverage --json`` (which merges
  near-duplicates); without it, it is counted from the cases file (``duplicate_of`` marks a duplicate).
* **Calibration** is read from the ``metrics.json`` of ``judge eval --metrics-out`` (or ``judge report``):
  the cross-fitted ``recalibrated`` report when present (what the judge ships with), else ``raw``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from judge.cases.coverage import EntryCoverage
from judge.errors import InputError
from judge.gate.decide import CalibrationSummary, EntryOutcomes
from judge.jsonl import loads, read_jsonl

__all__ = [
    "CaseIndex",
    "CaseSource",
    "Outcomes",
    "check_one_judge",
    "outcomes_from_verdicts",
    "read_calibration",
    "read_cases",
    "read_coverage",
    "read_pair_case_ids",
]

#: Case statuses whose results count (a cases file without ``status`` counts every case).
COUNTED_STATUSES = frozenset({"accepted"})
#: Every status a case can have (`judge.cases.model.CaseStatus`); any other is bad input, not "not accepted".
_STATUSES = frozenset({"accepted", "draft", "rejected"})


class CaseSource(Protocol):
    """Where the gate gets cases from: coverage per entry, and the entries of a case."""

    def coverage(self) -> Sequence[EntryCoverage]:
        """Test cases of every entry."""
        ...  # pragma: no cover

    def entries_of(self, case_id: str) -> Sequence[str]:
        """The entries a case tests (empty: unknown case, or one whose results do not count)."""
        ...  # pragma: no cover


@dataclass
class CaseIndex:
    """Cases read from a file; a `CaseSource`.

    Attributes:
        entries: Entries of each counted case (accepted, or every case when the file has no status).
        counts: Coverage derived from the file: cases per entry, by status.
    """

    entries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    counts: list[EntryCoverage] = field(default_factory=list)

    def coverage(self) -> Sequence[EntryCoverage]:
        """Coverage derived from the file (``distinct_accepted`` excludes cases marked ``duplicate_of``)."""
        return self.counts

    def entries_of(self, case_id: str) -> Sequence[str]:
        """The entries of a counted case; empty for an unknown or uncounted case."""
        return self.entries.get(case_id, ())


@dataclass
class Outcomes:
    """Results mapped to entries.

    Attributes:
        by_entry: The comparisons of each entry.
        results: Results read.
        unmatched: Pair ids whose case is unknown (or not accepted): ignored.
    """

    by_entry: dict[str, EntryOutcomes]
    results: int
    unmatched: list[str]


def _read_json(path: Path) -> Any:
    """A whole JSON document; a missing file or malformed JSON is an `InputError` naming the file."""
    if path.is_dir():
        raise InputError("a folder, not a file", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"invalid UTF-8 at byte {exc.start}", path=path) from None
    return loads(text, path=path)


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """The objects of a JSONL file with their line numbers."""
    return read_jsonl(path)


def _records(path: Path) -> Iterable[tuple[int | None, str, dict[str, Any]]]:
    """(line, label, object) of a JSONL file, or of a JSON array (as ``judge cases list --json`` prints it).

    ``line`` is None for an array, whose items are named by ``label`` (``item 3``) in errors instead.
    """
    if not path.is_file():
        raise InputError("a folder, not a file" if path.is_dir() else "no such file", path=path)
    with path.open("rb") as fh:
        head = fh.read(1024).decode("utf-8", errors="replace").removeprefix("\ufeff").lstrip()
    if not head.startswith("["):
        for line, obj in _jsonl(path):
            yield line, "", obj
        return
    data = _read_json(path)
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise InputError(f"item {i} is not a JSON object", path=path)
        yield None, f"item {i}: ", obj


def _entries_field(obj: dict[str, Any], path: Path, line: int | None, label: str) -> tuple[str, ...]:
    if "entries" in obj:
        value = obj["entries"]
        if not isinstance(value, list) or not all(isinstance(e, str) and e for e in value):
            raise InputError(f"{label}entries must be a list of entry ids", path=path, line=line, field="entries")
        return tuple(dict.fromkeys(value))
    if isinstance(obj.get("entry"), str) and obj["entry"]:
        return (obj["entry"],)
    raise InputError(f"{label}a case needs 'entries' (a list of entry ids) or 'entry'", path=path, line=line,
                     field="entries")


def _counts_review(obj: Mapping[str, Any], methods: Sequence[str] | None) -> bool:
    if methods is None:
        return True
    method = obj.get("review_method") or ("person" if obj.get("reviewer") else None)
    return method in methods


def read_cases(path: str | Path, *, review_methods: Sequence[str] | None = None) -> CaseIndex:
    """Read cases: ``id``, ``entries`` (or ``entry``), optional ``status`` and ``duplicate_of``; one object per
    line (JSONL), or a JSON array (``judge cases list --json > cases.json``).

    Only cases whose status is ``accepted`` (or that have no status) count, for results and coverage alike;
    a case with a non-empty ``duplicate_of`` counts for its results but not as a *distinct* case. With
    ``review_methods``, an accepted case counts only if its ``review_method`` is one of them (a case with a
    ``reviewer`` and no method was reviewed by a person).

    Raises:
        InputError: A line is not JSON, lacks ``id`` or ``entries``, or repeats an id (file:line, field); the
            file holds no case.
    """
    path = Path(path)
    index = CaseIndex()
    seen: dict[str, str] = {}
    tally: dict[str, dict[str, int]] = {}
    groups: dict[str, set[str]] = {}  # entry -> near-duplicate groups among the counted cases (head ids)
    for line, label, obj in _records(path):
        case_id = obj.get("id")
        if not isinstance(case_id, str | int) or str(case_id) == "":
            raise InputError(f"{label}a case needs an 'id'", path=path, line=line, field="id")
        case_id = str(case_id)
        if case_id in seen:
            raise InputError(f"{label}duplicate case id {case_id!r} (first at {seen[case_id]})", path=path,
                             line=line, field="id")
        seen[case_id] = label.rstrip(": ") or f"line {line}"
        entries = _entries_field(obj, path, line, label)
        status = obj.get("status") or "accepted"
        if status not in _STATUSES:
            raise InputError(f"{label}unknown case status {status!r}; known: {', '.join(sorted(_STATUSES))}",
                             path=path, line=line, field="status")
        if status in COUNTED_STATUSES and not _counts_review(obj, review_methods):
            status = "not counted"
        head = str(obj.get("duplicate_of") or case_id)
        for entry in entries:
            row = tally.setdefault(entry, {"accepted": 0, "draft": 0, "rejected": 0})
            if status in COUNTED_STATUSES:
                row["accepted"] += 1
                # a near-duplicate counts once with its group, also when its head is not counted (another
                # review method accepted it): the group then counts through its first counted member
                groups.setdefault(entry, set()).add(head)
            elif status in row:
                row[status] += 1
        if status in COUNTED_STATUSES:
            index.entries[case_id] = entries
    if not seen:
        raise InputError("no cases in the file (one object per line with id and entries, or a JSON array)",
                         path=path)
    index.counts = [EntryCoverage(entry_id=e, distinct_accepted=len(groups.get(e, ())), accepted=r["accepted"],
                                  draft=r["draft"], rejected=r["rejected"]) for e, r in sorted(tally.items())]
    return index


def read_coverage(path: str | Path, *, review_methods: Sequence[str] | None = None) -> list[EntryCoverage]:
    """Read coverage JSON (as printed by ``judge coverage --json``): a list of entry objects, or an object
    holding that list under ``entries`` or ``coverage``.

    With ``review_methods``, the coverage must say it counted only cases reviewed by those methods (its
    ``review_methods`` field, as ``judge coverage --review-method ... --json`` writes it).

    Raises:
        InputError: Not JSON, an entry lacks ``entry_id`` / ``distinct_accepted`` (field named), or the
            coverage counted reviews the policy does not accept.
    """
    path = Path(path)
    data = _read_json(path)
    if review_methods is not None:
        counted = data.get("review_methods") if isinstance(data, dict) else None
        if not isinstance(counted, list) or not set(counted) <= set(review_methods):
            flags = " ".join(f"--review-method {m}" for m in review_methods)
            raise InputError(f"the coverage counted cases reviewed by {counted or 'any method'}, but the policy "
                             f"accepts only {', '.join(review_methods)}: make it with `judge coverage {flags} "
                             "--json`", path=path, field="review_methods")
    if isinstance(data, dict):
        data = data.get("entries", data.get("coverage"))
    if not isinstance(data, list):
        raise InputError("expected a list of entry coverage objects", path=path)
    out: list[EntryCoverage] = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise InputError(f"item {i} is not an object", path=path, field=f"[{i}]")
        if not isinstance(row.get("entry_id"), str):
            problem = "has no entry_id" if row.get("entry_id") is None else "has an entry_id that is not a string"
            raise InputError(f"item {i} {problem}", path=path, field=f"[{i}].entry_id")
        counts: dict[str, int] = {}
        for name in ("distinct_accepted", "accepted", "draft", "rejected"):
            value = row.get(name, 0 if name != "distinct_accepted" else None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"item {i} ({row['entry_id']}): {name} must be a count", path=path,
                                 field=f"[{i}].{name}")
            counts[name] = value
        out.append(EntryCoverage(entry_id=row["entry_id"], **counts))
    return out


def read_pair_case_ids(paths: Sequence[str | Path]) -> dict[str, str]:
    """Pair id -> case id from pair files whose lines carry ``meta.case_id`` (other lines are skipped).

    Raises:
        InputError: a line's ``meta`` is not an object or its ``case_id`` not a non-empty string (file:line).
    """
    mapping: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        for line, obj in _jsonl(path):
            meta = obj.get("meta")
            if meta is not None and not isinstance(meta, dict):
                raise InputError("meta must be an object", path=path, line=line, field="meta")
            case_id = (meta or {}).get("case_id")
            if case_id is not None and (not isinstance(case_id, str) or not case_id):
                raise InputError("meta.case_id must be a non-empty string", path=path, line=line,
                                 field="meta.case_id")
            if obj.get("id") is not None and case_id is not None:
                mapping[str(obj["id"])] = case_id
    return mapping


def check_one_judge(verdicts: Sequence[Any], path: Path) -> None:
    """Refuse a results file whose verdicts came from more than one judge configuration.

    A gate compares one judge's verdicts against thresholds; a file mixing two judges (e.g. a resumed run
    under other settings, or two files concatenated) would pass or fail on neither.

    Raises:
        InputError: two verdicts differ in `JudgeConfig` or calibrator (names both pair ids and the fields).
    """
    if not verdicts:
        return
    first = verdicts[0]
    for v in verdicts[1:]:
        if v.config == first.config and v.calibrator == first.calibrator:
            continue
        mine, theirs = first.config.model_dump(), v.config.model_dump()
        diff = [f"{k} {mine.get(k)!r} vs {theirs.get(k)!r}" for k in sorted(set(mine) | set(theirs))
                if mine.get(k) != theirs.get(k)]
        if v.calibrator != first.calibrator:
            diff.append(f"calibrator {first.calibrator!r} vs {v.calibrator!r}")
        raise InputError(f"verdicts of two judge configurations in one file: pair {first.pair_id!r} and pair "
                         f"{v.pair_id!r} differ in {'; '.join(diff)}; gate one judge's results (re-run the "
                         "pairs with one configuration into a new file)", path=path, field="config")


def outcomes_from_verdicts(verdicts: Iterable[Any], entries_of: Callable[[str], Sequence[str]] | Mapping[
        str, Sequence[str]], *, pair_case_ids: Mapping[str, str] | None = None) -> Outcomes:
    """Count each verdict (candidate = response A) under every entry of its case.

    Args:
        verdicts: `judge.verdicts.Verdict` objects (anything with ``pair_id``, ``winner``, ``failure``).
        entries_of: Case id -> entries (a callable, e.g. ``CaseSource.entries_of``, or a mapping).
        pair_case_ids: Pair id -> case id where they differ (``meta.case_id``); otherwise the pair id is the
            case id.
    """
    lookup = entries_of.get if isinstance(entries_of, Mapping) else entries_of
    pair_case_ids = pair_case_ids or {}
    by_entry: dict[str, EntryOutcomes] = {}
    unmatched: list[str] = []
    n = 0
    for v in verdicts:
        n += 1
        pid = v.pair_id or ""
        entries = lookup(pair_case_ids.get(pid, pid)) or ()
        if not entries:
            unmatched.append(pid)
            continue
        one = (EntryOutcomes(failures=1) if v.failure is not None else EntryOutcomes(wins=1) if v.winner == "A"
               else EntryOutcomes(losses=1) if v.winner == "B" else EntryOutcomes(ties=1))
        for entry in entries:
            by_entry[entry] = by_entry.get(entry, EntryOutcomes()) + one
    return Outcomes(by_entry=by_entry, results=n, unmatched=unmatched)


def _estimate(report: dict[str, Any], name: str, path: Path, variant: str) -> tuple[float, float]:
    est = report.get("headline", {}).get(name)
    if not isinstance(est, dict) or "point" not in est or "high" not in est:
        names = ", ".join(sorted(report.get("headline", {}))) or "none"
        raise InputError(f"the {variant} report has no metric {name!r} (it has: {names})", path=path,
                         field=f"{variant}.headline.{name}")

    def num(part: str) -> float:
        x = est[part]
        if x is None:  # not estimable on this data (written as null)
            return math.nan
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0.0 <= x <= 1.0:
            raise InputError(f"the {variant} report's {name} {part} must be a number from 0 to 1 (or null), got "
                             f"{x!r}", path=path, field=f"{variant}.headline.{name}.{part}")
        return float(x)

    point, high = num("point"), num("high")
    if point > high:
        raise InputError(f"the {variant} report's {name} upper bound {high} is below its estimate {point}",
                         path=path, field=f"{variant}.headline.{name}.high")
    return point, high


def read_calibration(path: str | Path, *, ece_metric: str = "ece_uniform_15") -> CalibrationSummary:
    """The judge's calibration from a ``metrics.json`` of ``judge eval --metrics-out`` / ``judge report``.

    Prefers the ``recalibrated`` report (cross-fitted, so every probability is out-of-fold: held-out), else
    ``raw``.

    Raises:
        InputError: Not JSON, or neither report, or a metric is missing.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError("expected the JSON object written by `judge eval --metrics-out`", path=path)
    key = "recalibrated" if isinstance(data.get("recalibrated"), dict) else "raw"
    report = data.get(key)
    if not isinstance(report, dict):
        raise InputError("no 'raw' or 'recalibrated' report: expected `judge eval --metrics-out` output",
                         path=path, field="raw")
    ece_point, ece_high = _estimate(report, ece_metric, path, key)
    brier_point, brier_high = _estimate(report, "brier_binary", path, key)
    null = report.get("ece_if_calibrated")
    null = null.get(ece_metric.removeprefix("ece_")) if isinstance(null, dict) else None
    floor = null.get("mean") if isinstance(null, dict) and isinstance(null.get("mean"), int | float) else None
    return CalibrationSummary(ece_point=ece_point, ece_high=ece_high, brier_point=brier_point,
                              brier_high=brier_high, n=int(report.get("n_scored", 0)),
                              variant=str(report.get("variant", key)),
                              ece_floor=None if floor is None else float(floor))
