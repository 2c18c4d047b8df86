#!/usr/bin/env bash
# GPU check: the quick profile on CUDA from a bare checkout, no network, no install step. The whole script
# (`effbench env`, the run, the report) keeps inside one budget, 330 s by default: under 6 minutes.
#   scripts/gpu_check.sh OUT_DIR
# Writes into OUT_DIR (made absolute first, so a relative one means the caller's folder):
#   run.json       the run file; every planned case is in it: measured, failed, `timeout` for the case that
#                  was running when the budget cut the run, and the cases never started under effbench.not_run
#   run.jsonl      the journal; run.plan.json the planned case order; run.log the pytest output
#   gpu_check.log  this script's output, `effbench env` included; report.md when pandas/seaborn are present
# A rerun into the same OUT_DIR first moves the previous run's files to OUT_DIR/previous/<time>/.
# Cases run dealt round-robin over the suites (bench_lib.harness.case_order): a cut loses the end of every
# suite, never a whole suite. Temporary files (the precision suite's shared weights, GBs at 7B-13B) live in a
# private folder removed when the script ends, however the run ended.
# Exit status: the run's (0 all fine, 1 a case failed), 124 when the budget cut the run, 2 nothing could run.
# Settings: EFFBENCH_GPU_CHECK_BUDGET_S (whole script, 330), EFFBENCH_GPU_CHECK_REPORT_S (kept for assembling
# and rendering after the run, 40), EFFBENCH_GPU_CHECK_DEVICE (cuda; cpu only for the script's own test),
# EFFBENCH_GPU_CHECK_PROFILE (quick), EFFBENCH_GPU_CHECK_ARGS (more `effbench run` options, e.g. --benchmarks).
# bitsandbytes is used only if a wheel was carried into the ignored .whl/ folder.
set -uo pipefail
SECONDS=0
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
budget_s=${EFFBENCH_GPU_CHECK_BUDGET_S:-330}
report_s=${EFFBENCH_GPU_CHECK_REPORT_S:-40}
grace_s=10                                       # between the cut's TERM and its KILL
device=${EFFBENCH_GPU_CHECK_DEVICE:-cuda}
profile=${EFFBENCH_GPU_CHECK_PROFILE:-quick}
read -r -a extra <<< "${EFFBENCH_GPU_CHECK_ARGS:-}"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)

# a rerun: the previous run's files go to previous/<time>/ (nothing measured is lost), then a fresh run
moved=()
for f in run.json run.json.tmp run.jsonl run.plan.json run.running run.log report.md gpu_check.log; do
  if [ -e "$out/$f" ]; then moved+=("$f"); fi
done
if [ "${#moved[@]}" -gt 0 ]; then
  keep="$out/previous/$(date -u +%Y%m%dT%H%M%SZ)-$$"
  mkdir -p "$keep" && (cd "$out" && mv "${moved[@]}" "$keep/")
fi

exec > >(tee -a "$out/gpu_check.log") 2>&1
tee_pid=$!
tmp=$(mktemp -d "${TMPDIR:-/tmp}/effbench-gpu-check.XXXXXX")
finish() {
  rm -rf "$tmp"
  exec 1>&- 2>&-
  wait "$tee_pid" 2>/dev/null
}
trap finish EXIT
trap 'exit 143' TERM INT
export TMPDIR="$tmp"  # the run's temporary folders (effbench-weights-*) go here and go with it
if [ "${#moved[@]}" -gt 0 ]; then echo "gpu_check: the previous run's files (${moved[*]}) moved to $keep"; fi

cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$tmp/site" .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$tmp/site" || echo "gpu_check: carried wheels did not install"
fi
echo "== $(date -u +%FT%TZ) gpu_check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
echo "== budget ${budget_s} s for the whole script, ${report_s} s of it kept for after the run"
env_s=$(( budget_s - report_s - grace_s - SECONDS - 30 ))  # whatever it needs, if 30 s are left to run
if [ "$env_s" -lt 1 ]; then echo "gpu_check: a budget of ${budget_s} s leaves no time to run"; exit 2; fi
timeout -k 5 "$env_s" python3 -m bench_lib env --device "$device"
env_rc=$?
if [ "$env_rc" = 124 ] || [ "$env_rc" = 137 ]; then
  echo "gpu_check: effbench env did not finish within ${env_s} s of the ${budget_s} s budget"; exit 2
elif [ "$env_rc" != 0 ]; then
  echo "gpu_check: no usable $device device (effbench env exit $env_rc)"; exit 2
fi

run_s=$(( budget_s - report_s - grace_s - SECONDS ))
if [ "$run_s" -lt 1 ]; then echo "gpu_check: no time left for the run after ${SECONDS} s"; exit 2; fi
echo "== run: up to ${run_s} s"
# the round-robin order plugin goes into the pytest arguments (after the `--` of EFFBENCH_GPU_CHECK_ARGS, if any)
args=() placed=0
for a in "${extra[@]}"; do
  args+=("$a")
  if [ "$a" = "--" ] && [ "$placed" = 0 ]; then args+=(-p bench_lib.harness.case_order); placed=1; fi
done
if [ "$placed" = 0 ]; then args+=(-- -p bench_lib.harness.case_order); fi
run_start=$SECONDS
# --foreground: TERM to the supervisor alone, once; it stops its child and writes the finished cases
timeout --foreground -s TERM -k "$grace_s" "$run_s" python3 -m bench_lib run --profile "$profile" --device "$device" \
  --output "$out/run.json" --no-report "${args[@]}"
rc=$?
echo "== run took $(( SECONDS - run_start )) s, exit $rc"

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then  # timeout(1): cut at run_s (TERM), or killed after the grace
  echo "gpu_check: run cut at ${run_s} s (the ${budget_s} s budget); recording the cut case and the cases not started"
  timeout 30 python3 - "$out" "$budget_s" <<'PY'
import json, sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from bench_lib.harness import journal
out, budget = Path(sys.argv[1]), sys.argv[2]
if not (out / "run.jsonl").exists():
    sys.exit("gpu_check: no journal: the run was cut before its first case")
plan = out / "run.plan.json"
planned = json.loads(plan.read_text())["cases"] if plan.exists() else []
before = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
data = journal.close_cut_run(out / "run.jsonl", planned, f"cut by gpu_check's {budget} s budget",
                             datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
if "gpu_after" in before.get("effbench", {}):
    data["effbench"]["gpu_after"] = before["effbench"]["gpu_after"]
journal.write_atomic(out / "run.json", json.dumps(data, indent=1, allow_nan=True, default=str))
counts = Counter(c["outcome"] for c in data["effbench"]["cases"])
print(f"gpu_check: run.json holds {sum(counts.values())} cases ({dict(counts)}) and "
      f"{len(data['effbench']['not_run'])} not started, of {len(planned)} planned")
PY
fi

left=$(( budget_s - SECONDS - 1 ))
if [ ! -s "$out/run.json" ]; then
  echo "gpu_check: no run file was written"
  [ "$rc" = 0 ] && rc=2
elif [ "$left" -lt 5 ]; then
  echo "gpu_check: no time left for the report (${SECONDS} s of ${budget_s} s spent); the run file is intact"
elif timeout -k 2 "$left" python3 -c "import pandas, seaborn" 2>/dev/null; then
  left=$(( budget_s - SECONDS - 1 ))
  if timeout -k 2 "$left" python3 -m bench_lib report "$out/run.json" -o "$tmp/report"; then
    cp "$tmp/report/report.md" "$out/report.md"
  else
    echo "gpu_check: the report was not rendered within the budget (exit $?); the run file is intact"
  fi
fi
echo "== gpu_check took ${SECONDS} s of its ${budget_s} s budget, exit $rc"
exit "$rc"
