#!/usr/bin/env bash
# Installs what the tests need (scripts/setup.sh plus test-only packages) and runs every test:
# the Catch2 tests through ctest (including the outside find_package(crossicl) example), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
$PY -m pip install -q --disable-pip-version-check -r requirements/test.txt
cmake -S . -B build/tests -G Ninja -DCROSSICL_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/tests -j2
ctest --test-dir build/tests --output-on-failure -j2
$PY -m pytest tests/python
