#!/usr/bin/env bash
# Training throughput on one GPU: zerotrain (train.device=cuda) against PyTorch's GPT-2 of the same shape, measured
# in the same invocation (bench/torch_gpu_bench.py: eager, and torch.compile with COMPILE=1), the issue-9 benchmark.
#
#   bash bench/gpu_train_bench.sh [BUILD_DIR] [MODELS] [STAGES]     # defaults: build "gpt2-124M gpt2-350M" "0 3"
#   PRECISION=bf16 B=16 T=1024 WARMUP=5 STEPS=20 COMPILE=1 PYTHON=python3 bash bench/gpu_train_bench.sh
#   DEVICE=cpu TORCH=0 B=2 T=64 bash bench/gpu_train_bench.sh build gpt2-tiny "0 1"   # smoke test of the script
#
# tokens/s = B*T*STEPS / (time of the STEPS timed steps), the WARMUP first steps excluded (zerotrain: the
# ms_per_step of metrics.jsonl; torch: timed around each step). MFU = tokens/s x model FLOPs per token
# (6 N + 12 L T C, N the matmul weights including the tied LM head, the formula of torch_gpu_bench.py) over the
# bf16 dense-matmul peak that torch_gpu_bench.py measures at the start of the same run. Peak device memory is the
# largest per-process figure nvidia-smi reports while the process runs (CUDA context included), sampled every
# 0.2 s for both sides, so the two columns are measured the same way.
# A configuration zerotrain refuses, or one that does not fit, prints the error in its row.
# ZeRO-Infinity (DEVICE=cuda, INFINITY=1, the default): configs/gpu_infinity_gpt2_4b.json (a 4.2B-parameter GPT-2
# shape, bf16, stage 3 with the optimizer and the parameters offloaded to pinned host memory; 16 B per parameter of
# host memory for the optimizer, 2 for the parameters, plus the CPU model's 8) for INFINITY_STEPS timed steps after
# one warmup step, against the same config without offload in the same run (expected not to fit on an 80 GB GPU: its
# row then shows the out-of-memory error). INFINITY_CONFIG=FILE runs another config the same way.
set -uo pipefail

BUILD=${1:-build}
MODELS=${2:-"gpt2-124M gpt2-350M"}
STAGES=${3:-"0 3"}
PRECISION=${PRECISION:-bf16}
DEVICE=${DEVICE:-cuda}
B=${B:-16}
T=${T:-1024}
WARMUP=${WARMUP:-5}
STEPS=${STEPS:-20}
COMPILE=${COMPILE:-0}
TORCH=${TORCH:-1}
PY=${PYTHON:-python3}
INFINITY=${INFINITY:-1}
INFINITY_CONFIG=${INFINITY_CONFIG:-configs/gpu_infinity_gpt2_4b.json}
INFINITY_STEPS=${INFINITY_STEPS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ZT=$(cd "$BUILD" && pwd)/zerotrain
[[ -x $ZT ]] || { echo "gpu_train_bench: $ZT not built (cmake --build $BUILD --target zerotrain)" >&2; exit 1; }
case $PRECISION in bf16 | fp16 | fp32) ;; *) echo "gpu_train_bench: PRECISION must be bf16, fp16 or fp32" >&2; exit 2 ;; esac

TMP=$(mktemp -d)
SAMPLER=
trap '[[ -n $SAMPLER ]] && kill "$SAMPLER" 2> /dev/null; rm -rf "$TMP"' EXIT

vocab_of() {
  case $1 in
    gpt2-tiny) echo 256 ;;
    gpt2-124M | gpt2-350M | gpt2-774M | gpt2-1558M | gpt2-4B-infinity) echo 50257 ;;
    *) echo "gpu_train_bench: unknown model $1" >&2; exit 2 ;;
  esac
}

# Runs "$@" while sampling the largest per-process GPU memory (MiB) nvidia-smi shows; the peak goes to $1.
run_sampled() {
  local peak_file=$1
  shift
  echo 0 > "$peak_file"
  if [[ $DEVICE == cuda ]] && command -v nvidia-smi > /dev/null; then
    (while true; do
       nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2> /dev/null |
         awk -v f="$peak_file" 'BEGIN {getline p < f} $1 > p {p = $1} END {print p > f}'
       sleep 0.2
     done) &
    SAMPLER=$!
  fi
  "$@"
  local rc=$?
  if [[ -n $SAMPLER ]]; then kill "$SAMPLER" 2> /dev/null; wait "$SAMPLER" 2> /dev/null; SAMPLER=; fi
  return $rc
}

