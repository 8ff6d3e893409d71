#!/usr/bin/env bash
# zerotrain's AIO against fio on the same file size, block size and queue depth, in the same run:
#   bench/aio_bench.sh [BUILD_DIR] [DIR] [SIZE] [BLOCK] [QD] [ROUNDS]
# DIR must be on a real disk (O_DIRECT; tmpfs refuses it on older kernels); the default is BUILD_DIR/aio_bench_tmp.
# The engines take turns for ROUNDS rounds (default 5) so that a change in machine load hits all of them; each
# column gives the best and the median round. Both fio and aio_bench overwrite a file already laid out. GB/s are
# 1e9 bytes per second.
set -euo pipefail
build=${1:-build}
dir=${2:-$build/aio_bench_tmp}
size=${3:-512M}
block=${4:-1M}
qd=${5:-8}
rounds=${6:-5}
bench=$build/aio_bench
py=/usr/bin/python3
[[ -x $bench ]] || { echo "aio_bench.sh: $bench not built (make -C $build aio_bench)" >&2; exit 2; }
if ! command -v fio >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "aio_bench.sh: installing fio (the reference) with apt-get"
  apt-get install -y fio >/dev/null || { apt-get update >/dev/null && apt-get install -y fio >/dev/null; } || true
fi
command -v fio >/dev/null || { echo "aio_bench.sh: fio not installed (tools/install_deps.sh)" >&2; exit 2; }
mkdir -p "$dir"
fs=$(df -T "$dir" | awk 'NR==2 {print $2 " on " $1}')
echo "directory $dir ($fs), size $size, block $block, queue depth $qd, $rounds rounds, load before: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A all
keep_best() {  # key value: every round's value is kept
  all[$1]="${all[$1]:-} $2"
}

fio_gbps() {  # rw -> GB/s
  fio --name=zt --filename="$dir/fio.bin" --ioengine=io_uring --direct=1 --rw="$1" --bs="$block" \
      --iodepth="$qd" --size="$size" --numjobs=1 --output-format=json 2>/dev/null |
    $py -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['$1']['bw_bytes']/1e9)"
}

zt_run() {  # label args... -> records label.write, label.read
  local label=$1
  shift
  while read -r op g; do
    keep_best "$label.$op" "$g"
  done < <("$bench" --dir "$dir" --size "$size" --block "$block" --qd "$qd" --iters 1 "$@" |
           sed -n 's/^RESULT op=\([a-z]*\) backend=[^ ]* gbps=\(.*\)$/\1 \2/p')
}

for ((r = 0; r < rounds; r++)); do
  keep_best fio.write "$(fio_gbps write)"
  keep_best fio.read "$(fio_gbps read)"
  zt_run uring --backend io_uring
  zt_run uring1 --backend io_uring --one-request
  zt_run threads --backend threads
done
rm -f "$dir/fio.bin"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

printf '\n| op | stat | fio io_uring | zt io_uring, request per block | ratio | zt io_uring, one request | ratio | zt threads, request per block | ratio |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for op in write read; do
  $py -c "
import statistics
f, u, o, t = ([float(x) for x in s.split()] for s in ('${all[fio.$op]}', '${all[uring.$op]}', '${all[uring1.$op]}', '${all[threads.$op]}'))
for name, stat in (('best', max), ('median', statistics.median)):
    F, U, O, T = stat(f), stat(u), stat(o), stat(t)
    print(f'| $op | {name} | {F:.2f} GB/s | {U:.2f} GB/s | {U/F*100:.0f}% | {O:.2f} GB/s | {O/F*100:.0f}% | {T:.2f} GB/s | {T/F*100:.0f}% |')"
done
