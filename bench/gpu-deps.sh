#!/usr/bin/env bash
# Fills .deps/ (git-ignored, named in the device tool's `carry`) with what the lent GPU machine lacks and cannot
# download (it has no network): the header-only Eigen and nlohmann_json with their CMake configs, and GoogleTest's
# source, all copied from this machine's Debian packages (installed by .ci/setup), and .whl/ with the pinned
# pure-Python peft and transformers wheels from PyPI. bench/gpu-check.sh uses both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf .deps && mkdir -p .deps/usr/include .deps/usr/share/cmake .deps/usr/share/eigen3
cp -r /usr/include/eigen3 .deps/usr/include/
cp -r /usr/share/eigen3/cmake .deps/usr/share/eigen3/
cp -r /usr/include/nlohmann .deps/usr/include/
cp -r /usr/share/cmake/nlohmann_json .deps/usr/share/cmake/
cp -r /usr/src/googletest .deps/googletest
# Pure-Python pins of .ci/requirements.txt that the GPU machine's image has at other versions.
rm -rf .whl && mkdir -p .whl
"${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl "$(grep '^peft==' .ci/requirements.txt)" "$(grep '^transformers==' .ci/requirements.txt)"
du -sh .deps .whl
