#!/usr/bin/env bash
# Training with ZeRO-Offload/Infinity vs without, same run: stage 3, fp32, 2 ranks on CPU, a 3.3M-parameter GPT-2
# (bench/offload_train_bench.json: 4 layers, 256 wide, byte vocabulary, embedded corpus; a few hundred ms/step),
# three variants:
#   none         no offload (the baseline)
#   opt-nvme     offload_optimizer nvme (fp32 master and Adam state streamed in sub-groups of 500k elements, 4 buffer
#                sets)
#   opt+param    offload_optimizer nvme + offload_param nvme (parameter partitions read ahead from swap files)
#
#   bash bench/offload_train_bench.sh [BUILD_DIR] [NVME_DIR]   # defaults: build /var/tmp
#   ROUNDS=3 STEPS=12 WARMUP=3 bash bench/offload_train_bench.sh
#
# The variants run interleaved for ROUNDS rounds; per variant it prints the median ms/step over the steps after
# the WARMUP first ones of every round, the median io_wait_ms (time rank 0 waited on swap I/O: the optimizer's
# sub-group reads and write-backs, and the parameter reads during forward/backward plus the write-back after the
# step) and its share of the step, and the ratio to the baseline. NVME_DIR must be on a real disk: tmpfs has no
# O_DIRECT and measures memory copies (the script says so when it is).
set -euo pipefail

BUILD=${1:-build}
NVME=${2:-/var/tmp}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-12}
WARMUP=${WARMUP:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ZT=$(cd "$BUILD" && pwd)/zerotrain
[[ -x $ZT ]] || { echo "offload_train_bench: $ZT not built (cmake --build $BUILD --target zerotrain)" >&2; exit 1; }
[[ -d $NVME ]] || { echo "offload_train_bench: NVME_DIR $NVME does not exist" >&2; exit 1; }

FSTYPE=$(df --output=fstype "$NVME" | tail -1 | tr -d ' ')
echo "nvme_path $NVME on $(df --output=source "$NVME" | tail -1) ($FSTYPE)"
[[ $FSTYPE == tmpfs ]] && echo "WARNING: $NVME is tmpfs: swap I/O is memory copies, not disk I/O"

OUT=$(mktemp -d -p "$NVME" zt_offload_bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

declare -A FLAGS=(
  [none]=""
  [opt-nvme]="zero_optimization.offload_optimizer.device=nvme"
  [opt+param]="zero_optimization.offload_optimizer.device=nvme zero_optimization.offload_param.device=nvme"
)
VARIANTS=(none opt-nvme opt+param)

echo "load before: $(uptime)"
for ((round = 1; round <= ROUNDS; round++)); do
  for v in "${VARIANTS[@]}"; do
    dir=$OUT/$v.$round
    # shellcheck disable=SC2086
    "$ZT" --config "$HERE/offload_train_bench.json" --nproc_per_node 2 train.max_steps="$STEPS" \
      train.save_dir="$dir" zero_optimization.offload_optimizer.nvme_path="$NVME" \
      zero_optimization.offload_param.nvme_path="$NVME" ${FLAGS[$v]} > "$OUT/$v.$round.log" 2>&1 ||
      { echo "offload_train_bench: variant $v failed:" >&2; tail -5 "$OUT/$v.$round.log" >&2; exit 1; }
    echo "round $round: $v done"
  done
done
echo "load after: $(uptime)"

python3 - "$OUT" "$ROUNDS" "$WARMUP" "${VARIANTS[@]}" <<'EOF'
import json, statistics, sys
out, rounds, warmup, variants = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rows = {}
for v in variants:
    ms, io, loss = [], [], []
    for r in range(1, rounds + 1):
        with open(f"{out}/{v}.{r}/metrics.jsonl") as f:
            steps = [s for s in map(json.loads, f) if s.get("type") == "step"]
        loss.append(steps[-1]["loss"])
        for s in steps[warmup:]:
            ms.append(s["ms_per_step"])
            io.append(s["io_wait_ms"])
    rows[v] = (statistics.median(ms), statistics.median(io), sum(io) / sum(ms), loss)
base = rows[variants[0]][0]
print(f"{'variant':<11} {'ms/step (median)':>17} {'io_wait ms (median)':>20} {'I/O share':>10} {'vs none':>8}"
      "  final loss")
for v in variants:
    ms, io, share, loss = rows[v]
    print(f"{v:<11} {ms:>17.1f} {io:>20.1f} {100 * share:>9.1f}% {ms / base:>7.2f}x  {loss[0]:.6f}")
same = all(rows[v][3] == rows[variants[0]][3] for v in variants)
print("final losses identical across variants: " + ("yes" if same else "NO"))
EOF
