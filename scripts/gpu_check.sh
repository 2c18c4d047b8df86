#!/usr/bin/env bash
# GPU check: the quick profile on CUDA from a bare checkout, no network, no install step, under 6 minutes.
#   scripts/gpu_check.sh OUT_DIR
# Writes OUT_DIR/run.json (run file), run.jsonl (journal), run.log (pytest output), gpu_check.log (this
# script's output incl. `effbench env`) and report.md when pandas/seaborn are present.
# bitsandbytes is used only if a wheel was carried into the ignored .whl/ folder.
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
budget_s=${EFFBENCH_GPU_CHECK_BUDGET_S:-330}   # leaves room under 6 minutes for start-up and the report
device=${EFFBENCH_GPU_CHECK_DEVICE:-cuda}        # cpu only for the script's own test
profile=${EFFBENCH_GPU_CHECK_PROFILE:-quick}
read -r -a extra <<< "${EFFBENCH_GPU_CHECK_ARGS:-}"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
exec > >(tee -a "$out/gpu_check.log") 2>&1
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/effbench-site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/effbench-site" || echo "gpu_check: carried wheels did not install"
fi
echo "== $(date -u +%FT%TZ) gpu_check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
python3 -m bench_lib env --device "$device" || { echo "gpu_check: no usable $device device"; exit 2; }
start=$(date +%s)
timeout -s TERM -k 20 "$budget_s" python3 -m bench_lib run --profile "$profile" --device "$device" --output "$out/run.json" --no-report "${extra[@]}"
rc=$?
if [ ! -s "$out/run.json" ] && [ -s "$out/run.jsonl" ]; then
  echo "gpu_check: run cut at the ${budget_s}s budget (exit $rc); assembling the finished cases from the journal"
  python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
from bench_lib.harness import journal, runner
out = Path(sys.argv[1])
data = journal.assemble(out / "run.jsonl", finished_at=runner.now())
(out / "run.json").write_text(json.dumps(data, indent=1, default=str))
PY
fi
echo "== run took $(( $(date +%s) - start )) s, exit $rc"
if python3 -c "import pandas, seaborn" 2>/dev/null; then
  python3 -m bench_lib report "$out/run.json" -o /tmp/effbench-report && cp /tmp/effbench-report/report.md "$out/report.md"
fi
exit "$rc"