echo "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2> /dev/null || echo "none ($DEVICE)")"
echo "load before: $(uptime)"

# PyTorch first: it measures the bf16 matmul peak every MFU below is relative to.
PEAK_TFLOPS=
declare -A TORCH_EAGER TORCH_COMPILED TORCH_MEM
if [[ $TORCH == 1 ]]; then
  models_csv=$(echo $MODELS | tr ' ' ',')
  compile_flag=
  [[ $COMPILE == 1 ]] && compile_flag=--compile
  if run_sampled "$TMP/torch.peak" "$PY" "$HERE/torch_gpu_bench.py" --models "$models_csv" --B "$B" --T "$T" \
       --steps "$STEPS" --warmup "$WARMUP" $compile_flag > "$TMP/torch.jsonl" 2> "$TMP/torch.err"; then
    PEAK_TFLOPS=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["bf16_matmul_peak_tflops"])' \
      "$TMP/torch.jsonl")
    while read -r impl model tps mem; do
      if [[ $impl == torch-eager ]]; then TORCH_EAGER[$model]=$tps; else TORCH_COMPILED[$model]=$tps; fi
      TORCH_MEM[$model]=$mem
    done < <("$PY" - "$TMP/torch.jsonl" <<'EOF'
import json, sys
for line in list(open(sys.argv[1]))[1:]:
    r = json.loads(line)
    print(r["impl"], r["model"], f'{r["tokens_per_s"]:.0f}', r["peak_device_bytes"] // 2**20)
EOF
)
  else
    echo "torch_gpu_bench.py failed (its baseline columns stay empty):" >&2
    tail -5 "$TMP/torch.err" >&2
  fi
fi

ROWS=()
# write_shard PATH VOCAB TOKENS: random tokens in an llm.c shard.
write_shard() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import array, random, struct, sys
path, vocab, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)
with open(path, "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
    f.write(array.array("H", (rng.randrange(vocab) for _ in range(n))).tobytes())
EOF
}

# zt_row MODEL STAGE OUT TOKENS_PER_STEP WARMUP ZEROTRAIN_ARGS...: one zerotrain run, its tokens/s over the steps
# after WARMUP and its sampled peak device memory, or its first error line, as a row.
zt_row() {
  local model=$1 stage=$2 out=$3 tokens=$4 warmup=$5
  shift 5
  if run_sampled "$out/peak" "$ZT" "$@" > "$out/log.txt" 2>&1; then
    local tps
    tps=$("$PY" - "$out/metrics.jsonl" "$warmup" "$tokens" << 'EOF'
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
timed = steps[int(sys.argv[2]):]
print(f"{int(sys.argv[3]) * len(timed) / (sum(r['ms_per_step'] for r in timed) / 1e3):.0f}")
EOF
)
    ROWS+=("$model|$stage|$tps|$(cat "$out/peak")|")
  else
    ROWS+=("$model|$stage|||$(grep -m1 -iE "error|refus|out of memory" "$out/log.txt" | cut -c1-160)")
  fi
}

for MODEL in $MODELS; do
  V=$(vocab_of "$MODEL")
  SHARD=$TMP/$MODEL.bin
  write_shard "$SHARD" "$V" $(( (WARMUP + STEPS + 2) * B * T + 1 ))
  for STAGE in $STAGES; do
    OUT=$TMP/zt_${MODEL}_$STAGE
    mkdir -p "$OUT"
    precision_keys='"bf16": {"enabled": false}, "fp16": {"enabled": false},'
    [[ $PRECISION == bf16 ]] && precision_keys='"bf16": {"enabled": true},'
    [[ $PRECISION == fp16 ]] && precision_keys='"fp16": {"enabled": true, "initial_scale_power": 16},'
    cat > "$OUT/config.json" << EOF
{
  "train_batch_size": $B, "train_micro_batch_size_per_gpu": $B, "gradient_accumulation_steps": 1,
  "steps_per_print": 1000, "gradient_clipping": 1.0, $precision_keys
  "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}},
  "zero_optimization": {"stage": $STAGE},
  "model": {"preset": "$MODEL"},
  "data": {"train": ["$SHARD"], "seq_len": $T, "shuffle": false},
  "train": {"device": "$DEVICE", "max_steps": $(( WARMUP + STEPS )), "eval_interval": 0, "seed": 1337,
            "save_dir": "$OUT"}
}
EOF
    zt_row "$MODEL" "$STAGE" "$OUT" $(( B * T )) "$WARMUP" --config "$OUT/config.json"
  done
