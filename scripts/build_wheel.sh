#!/usr/bin/env bash
# Builds a self-contained crossicl wheel against the installed torch and repairs it with auditwheel: the wheel's
# shared objects then need only torch's libraries (libtorch*, libc10, torch's libgomp, found through the RPATH
# $ORIGIN/../torch/lib) and the base system (glibc, libstdc++, libgcc_s, libm). zlib, SentencePiece, protobuf-lite
# and fmt are linked in statically with hidden symbols (cmake/ThirdParty.cmake), so nothing is grafted.
# Usage: bash scripts/build_wheel.sh [OUT_DIR]    (default dist/; needs requirements/build.txt installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-dist}
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
$PY -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$raw" .
# torch's libraries stay outside the wheel: the wheel pins the torch it was built against (torch==X.Y.*).
$PY -m auditwheel repair -w "$out" \
  --exclude 'libtorch*.so' --exclude 'libc10*.so' --exclude 'libgomp.so.1' --exclude 'libshm.so' \
  "$raw"/crossicl-*.whl
ls "$out"/crossicl-*.whl
