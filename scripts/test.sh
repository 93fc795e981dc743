#!/usr/bin/env bash
# Installs what the tests need (scripts/setup.sh plus test-only packages) and runs every test:
# the Catch2 tests through ctest (including the outside find_package(crossicl) example), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
$PY -m pip install -q --disable-pip-version-check -r requirements/test.txt
if ! command -v clang++-14 >/dev/null 2>&1; then  # libFuzzer for the parser fuzz targets (tests/fuzz)
  if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
  else
    echo "crossicl tests: clang-14 is not installed and apt is not usable: the fuzz targets are left out" >&2
  fi
fi
cmake -S . -B build/tests -G Ninja -DCROSSICL_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/tests -j2
ctest --test-dir build/tests --output-on-failure -j2
$PY -m pytest tests/python