done

# ZeRO-Infinity's largest model: the config with its offload, then without (the baseline), the same data and steps.
if [[ $DEVICE == cuda && $INFINITY == 1 ]]; then
  IB=$(grep -o '"train_micro_batch_size_per_gpu": *[0-9]*' "$INFINITY_CONFIG" | grep -o '[0-9]*$')
  IA=$(grep -o '"gradient_accumulation_steps": *[0-9]*' "$INFINITY_CONFIG" | grep -o '[0-9]*$')
  ITOKENS=$(( ${IB:-1} * ${IA:-1} * 1024 ))
  write_shard "$TMP/infinity.bin" 50257 $(( (INFINITY_STEPS + 3) * ITOKENS + 1 ))
  mkdir -p "$TMP/nvme"
  for variant in "3 offload" "3"; do
    OUT=$TMP/zt_infinity_${variant// /_}
    mkdir -p "$OUT"
    extra=()
    [[ $variant == 3 ]] && extra=(zero_optimization.offload_optimizer.device=none
                                   zero_optimization.offload_param.device=none)
    zt_row gpt2-4B-infinity "$variant" "$OUT" "$ITOKENS" 1 --config "$INFINITY_CONFIG" "data.train=$TMP/infinity.bin" \
      data.seq_len=1024 train.max_steps=$(( INFINITY_STEPS + 1 )) "train.save_dir=$OUT" \
      "zero_optimization.offload_optimizer.nvme_path=$TMP/nvme" "${extra[@]}"
  done
fi
echo "load after:  $(uptime)"

flops_per_token() {  # model T -> 6 N + 12 L T C
  local L C
  case $1 in
    gpt2-tiny) L=2 C=64 ;; gpt2-124M) L=12 C=768 ;; gpt2-350M) L=24 C=1024 ;; gpt2-774M) L=36 C=1280 ;;
    gpt2-1558M) L=48 C=1600 ;; gpt2-4B-infinity) L=36 C=3072 ;;
  esac
  echo $(( 6 * (L * 12 * C * C + $(vocab_of "$1") * C) + 12 * L * $2 * C ))
}

echo
echo "$PRECISION, 1 GPU ($DEVICE), B=$B T=$T, AdamW + clipping 1.0; $WARMUP warmup steps excluded, $STEPS timed;" \
  "bf16 matmul peak ${PEAK_TFLOPS:-not measured} TFLOP/s"
printf "| %-9s | %5s | %9s | %5s | %9s | %11s | %7s | %13s | %7s | %s\n" model stage "zt tok/s" MFU "zt MiB" \
  "torch eager" "zt/eager" "torch compile" "zt/comp" "torch MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do
  IFS='|' read -r M S Z ZMEM ERR <<< "$row"
  if [[ -n $ERR || -z $Z ]]; then
    echo "| $M | $S | not run: ${ERR:-no metrics} |||||||"
    continue
  fi
  awk -v m="$M" -v s="$S" -v z="$Z" -v zm="$ZMEM" -v e="${TORCH_EAGER[$M]:-}" -v c="${TORCH_COMPILED[$M]:-}" \
      -v tm="${TORCH_MEM[$M]:-}" -v f="$(flops_per_token "$M" "$T")" -v peak="${PEAK_TFLOPS:-}" 'BEGIN {
    mfu = peak != "" ? sprintf("%.1f%%", 100 * z * f / (peak * 1e12)) : "-"
    ratio_e = e != "" ? sprintf("%.2fx", z / e) : "-"
    ratio_c = c != "" ? sprintf("%.2fx", z / c) : "-"
    zmem = (zm > 0) ? zm : "-"
    eager = (e != "") ? e : "-"
    comp = (c != "") ? c : "-"
    tmem = (tm != "") ? (tm " (alloc)") : "-"
    printf "| %-9s | %5s | %9.0f | %5s | %9s | %11s | %7s | %13s | %7s | %s |\n", m, s, z, mfu, zmem, eager,
           ratio_e, comp, ratio_c, tmem
  }'
done
