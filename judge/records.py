"""The files a run reads and writes: pair files in, results files out (JSONL, one record a line).

Pair files are read with errors that name the file, the line and the field; results files (one `Verdict`
per line) are appended to as a run goes, repaired when a killed run left half a line, and resumed.

Pair file format, one JSON object per line: ``id`` (optional), ``prompt``, ``response_a``, ``response_b`` (a string,
or an object ``{"text", "process": {"reasoning", "tool_calls": [...]}}``), ``label`` (optional: A, B or
tie), ``source`` and ``meta`` (optional; ``meta`` is never shown to a judge).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from judge._atomic import atomic_text
from judge.errors import InputError, first_validation_error
from judge.jsonl import iter_lines, read_jsonl
from judge.rules.model import Pair, Response, check_holding
from judge.verdicts import JudgeConfig, Verdict

__all__ = [
    "MAX_FIELD_CHARS",
    "RETRYABLE_STAGES",
    "PairRecord",
    "completed_ids",
    "pair_id",
    "read_pairs",
    "read_results",
    "write_results",
]

log = logging.getLogger(__name__)

#: Failure stages worth retrying on resume (the others are deterministic for the same inputs).
RETRYABLE_STAGES = frozenset({"backend", "budget"})

#: A prompt or response longer than this is refused (the prompt builder cuts anything above a few KB).
MAX_FIELD_CHARS = 2_000_000


@dataclass(frozen=True)
class PairRecord:
    """One line of a pair file."""

    pair: Pair
    label: Literal["A", "B", "tie"] | None
    source: str | None
    line: int
    #: Ids of the rules that apply to the pair (the optional ``rules`` field), for measuring retrieval.
    rules: tuple[str, ...] = ()


def pair_id(pair: Pair) -> str:
    """A stable id for a pair without one: a hash of its content."""
    blob = json.dumps(pair.model_dump(mode="json", exclude={"id"}), sort_keys=True, ensure_ascii=False)
    return "sha-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def compare_pair_id(prompt: str, response_a: str | Response, response_b: str | Response) -> str:
    """The pair id a single comparison is stored under (`judge compare`, `judge.compare`): ``cli-`` and a hash
    of the texts - the same texts, the same id; any other comparison, another id. A response with a process
    is hashed with it."""
    def text(response: str | Response) -> Any:
        if isinstance(response, str):
            return response
        return response.text if response.process is None else response.model_dump(mode="json")

    digest = hashlib.sha256(json.dumps([prompt, text(response_a), text(response_b)]).encode("utf-8")).hexdigest()
    return f"cli-{digest[:12]}"


def _field_error(exc: ValidationError) -> tuple[str, str]:
    loc, msg = first_validation_error(exc, "(record)")
    return loc, f"field {loc}: {msg}"


def _parse(obj: dict[str, Any], path: Path, line: int) -> PairRecord:
    for name in ("prompt", "response_a", "response_b"):
        if name not in obj:
            raise InputError(f"missing field {name!r}", path=path, line=line, field=name)
    label = obj.get("label")
    if label is not None:
        check_holding(label, field="label", path=path, line=line)
    for name in ("prompt", "response_a", "response_b"):
        value = obj[name]
        text = value.get("text") if isinstance(value, dict) else value
        if isinstance(text, str) and len(text) > MAX_FIELD_CHARS:
            raise InputError(f"{name} is {len(text):,} characters; the limit is {MAX_FIELD_CHARS:,}",
                             path=path, line=line, field=name)
    if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
        raise InputError("prompt must be a non-empty string", path=path, line=line, field="prompt")
    raw_id = obj.get("id")
    try:
        pair = Pair(prompt=obj["prompt"], response_a=obj["response_a"], response_b=obj["response_b"],
                    id=str(raw_id) if raw_id is not None else None)
    except ValidationError as exc:
        fld, msg = _field_error(exc)
        raise InputError(msg, path=path, line=line, field=fld) from exc
    if pair.id is None:
        pair = pair.model_copy(update={"id": pair_id(pair)})
    source = obj.get("source")
    return PairRecord(pair=pair, label=label, source=str(source) if source is not None else None, line=line,
                      rules=_rule_ids(obj.get("rules"), path, line))


def _rule_ids(value: Any, path: Path, line: int) -> tuple[str, ...]:
    """The optional ``rules`` field: a rule id or a list of them (the rules that apply to the pair)."""
    if value is None:
        return ()
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.strip() for i in ids):
        raise InputError("rules must be a rule id or a non-empty list of rule ids", path=path, line=line,
                         field="rules")
    return tuple(dict.fromkeys(i.strip() for i in ids))


def read_pairs(path: str | Path) -> Iterator[PairRecord]:
    """Stream the records of a JSONL pair file; the first bad line raises `InputError` naming file:line.

    Blank lines are skipped. Duplicate ids are an error (results are keyed by id).
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for line_no, obj in read_jsonl(path):
        record = _parse(obj, path, line_no)
        pid = record.pair.id or ""
        if pid in seen:
            raise InputError(f"duplicate id {pid!r} (first on line {seen[pid]})", path=path, line=line_no,
                             field="id")
        seen[pid] = line_no
        yield record


