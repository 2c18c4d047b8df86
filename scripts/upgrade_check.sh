#!/usr/bin/env bash
# Upgrade check: the pinned stack as side A against candidate versions as side B, in one interleaved job
# (effbench ab), so that the machine's drift cancels and the verdict is about the upgrade alone.
#   scripts/upgrade_check.sh OUT_DIR 'PKG==VERSION' ['PKG==VERSION' ...]
# e.g. scripts/upgrade_check.sh runs/upgrade 'torch==2.14.0' 'bitsandbytes==0.51.0'
# Builds OUT_DIR/venv-a (this checkout with the pinned extras) and OUT_DIR/venv-b (the same, then the
# candidates), runs `effbench ab` between them and exits with its status: 0 no regression, 1 regression,
# 2 bad input or nothing judged. Writes OUT_DIR/ab.json, ab.md, ab.jsonl, the workers' logs and upgrade_check.log.
# Settings (environment):
#   EFFBENCH_UPGRADE_DEVICE   cuda (default) or cpu          EFFBENCH_UPGRADE_PROFILE  quick (default)
#   EFFBENCH_UPGRADE_EXTRAS   extras of the pinned stack (default gpu,quant)
#   EFFBENCH_UPGRADE_CONSTRAINTS  a pip constraints file for both sides (the pins), optional
#   EFFBENCH_UPGRADE_ARGS     more `effbench ab` arguments, e.g. "--benchmarks benchmarks/test_precision.py --pairs 30"
#   EFFBENCH_UPGRADE_PYTHON   interpreter the venvs are made from (default python3)
#   EFFBENCH_UPGRADE_VENV_ARGS  more `python -m venv` arguments (tests: --system-site-packages --without-pip)
#   EFFBENCH_UPGRADE_PIP      pip command run as "$PIP VENV_PYTHON ARGS..." (default: VENV_PYTHON -m pip); tests fake it
set -uo pipefail
out=${1:?usage: scripts/upgrade_check.sh OUT_DIR PKG==VERSION [PKG==VERSION ...]}
shift
[ "$#" -ge 1 ] || { echo "upgrade_check: name at least one candidate, e.g. 'torch==2.14.0'" >&2; exit 2; }
device=${EFFBENCH_UPGRADE_DEVICE:-cuda}
profile=${EFFBENCH_UPGRADE_PROFILE:-quick}
extras=${EFFBENCH_UPGRADE_EXTRAS:-gpu,quant}
base_python=${EFFBENCH_UPGRADE_PYTHON:-python3}
read -r -a extra <<< "${EFFBENCH_UPGRADE_ARGS:-}"
read -r -a venv_args <<< "${EFFBENCH_UPGRADE_VENV_ARGS:-}"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/upgrade_check.log") 2>&1
cd "$root"

pip() {  # pip VENV_PYTHON ARGS...
  local py=$1; shift
  if [ -n "${EFFBENCH_UPGRADE_PIP:-}" ]; then $EFFBENCH_UPGRADE_PIP "$py" "$@"; else "$py" -m pip "$@"; fi
}
pins=()
[ -n "${EFFBENCH_UPGRADE_CONSTRAINTS:-}" ] && pins=(-c "$EFFBENCH_UPGRADE_CONSTRAINTS")

for side in a b; do
  venv="$out/venv-$side"
  echo "== $(date -u +%FT%TZ) side ${side^^}: $venv"
  "$base_python" -m venv "${venv_args[@]}" "$venv" || { echo "upgrade_check: cannot create $venv" >&2; exit 2; }
  pip "$venv/bin/python" install -q -e ".[$extras]" "${pins[@]}" \
    || { echo "upgrade_check: the pinned stack does not install into side ${side^^}" >&2; exit 2; }
done
# the candidates replace the pins on side B only; nothing else moves
pip "$out/venv-b/bin/python" install -q "$@" \
  || { echo "upgrade_check: the candidates $* do not install" >&2; exit 2; }

echo "== $(date -u +%FT%TZ) effbench ab: pinned (A) against $* (B)"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$out/venv-a/bin/python" -m bench_lib ab \
  --a "$out/venv-a/bin/python" --b "$out/venv-b/bin/python" --device "$device" --profile "$profile" \
  --output "$out/ab.json" "${extra[@]}"
rc=$?
echo "== $(date -u +%FT%TZ) upgrade check exit $rc (0 no regression, 1 regression, 2 bad input or not judged)"
exit "$rc"
