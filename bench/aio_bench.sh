#!/usr/bin/env bash
# zerotrain's AIO against fio on the same file size, block size and queue depth, in the same run:
#   bench/aio_bench.sh [BUILD_DIR] [DIR] [SIZE] [BLOCK] [QD]
# DIR must be on a real disk (O_DIRECT; tmpfs refuses it on older kernels); the default is BUILD_DIR/aio_bench_tmp.
# Each engine takes the best of 3 passes; GB/s are 1e9 bytes per second.
set -euo pipefail
build=${1:-build}
dir=${2:-$build/aio_bench_tmp}
size=${3:-512M}
block=${4:-1M}
qd=${5:-8}
bench=$build/aio_bench
[[ -x $bench ]] || { echo "aio_bench.sh: $bench not built (make -C $build aio_bench)" >&2; exit 2; }
command -v fio >/dev/null || { echo "aio_bench.sh: fio not installed (tools/install_deps.sh)" >&2; exit 2; }
mkdir -p "$dir"
fs=$(df -T "$dir" | awk 'NR==2 {print $2 " on " $1}')
echo "directory $dir ($fs), size $size, block $block, queue depth $qd, load: $(cut -d' ' -f1-3 /proc/loadavg)"

fio_gbps() {  # rw -> best GB/s of 3 runs
  local rw=$1 best=0
  for _ in 1 2 3; do
    local out
    out=$(fio --name=zt --filename="$dir/fio.bin" --ioengine=io_uring --direct=1 --rw="$rw" --bs="$block" \
              --iodepth="$qd" --size="$size" --numjobs=1 --output-format=json 2>/dev/null)
    local g
    g=$(printf '%s' "$out" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; \
print(j['$([[ $rw == write ]] && echo write || echo read)']['bw_bytes']/1e9)")
    best=$(/usr/bin/python3 -c "print(max($best, $g))")
  done
  echo "$best"
}

fio_write=$(fio_gbps write)
fio_read=$(fio_gbps read)
rm -f "$dir/fio.bin"

declare -A zt
for backend in io_uring threads; do
  while read -r _ op _ g; do
    zt[$backend.$op]=${g#gbps=}
  done < <("$bench" --dir "$dir" --size "$size" --block "$block" --qd "$qd" --backend "$backend" | grep '^RESULT' |
           sed 's/ backend=[^ ]*//; s/op=//' | awk '{print $1, $2, "x", $3}')
done

printf '\n| op | fio io_uring GB/s | zerotrain io_uring GB/s | ratio | zerotrain threads GB/s | ratio |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for op in write read; do
  f=$([[ $op == write ]] && echo "$fio_write" || echo "$fio_read")
  /usr/bin/python3 -c "
f=$f; u=${zt[io_uring.$op]}; t=${zt[threads.$op]}
print(f'| $op | {f:.3f} | {u:.3f} | {u/f*100:.0f}% | {t:.3f} | {t/f*100:.0f}% |')"
done