# ----------------------------------------------------------------------------- results files

def _repair_tail(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-write) so appending stays valid JSONL."""
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        log.warning("%s: dropping a half-written last line (%d bytes)", path, size - cut)
        fh.truncate(cut)


def _iter_results(path: Path) -> Iterator[tuple[int, Verdict]]:
    """Stream (line number, verdict) from a results file; a bad line raises `InputError` naming it."""
    for line_no, line in iter_lines(path):
        try:
            verdict = Verdict.model_validate_json(line)
        except ValidationError as exc:
            where, msg = first_validation_error(exc, "(line)")
            raise InputError(f"not a judge result: field {where}: {msg}", path=path, line=line_no,
                             field=where) from None
        yield line_no, verdict


def read_results(path: str | Path) -> list[Verdict]:
    """All verdicts in a results file, last line per pair id winning."""
    latest: dict[str, Verdict] = {}
    for line_no, verdict in _iter_results(Path(path)):
        latest[verdict.pair_id or f"line-{line_no}"] = verdict
    return list(latest.values())


def write_results(path: str | Path, verdicts: Iterable[Verdict]) -> int:
    """Replace ``path`` with these verdicts, one JSONL line each; returns how many.

    Written to a temporary file beside it and renamed into place, so a reader (or another worker writing
    the same file) never sees a half-written file.
    """
    n = 0
    with atomic_text(Path(path), fsync=True) as fh:
        for verdict in verdicts:
            fh.write(verdict.model_dump_json() + "\n")
            n += 1
    return n


def completed_ids(path: Path) -> set[str]:
    """Pair ids in an existing results file whose result need not be redone."""
    return scan_results(path).done


class ResultsScan(NamedTuple):
    """What resuming needs of a results file (see `scan_results`)."""

    done: set[str]
    setups: list[tuple[int, Verdict]]
    thresholds: set[float | None]
    pair_hashes: dict[str, str]


def scan_results(path: Path) -> ResultsScan:
    """The ids ``completed_ids`` gives, the first line and verdict of each judge setup (configuration and
    calibrator) in the file, the escalation thresholds its verdicts were decided with (None: none applied;
    verdicts written before verdicts recorded it are not counted), and the content hash of each done pair's
    latest verdict (where the file records it)."""
    if not path.exists():
        return ResultsScan(set(), [], set(), {})
    _repair_tail(path)
    done: set[str] = set()
    pair_hashes: dict[str, str] = {}
    thresholds: set[float | None] = set()
    setups: list[tuple[int, Verdict]] = []  # one in a file written by one judge: a comparison per line
    # Streamed, keeping only ids: resuming a large run must not hold every earlier verdict in memory.
    # Lines are applied in file order, so the last line per pair id wins, as in `read_results`.
    for line_no, verdict in _iter_results(path):
        if not any(same_setup(v, verdict.config, verdict.calibrator) for _, v in setups):
            setups.append((line_no, verdict))
        if verdict.failure is None and "escalate_below" in verdict.model_fields_set:
            thresholds.add(verdict.escalate_below)
        if verdict.pair_id is None:
            continue
        if verdict.failure is None or verdict.failure.stage not in RETRYABLE_STAGES:
            done.add(verdict.pair_id)
        else:
            done.discard(verdict.pair_id)
        if verdict.pair_hash is not None:
            pair_hashes[verdict.pair_id] = verdict.pair_hash
        else:
            pair_hashes.pop(verdict.pair_id, None)
    return ResultsScan(done, setups, thresholds, pair_hashes)


def same_setup(verdict: Verdict, config: JudgeConfig, calibrator: str | None) -> bool:
    return verdict.config == config and verdict.calibrator == calibrator
