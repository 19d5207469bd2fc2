#!/usr/bin/env bash
# Model Spec gold pairs, embedded judge, rules, both orders, no explanation, leave-one-out (session 14).
set -euo pipefail
cd /work/democlone
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
export JUDGE_DB=sqlite:////work/evaldata/judge.db JUDGE_INDEX_PATH=/work/evaldata/index
.venv/bin/judge rulebook load rulebook/
.venv/bin/judge run /work/evaldata/modelspec-all.jsonl -o /work/evaldata/modelspec-rules.jsonl --no-explain --holdout-same-prompt
