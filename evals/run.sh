#!/usr/bin/env bash
# Judges one dev set with the embedded default judge, in the seeded order of evals/sample.py, appending to
# evals/results/SET-METHOD.jsonl. Resumable: pairs already in the results file are skipped, so a run cut short
# goes on where it stopped.
#
#   bash evals/run.sh pandalm|hh|modelspec [N]      # N: only the first N pairs of the shuffle (default: all)
#   MAX_TIME=2h bash evals/run.sh pandalm            # start no new pair after 2 hours
#   METHOD=checks bash evals/run.sh hh 100           # the judging method (below)
#   RETRIEVAL=dense bash evals/run.sh modelspec 60   # rules searched the simpler way (SET-METHOD-dense.jsonl)
#   CASES=1 bash evals/run.sh pandalm 60             # the test cases (cases/) vote in retrieval, as after
#                                                    # `judge init` (SET-METHOD-cases.jsonl)
#
# Without CASES, fused retrieval runs without the test cases' votes (JUDGE_RETRIEVAL=no-cases), as the
# results files without a suffix were made.
#
# METHOD: rules   - the pairwise question with the retrieved rules in the prompt, both orders (SET-rules.jsonl)
#         bare    - the pairwise question without rules, both orders (SET-bare.jsonl)
#         checks  - the retrieved rules' yes/no checks asked of each response, with the general pointwise
#                   question beside them (SET-checks.jsonl)
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
"$judge" rulebook load rulebook/ --constitution  # the derived evaluation database follows the text
method=${METHOD:-checks}
case "$method" in
  rules)  how=(--method pairwise --no-explain) ;;
  bare)   how=(--no-rules --no-explain); extra=() ;;
  checks) how=(--method checks --holistic pointwise) ;;
  *) echo "error: unknown METHOD '$method' (rules, bare or checks)" >&2; exit 2 ;;
esac
retrieval=${RETRIEVAL:-fused}
out="evals/results/$set_name-$method.jsonl"
[ "$retrieval" = fused ] || out="evals/results/$set_name-$method-$retrieval.jsonl"
if [ "${CASES:-0}" = 1 ]; then
  [ "$retrieval" = fused ] || { echo "error: CASES=1 needs RETRIEVAL=fused" >&2; exit 2; }
  "$judge" cases load cases/  # stored once; loading again adds nothing
  out="evals/results/$set_name-$method-cases.jsonl"
elif [ "$retrieval" = fused ]; then
  retrieval=no-cases
fi
export JUDGE_RETRIEVAL=$retrieval
"$judge" run "$work/$set_name.jsonl" -o "$out" --backend local "${how[@]}" \
  --no-table ${MAX_TIME:+--max-time "$MAX_TIME"} "${extra[@]}"
