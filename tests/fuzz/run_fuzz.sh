#!/usr/bin/env bash
# Builds the config parser's libFuzzer target with clang (ASan + UBSan) and runs it for the given seconds on a copy
# of the seed corpus (libFuzzer adds what it finds to its corpus dir; the repo's copy stays as committed).
# Exits non-zero on any crash, leak or sanitizer report.
set -euo pipefail
seconds=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${ZT_FUZZ_BUILD:-$src/build-fuzz}
CC=clang CXX=clang++ cmake -S "$src" -B "$build" -DZT_FUZZ=ON -DZT_TESTS=ON -DZT_CUDA=OFF >/dev/null
cmake --build "$build" --target config_fuzzer -j2 >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$src"/tests/fuzz/corpus/* "$corpus"/
echo "run_fuzz: config_fuzzer for ${seconds}s"
"$build"/tests/fuzz/config_fuzzer -max_total_time="$seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -15
echo "run_fuzz: no crash in ${seconds}s"
