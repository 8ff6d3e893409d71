#!/usr/bin/env bash
# zero_to_fp32 against a plain copy of the same checkpoint. Trains GPT-2 124M (12 layers, 12 heads, 768 embd, vocab
# 50257, block 1024) for one step at ZeRO stage 3 on 2 ranks, saving a checkpoint (fp32 master + AdamW moments,
# 12 bytes per parameter), then with cold caches (sync; echo 3 > /proc/sys/vm/drop_caches, when permitted) times
#   - zero_to_fp32 CHECKPOINT OUT (its output fsynced before it exits), under /usr/bin/time -v for its peak RSS and
#     the bytes it moved (file system inputs + outputs, 512-byte blocks);
#   - cp -r CHECKPOINT COPY && sync (the checkpoint read once and written once);
#   - head -c of each shard's prefix (header + master: the bytes zero_to_fp32 reads) into a file, then sync: a plain
#     copy of the same bytes through user space.
# MB/s = (MB read + MB written) / seconds for both. Each is run --reps times; the best run is reported.
#
#   bench/zero_to_fp32_bench.sh [--build-dir build] [--out /tmp/zero_to_fp32_bench] [--reps 3]
#                               [--zero-to-fp32 BINARY]   (another build's tool, e.g. a baseline, on the same checkpoint)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
build="$src/build"
out="/tmp/zero_to_fp32_bench"
reps=3
tool=""
python=/usr/bin/python3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$(cd "$2" && pwd)"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --zero-to-fp32) tool="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "zero_to_fp32_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
zerotrain="$build/zerotrain"
tool="${tool:-$build/zero_to_fp32}"
for b in "$zerotrain" "$tool"; do
  [[ -x "$b" ]] || { echo "zero_to_fp32_bench.sh: $b not built (cmake --build $build --target zerotrain zero_to_fp32)" >&2; exit 2; }
done
mkdir -p "$out"

# The checkpoint, made once and reused by later runs (delete $out/run to remake it).
run="$out/run"
ckpt="$run/global_step1"
if [[ ! -f "$ckpt/manifest.json" ]]; then
  rm -rf "$run"
  mkdir -p "$run"
  "$python" - "$src/bench/zero_gpt2_124m.json" "$run/config.json" "$run" <<'PY'
import json, sys
import numpy as np
base, dst, run = sys.argv[1:]
shard = run + "/random_tokens_50257.bin"
header = np.zeros(256, dtype=np.int32)
header[0], header[1], header[2] = 20240520, 1, 1 << 16
with open(shard, "wb") as f:
    f.write(header.tobytes())
    f.write(np.random.default_rng(1234).integers(0, 50257, size=1 << 16, dtype=np.uint16).tobytes())
cfg = json.load(open(base))
cfg["zero_optimization"]["stage"] = 3
cfg["data"]["train"] = [shard]
cfg["train"].update({"save_dir": run, "max_steps": 1, "save_interval": 1})
json.dump(cfg, open(dst, "w"), indent=2)
PY
  echo "training GPT-2 124M for one step (stage 3, 2 ranks) to make the checkpoint..."
  "$zerotrain" --config "$run/config.json" --nproc_per_node 2 > "$run/log.txt" 2>&1 ||
    { echo "training failed; see $run/log.txt" >&2; tail -20 "$run/log.txt" >&2; exit 1; }
fi

cold() {
  sync
  if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then caches="dropped before each run"; else
    caches="NOT dropped (not permitted): page-cache speeds"; fi
}
now() { date +%s.%N; }

