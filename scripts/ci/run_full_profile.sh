#!/usr/bin/env bash
# The nightly workflow's full-profile run (.github/workflows/nightly-gpu.yml: the gate and each baseline
# repeat): `effbench run --profile full` into $RUN within EFFBENCH_PROFILE_TIMEOUT_MIN, its exit status kept
# beside it (RUN.status: promotion takes only finished runs), the measured time per case printed. A finished
# run passes (exit 0 or 1: failed cases are data that compare judges); an unfinished one fails.
set -uo pipefail
mkdir -p runs
status=0
timeout -s INT -k 60 "$(( EFFBENCH_PROFILE_TIMEOUT_MIN * 60 ))" \
  effbench run --profile full --device cuda --output "$RUN" --report-dir reports || status=$?
echo "$status" > "${RUN%.json}.status"
echo "status=$status" >> "$GITHUB_OUTPUT"
if [ -f "$RUN" ]; then python -m bench_lib.harness.grid_estimate --profile full --device cuda --from "$RUN"; fi
if [ "$status" != 0 ] && [ "$status" != 1 ]; then
  echo "::error::effbench run did not finish (exit $status); its finished cases are in $RUN"
  exit "$status"
fi
