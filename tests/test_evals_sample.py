"""evals/sample.py: the seeded order the dev-set runs follow, so any prefix of a run is a seeded sample."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("evals_sample", ROOT / "evals" / "sample.py")
assert _spec is not None and _spec.loader is not None
sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sample)

LINES = [f'{{"id": "p{i}"}}' for i in range(50)]


def test_the_order_is_seeded_and_a_shorter_sample_is_a_prefix_of_a_longer_one() -> None:
    full = sample.seeded_sample(LINES, seed=0)
    assert sorted(full) == sorted(LINES) and full != LINES
    assert full == sample.seeded_sample(list(LINES), seed=0)  # same seed, same order
    assert sample.seeded_sample(LINES, seed=0, n=10) == full[:10]
    assert sample.seeded_sample(LINES, seed=1) != full
    expected = list(LINES)
    random.Random(0).shuffle(expected)  # the documented procedure, spelled out
    assert full == expected


def test_blank_lines_are_dropped_and_the_cli_writes_the_sample(tmp_path: Path) -> None:
    src, out = tmp_path / "pairs.jsonl", tmp_path / "deep" / "sample.jsonl"
    src.write_text("\n".join(LINES[:5]) + "\n\n", encoding="utf-8")
    assert sample.seeded_sample(["", *LINES[:5], "  "]) == sample.seeded_sample(LINES[:5])
    done = subprocess.run([sys.executable, str(ROOT / "evals" / "sample.py"), str(src), str(out), "--n", "3"],
                          capture_output=True, text=True, check=True)
    assert "3 pairs" in done.stdout
    assert out.read_text(encoding="utf-8").splitlines() == sample.seeded_sample(LINES[:5], n=3)