ckpt_bytes=$(du -sb "$ckpt" | cut -f1)
best_merge=""; best_cp=""; best_same=""
# Each shard's prefix length, from the manifest.
prefixes=$("$python" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(" ".join("%s:%d" % (f["name"], f["prefix_bytes"]) for f in m["files"]))' "$ckpt/manifest.json")
same_bytes=0
for p in $prefixes; do same_bytes=$((same_bytes + ${p#*:})); done
for ((i = 0; i < reps; i++)); do
  rm -rf "$out/merged" "$out/copy"
  cold
  t0=$(now)
  /usr/bin/time -v "$tool" "$ckpt" "$out/merged" > "$out/merge_log.txt" 2> "$out/merge_time.txt" ||
    { cat "$out/merge_log.txt" "$out/merge_time.txt" >&2; exit 1; }
  t1=$(now)
  secs=$(echo "$t1 - $t0" | bc -l)
  if [[ -z "$best_merge" ]] || (( $(echo "$secs < $best_merge" | bc -l) )); then
    best_merge=$secs
    rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/merge_time.txt")
    in_blocks=$(awk -F: '/File system inputs/ {gsub(/ /, "", $2); print $2}' "$out/merge_time.txt")
    out_blocks=$(awk -F: '/File system outputs/ {gsub(/ /, "", $2); print $2}' "$out/merge_time.txt")
  fi
  cold
  t0=$(now)
  cp -r "$ckpt" "$out/copy" && sync
  t1=$(now)
  secs=$(echo "$t1 - $t0" | bc -l)
  if [[ -z "$best_cp" ]] || (( $(echo "$secs < $best_cp" | bc -l) )); then best_cp=$secs; fi
  rm -rf "$out/copy"
  mkdir -p "$out/same"
  cold
  t0=$(now)
  for p in $prefixes; do head -c "${p#*:}" "$ckpt/${p%%:*}" > "$out/same/${p%%:*}"; done
  sync
  t1=$(now)
  rm -rf "$out/same"
  secs=$(echo "$t1 - $t0" | bc -l)
  if [[ -z "$best_same" ]] || (( $(echo "$secs < $best_same" | bc -l) )); then best_same=$secs; fi
done
out_bytes=$(du -sb "$out/merged" | cut -f1)

mb() { echo "scale=1; $1 / 1000000" | bc -l; }
read_mb=$(mb "$in_blocks * 512"); written_mb=$(mb "$out_blocks * 512")
merge_rate=$(echo "scale=1; ($in_blocks + $out_blocks) * 512 / 1000000 / $best_merge" | bc -l)
cp_rate=$(echo "scale=1; 2 * $ckpt_bytes / 1000000 / $best_cp" | bc -l)
echo "zero_to_fp32 bench: GPT-2 124M, stage 3, world size 2; caches $caches; best of $reps; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  tool:          $tool"
echo "  checkpoint:    $(mb "$ckpt_bytes") MB ($ckpt), merged output $(mb "$out_bytes") MB"
printf "  zero_to_fp32:  %.2f s, read %s MB + wrote %s MB = %s MB/s\n" "$best_merge" "$read_mb" "$written_mb" "$merge_rate"
printf "  cp -r && sync: %.2f s, read %s MB + wrote %s MB = %s MB/s\n" "$best_cp" "$(mb "$ckpt_bytes")" \
  "$(mb "$ckpt_bytes")" "$cp_rate"
same_rate=$(echo "scale=1; 2 * $same_bytes / 1000000 / $best_same" | bc -l)
printf "  same bytes:    %.2f s, read %s MB + wrote %s MB = %s MB/s (head -c of each shard's header + master, sync)\n" \
  "$best_same" "$(mb "$same_bytes")" "$(mb "$same_bytes")" "$same_rate"
echo "  zero_to_fp32 MB/s / cp MB/s: $(echo "scale=2; $merge_rate / $cp_rate" | bc -l); seconds ratio: $(echo "scale=2; $best_merge / $best_cp" | bc -l)"
echo "  zero_to_fp32 peak RSS: $(mb "$rss_kb * 1024") MB = $(echo "scale=3; $rss_kb * 1024 / $ckpt_bytes" | bc -l) x the checkpoint ($(echo "scale=3; $rss_kb * 1024 / $out_bytes" | bc -l) x the output)"
