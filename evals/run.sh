#!/usr/bin/env bash
# Judges one dev set with the embedded default judge (rules, both orders, no explanation), in the seeded order
# of evals/sample.py, appending to evals/results/SET-rules.jsonl. Resumable: pairs already in the results file
# are skipped, so a run cut short goes on where it stopped.
#
#   bash evals/run.sh pandalm|hh|modelspec [N]      # N: only the first N pairs of the shuffle (default: all)
#   MAX_TIME=2h bash evals/run.sh pandalm            # start no new pair after 2 hours
#
# Sets up what it needs (`make setup-local`: the venv with the embedded model's runtime). The rulebook database
# and index live in evals/.work (derived, not committed); the results are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
set_name=${1:?usage: bash evals/run.sh pandalm|hh|modelspec [N]}
n=${2:-}
case "$set_name" in
  pandalm)   src=data/dev/pandalm_test.jsonl; extra=() ;;
  hh)        src=data/dev/hh_rlhf_harmless_test.jsonl; extra=() ;;
  modelspec) src=data/model_spec/pairs.jsonl; extra=(--holdout-same-prompt) ;;  # leave-one-out
  *) echo "error: unknown set '$set_name' (pandalm, hh or modelspec)" >&2; exit 2 ;;
esac
[ -f "$src" ] || { echo "error: $src not found" >&2; exit 2; }
make -s setup-local
work=evals/.work
mkdir -p "$work" evals/results
export JUDGE_DB=sqlite:///$PWD/$work/judge.db JUDGE_INDEX_PATH=$PWD/$work/index HF_HUB_OFFLINE=1
judge=${JUDGE_BIN:-.venv/bin/judge}
.venv/bin/python evals/sample.py "$src" "$work/$set_name.jsonl" ${n:+--n "$n"}
"$judge" rulebook load rulebook/
"$judge" run "$work/$set_name.jsonl" -o "evals/results/$set_name-rules.jsonl" --backend local --no-explain \
  ${MAX_TIME:+--max-time "$MAX_TIME"} "${extra[@]}"
