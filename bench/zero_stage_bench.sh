#!/usr/bin/env bash
# ZeRO stages 0-3 at world size 2 on CPU (Gloo) with GPT-2 124M dims (12 layers, 12 heads, 768 embd, vocab 50257,
# block 1024), micro-batch 2, T=64, on a random-token shard: tokens/s (median of the step records after the first),
# rank 0's peak RSS and the engine's model-state bytes against ZeRO's formula. Stage 0 is the baseline.
# A fifth run, "3-tight", is stage 3 with a small live-parameter budget (no reuse, small prefetch buckets).
#
#   bench/zero_stage_bench.sh [--build-dir build] [--out /tmp/zero_stage_bench] [--steps 6] [--stages "0 1 2 3 3-tight"]
#
# The environment reaches the workers. Stages 1-3 allocate bucket-sized buffers (up to the whole model with
# DeepSpeed's default 5e8 buckets) every step; glibc maps and unmaps those, so every step page-faults them in again.
# MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 makes glibc keep them, which shows that cost apart.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
build="$src/build"
out="/tmp/zero_stage_bench"
steps=6
stages="0 1 2 3 3-tight"
python=/usr/bin/python3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$(cd "$2" && pwd)"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --stages) stages="$2"; shift 2 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "zero_stage_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
zerotrain="$build/zerotrain"
[[ -x "$zerotrain" ]] || { echo "zero_stage_bench.sh: $zerotrain not built (make -C $build zerotrain)" >&2; exit 2; }
mkdir -p "$out"

# Random GPT-2 token ids in llm.c's shard format (256 int32 header: magic, version, count; then uint16 tokens).
shard="$out/random_tokens_50257.bin"
if [[ ! -f "$shard" ]]; then
  "$python" - "$shard" <<'PY'
import sys
import numpy as np
n = 1 << 18
header = np.zeros(256, dtype=np.int32)
header[0], header[1], header[2] = 20240520, 1, n
tokens = np.random.default_rng(1234).integers(0, 50257, size=n, dtype=np.uint16)
with open(sys.argv[1], "wb") as f:
    f.write(header.tobytes())
    f.write(tokens.tobytes())
PY
fi

for stage in $stages; do
  run="$out/stage_$stage"
  rm -rf "$run"
  mkdir -p "$run"
  "$python" - "$src/bench/zero_gpt2_124m.json" "$run/config.json" "$stage" "$shard" "$run" "$steps" <<'PY'
import json, sys
base, dst, stage, shard, run, steps = sys.argv[1:]
cfg = json.load(open(base))
z = cfg["zero_optimization"]
z["stage"] = int(stage.split("-")[0])
if stage == "3-tight":
    # About two blocks (7.1M elements each) besides the embeddings (39.4M) may stay gathered.
    z["stage3_max_live_parameters"] = 5e7
    z["stage3_max_reuse_distance"] = 0
    z["stage3_prefetch_bucket_size"] = 8e6
cfg["data"]["train"] = [shard]
cfg["train"]["save_dir"] = run
cfg["train"]["max_steps"] = int(steps)
json.dump(cfg, open(dst, "w"), indent=2)
PY
  "$zerotrain" --config "$run/config.json" --nproc_per_node 2 --dry-run > "$run/dry_run.txt"
  echo "stage $stage: load before: $(cut -d' ' -f1-3 /proc/loadavg)${MALLOC_MMAP_MAX_+ (MALLOC_MMAP_MAX_=$MALLOC_MMAP_MAX_)}" | tee "$run/load.txt"
  start=$(date +%s.%N)
  "$zerotrain" --config "$run/config.json" --nproc_per_node 2 > "$run/log.txt" 2>&1 ||
    { echo "stage $stage failed; see $run/log.txt" >&2; tail -20 "$run/log.txt" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "stage $stage: load after: $(cut -d' ' -f1-3 /proc/loadavg); wall $(echo "$end - $start" | bc) s" | tee -a "$run/load.txt"
done

"$python" "$here/zero_stage_report.py" "$out" $stages | tee "$out/table.md"
