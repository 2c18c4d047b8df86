#!/usr/bin/env bash
# The nightly workflow's install step (.github/workflows/nightly-gpu.yml, every job): a venv from the runner's
# python3 with the GPU stack pinned by constraints/gpu.txt, kept between nights (one per hash of the pins and
# pyproject.toml), flash-attn tried once per venv (a failed build is a warning: flash_attn cases are then
# `unsupported`), and this checkout installed on top. Puts the venv's bin/ on $GITHUB_PATH.
#   EFFBENCH_PYTHON (python3): the interpreter, 3.11 or newer; EFFBENCH_VENV_ROOT (~/.cache/effbench)
set -euo pipefail
py="${EFFBENCH_PYTHON:-python3}"
if ! "$py" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "::error::constraints/gpu.txt needs Python 3.11 or newer (transformers 5.24); '$py' is $("$py" -V 2>&1 || echo missing). Give the runner EFFBENCH_PYTHON=/path/to/python3.11 (its .env file)."
  exit 1
fi
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
lock="$PWD/constraints/gpu.txt"
key=$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)
venv="${EFFBENCH_VENV_ROOT:-$HOME/.cache/effbench}/venv-py$pyver-$key"
export PIP_CONSTRAINT="$lock"  # the pins also hold inside pip's isolated build environments
if [ ! -f "$venv/.installed" ]; then
  echo "installing the GPU stack of $lock into $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -c "$lock" setuptools wheel ninja
  "$venv/bin/python" -m pip install -c "$lock" ".[gpu,quant,report]"
  # flash-attn builds against the installed torch (a prebuilt wheel when its release has one, else nvcc
  # compiles for up to two hours; MAX_JOBS bounds the compiler's memory)
  if MAX_JOBS="${MAX_JOBS:-8}" timeout 7200 "$venv/bin/python" -m pip install -c "$lock" --no-build-isolation ".[flash]"; then
    rm -f "$venv/.flash-failed"
  else
    date -u +%FT%TZ > "$venv/.flash-failed"
  fi
  touch "$venv/.installed"
fi
if [ -f "$venv/.flash-failed" ]; then
  echo "::warning::flash-attn did not install with these pins ($(cat "$venv/.flash-failed")): flash_attn cases are 'unsupported' in this run. Delete $venv to retry."
fi
# this checkout's code, on the cached dependencies
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
echo "$venv/bin" >> "$GITHUB_PATH"
