#!/usr/bin/env bash
# Installs the Debian 12 packages zerotrain needs to build, train and test, skipping those already present.
# Run as root. CUDA (for the GPU backend) is not a Debian package: where /usr/local/cuda exists it is used.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  nlohmann-json3-dev libspdlog-dev liburing-dev libgloo-dev libopenblas-dev
  libgtest-dev googletest
  clang libclang-rt-14-dev           # the config fuzzer (libFuzzer + sanitizers)
  python3 python3-numpy python3-torch  # the PyTorch oracle of the parity tests
  fortunes fortunes-min              # the embedded default corpus
  iproute2                           # network namespaces for the two-node test
  gnuplot-nox                        # zerotrain report --plots
  fio                                # the reference of bench/aio_bench.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all packages present"
fi
