#!/usr/bin/env bash
# ctest: configure gradguard's core alone, install it to a prefix, then build and run a downstream project that finds
# it with find_package(gradguard). Proves the installed CMake package, not just the in-tree targets.
set -euo pipefail
src=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
cmake -S "$src" -B "$work/core" -G Ninja -DGG_WITH_TORCH=OFF -DGG_BUILD_TESTS=OFF -DGG_BUILD_BENCH=OFF -DGG_CUDA=OFF >/dev/null
cmake --build "$work/core" -j2 >/dev/null
cmake --install "$work/core" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/cpp/package_consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer"
