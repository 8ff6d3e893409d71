#!/usr/bin/env bash
# Training throughput and peak memory: zerotrain vs PyTorch CPU, fp32, one process, 2 threads, same model, same
# optimizer (AdamW, weight decay on 2-D weights, gradient clipping 1.0), same B/T, same random-token shard.
#
#   bash bench/train_bench.sh [BUILD_DIR] [MODELS]      # defaults: build "gpt2-tiny gpt2-124M"
#   WARMUP=3 STEPS=8 STEPS_TINY=40 B=4 T=64 THREADS=2 bash bench/train_bench.sh
#
# tokens/s = B*T*STEPS / (time of the STEPS timed steps), the WARMUP first steps excluded (zerotrain: from the
# ms_per_step of metrics.jsonl; torch: timed around each step). Peak RSS is the whole process's, from
# /usr/bin/time -v for both. Prints the machine's load (uptime) before and after: the figures are only worth
# comparing when nothing else was running.
set -euo pipefail

BUILD=${1:-build}
MODELS=${2:-"gpt2-tiny gpt2-124M"}
WARMUP=${WARMUP:-3}
STEPS=${STEPS:-8}
STEPS_TINY=${STEPS_TINY:-40}  # gpt2-tiny's steps take milliseconds: time more of them
B=${B:-4}
T=${T:-64}
THREADS=${THREADS:-2}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
ZT=$(cd "$BUILD" && pwd)/zerotrain
[[ -x $ZT ]] || { echo "train_bench: $ZT not built (make -C $BUILD zerotrain)" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS

vocab_of() { case $1 in gpt2-tiny) echo 256 ;; gpt2-124M) echo 50257 ;; *) echo "unknown model $1" >&2; exit 2 ;; esac; }

# Peak RSS in bytes from /usr/bin/time -v's report.
peak_rss() { awk -F': ' '/Maximum resident set size/ {print $2 * 1024}' "$1"; }

echo "load before: $(uptime)"
ROWS=()
for MODEL in $MODELS; do
  V=$(vocab_of "$MODEL")
  N=$STEPS
  [[ $MODEL == gpt2-tiny ]] && N=$STEPS_TINY
  SHARD=$TMP/$MODEL.bin
  # Random tokens (the embedded corpus is byte-level, vocab 256; 124M needs vocab 50257). Enough for every step.
  "$PY" - "$SHARD" "$V" $(( (WARMUP + N + 2) * B * T + 1 )) <<'EOF'
import sys
import numpy as np
path, vocab, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
header = np.zeros(256, dtype="<i4")
header[:3] = [20240520, 1, n]
with open(path, "wb") as f:
    f.write(header.tobytes())
    f.write(np.random.default_rng(0).integers(0, vocab, n).astype("<u2").tobytes())
EOF

  OUT=$TMP/zt_$MODEL
  mkdir -p "$OUT"
  cat > "$OUT/config.json" <<EOF
{
  "train_batch_size": $B, "train_micro_batch_size_per_gpu": $B, "gradient_accumulation_steps": 1,
  "steps_per_print": 1000, "gradient_clipping": 1.0,
  "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}},
  "zero_optimization": {"stage": 0}, "world_size": 1,
  "model": {"preset": "$MODEL"},
  "data": {"train": ["$SHARD"], "seq_len": $T, "shuffle": false},
  "train": {"max_steps": $(( WARMUP + N )), "eval_interval": 0, "seed": 1337, "save_dir": "$OUT"}
}
EOF
  /usr/bin/time -v "$ZT" --config "$OUT/config.json" > "$OUT/log.txt" 2> "$OUT/time.txt" ||
    { cat "$OUT/log.txt" "$OUT/time.txt" >&2; exit 1; }
  ZT_TPS=$("$PY" - "$OUT/metrics.jsonl" "$WARMUP" $(( B * T )) <<'EOF'
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
timed = steps[int(sys.argv[2]):]
print(f"{int(sys.argv[3]) * len(timed) / (sum(r['ms_per_step'] for r in timed) / 1e3):.1f}")
EOF
)
  ZT_RSS=$(peak_rss "$OUT/time.txt")

  /usr/bin/time -v "$PY" "$HERE/torch_train_bench.py" --model "$MODEL" --shard "$SHARD" --B "$B" --T "$T" \
    --warmup "$WARMUP" --steps "$N" --threads "$THREADS" > "$TMP/torch_$MODEL.json" 2> "$TMP/torch_$MODEL.time" ||
    { cat "$TMP/torch_$MODEL.json" "$TMP/torch_$MODEL.time" >&2; exit 1; }
  TORCH_TPS=$("$PY" -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['tokens_per_s']:.1f}\")" \
    "$TMP/torch_$MODEL.json")
  TORCH_RSS=$(peak_rss "$TMP/torch_$MODEL.time")
  ROWS+=("$MODEL $N $ZT_TPS $TORCH_TPS $ZT_RSS $TORCH_RSS")
done
echo "load after:  $(uptime)"

echo
echo "fp32, 1 process, $THREADS threads, B=$B T=$T, AdamW + clipping; $WARMUP warmup steps excluded"
printf "| %-10s | %5s | %15s | %11s | %10s | %14s | %14s |\n" model steps "zerotrain tok/s" "torch tok/s" \
  "zt / torch" "zt peak RSS" "torch peak RSS"
printf "|%s|%s|%s|%s|%s|%s|%s|\n" ------------ ------- ----------------- ------------- ------------ \
  ---------------- ----------------
for row in "${ROWS[@]}"; do
  read -r M NS ZTPS TTPS ZRSS TRSS <<< "$row"
  awk -v m="$M" -v n="$NS" -v z="$ZTPS" -v t="$TTPS" -v zr="$ZRSS" -v tr="$TRSS" 'BEGIN {
    printf "| %-10s | %5d | %15.0f | %11.0f | %9.2fx | %10.0f MiB | %10.0f MiB |\n", m, n, z, t, z / t,
           zr / 1048576, tr / 1048576 }'
done
