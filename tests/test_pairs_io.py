"""Pair files: every kind of bad input is a clear error naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.errors import InputError
from judge.records import MAX_FIELD_CHARS, read_pairs

GOOD = {"id": "p1", "prompt": "q", "response_a": "a", "response_b": "b", "label": "A",
        "meta": {"original_label": "B"}}


def write_lines(tmp_path: Path, lines: list[str | bytes]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    return path


def test_reads_records_and_never_exposes_meta(tmp_path: Path) -> None:
    process = {"text": "t", "process": {"reasoning": "r", "tool_calls": [{"name": "s", "arguments": {}}]}}
    path = write_lines(tmp_path, [json.dumps(GOOD), "", json.dumps({**GOOD, "id": "p2", "response_a": process})])
    records = list(read_pairs(path))
    assert [r.pair.id for r in records] == ["p1", "p2"]
    assert records[0].label == "A" and records[0].line == 1 and records[1].line == 3
    assert records[1].pair.response_a.process is not None
    assert "original_label" not in records[0].pair.model_dump_json()


def test_missing_id_gets_a_stable_content_id(tmp_path: Path) -> None:
    record = {k: v for k, v in GOOD.items() if k != "id"}
    first = next(read_pairs(write_lines(tmp_path, [json.dumps(record)]))).pair.id
    second = next(read_pairs(write_lines(tmp_path, [json.dumps(record)]))).pair.id
    assert first == second and first is not None and first.startswith("sha-")


BAD = [
    ("{not json", 1, "malformed JSON"),
    ("[1, 2]", 1, "expected a JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "response_b"}), 1, "missing field 'response_b'"),
    (json.dumps({**GOOD, "label": "C"}), 1, "label must be A, B or tie"),
    (json.dumps({**GOOD, "prompt": "  "}), 1, "prompt must be a non-empty string"),
    (json.dumps({**GOOD, "response_a": 42}), 1, "response_a"),
    (json.dumps({**GOOD, "response_a": "x" * (MAX_FIELD_CHARS + 1)}), 1, "limit"),
]


@pytest.mark.parametrize(("line", "line_no", "message"), BAD, ids=[b[2] for b in BAD])
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, line_no: int, message: str) -> None:
    path = write_lines(tmp_path, [line])
    with pytest.raises(InputError, match=message) as err:
        list(read_pairs(path))
    assert err.value.line == line_no
    assert str(path) in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path, [json.dumps(GOOD), b'{"prompt": "\xff\xfe"}'])
    with pytest.raises(InputError, match="invalid UTF-8") as err:
        list(read_pairs(path))
    assert err.value.line == 2


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path, [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(InputError, match="duplicate id 'p1' \\(first on line 1\\)"):
        list(read_pairs(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(read_pairs(tmp_path / "nope.jsonl"))


def test_shared_dev_sets_parse(shared_data: Path) -> None:
    for name in ("dev/pandalm_test.jsonl", "model_spec/pairs.jsonl"):
        records = list(read_pairs(shared_data / name))
        assert len(records) > 100
        assert all(r.label in ("A", "B", "tie") for r in records)
