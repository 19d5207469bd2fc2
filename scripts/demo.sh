#!/usr/bin/env bash
# The main job: load the default rulebook and its test cases (as `judge init` does: the cases' votes are part of
# the default retrieval), then score examples/pairs.jsonl with the embedded default judge (offline, no API key)
# and print verdicts, citations and confidence.
set -euo pipefail
venv=${1:-.venv}
judge="$venv/bin/judge"
out=${JUDGE_DEMO_OUT:-out/example-results.jsonl}
"$judge" rulebook load rulebook/ --constitution   # the shipped text, constitution included, is the reference
"$judge" cases load cases/                        # stored once; loading again adds nothing
rm -f "$out"   # score afresh each time (identical requests are still answered from the judgment store)
"$judge" run examples/pairs.jsonl --out "$out" --backend local
