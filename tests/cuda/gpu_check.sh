#!/usr/bin/env bash
# The CUDA backend's device check in one go, sized for a short GPU lease, most important first: builds only what it
# needs, runs every GPU test (test_cuda), the GPU-vs-CPU training parity test, the config's TrainDevice tests, trains
# the tiny config on the GPU (fp32, bf16, bf16 at stage 3, SGD with activation checkpointing, bf16 at stage 3 with
# ZeRO-Infinity's offload), compute-sanitizer's memcheck over the kernel and offload tests, and the benchmarks. Logs
# go to $OUT (or ./gpu_check_out); the exit status is the tests' (test_cuda's, else the parity test's).
# Time: every step's timeout is capped by what is left of one budget for the whole script, configure and build
# included (GPU_CHECK_BUDGET_S, default 540 s, counted from the script's start, nvidia-smi's at most 20 s in it), so
# the worst case is the budget plus about a second for each of the 16 capped steps left when it runs out: under
# 560 s in all. The steps' own caps add up to far
# more (configure 120 s, build 420, test_cuda 300, parity 360, test_config 60, the shard 30, the four tiny runs 120
# each, memcheck 240, four benchmarks 120 each: 2490 s), so on a slow device the later steps (the tiny runs,
# memcheck, then the benchmarks) are the ones cut short; their summary lines then read rc=124. A cold build of the
# CUDA targets can take most of the budget: rerun with the same build dir (or a larger GPU_CHECK_BUDGET_S) to reach
# the later steps.
# Usage (from the repository root): bash tests/cuda/gpu_check.sh [build dir, default build-gpu]
set -uo pipefail
out=${OUT:-gpu_check_out}
build=${1:-build-gpu}
budget=${GPU_CHECK_BUDGET_S:-540}
mkdir -p "$out"
timeout 20 nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed: no GPU here?" | tee -a "$out/summary.txt"

# limit N: N seconds, or what is left of the budget if that is less (at least 1 s, so that a step after the budget
# is spent times out at once instead of running unbounded).
limit() {
  local left=$((budget - SECONDS))
  ((left >= 1)) || left=1
  echo $((left < $1 ? left : $1))
}

start=$SECONDS
timeout "$(limit 120)" cmake -S . -B "$build" -DZT_WERROR=ON -DZT_CUDA=ON > "$out/configure.log" 2>&1 &&
  timeout "$(limit 420)" cmake --build "$build" -j"$(nproc)" --target test_cuda cuda_model_step_bench \
    cuda_offload_step_bench zerotrain test_config test_comm zt_comm_worker zt_launch > "$out/build.log" 2>&1
build_rc=$?
echo "build: rc=$build_rc in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
[ $build_rc -eq 0 ] || { tail -40 "$out/build.log"; exit $build_rc; }

timeout "$(limit 300)" "$build/tests/test_cuda" --gtest_output="xml:$out/test_cuda.xml" > "$out/test_cuda.log" 2>&1
test_rc=$?
echo "test_cuda: rc=$test_rc" | tee -a "$out/summary.txt"
grep -E "^\[  (FAILED|SKIPPED|PASSED) " "$out/test_cuda.log" | tee -a "$out/summary.txt"
# The device-buffer process groups (NCCL on one GPU, Gloo staged through pinned memory with 2 and 3 ranks).
timeout "$(limit 90)" "$build/tests/test_comm" --gtest_filter='Comm.Nccl*:Comm.GlooWithPinnedStagingOnGpuBuffers' \
  > "$out/test_comm_gpu.log" 2>&1
comm_rc=$?
echo "test_comm (GPU cases): rc=$comm_rc" | tee -a "$out/summary.txt"
grep -E "^\[  (FAILED|SKIPPED|PASSED) " "$out/test_comm_gpu.log" | tee -a "$out/summary.txt"
[ $comm_rc -eq 0 ] || [ $test_rc -ne 0 ] || test_rc=$comm_rc

# Training on the GPU, most telling first: the GPU-vs-CPU parity test (stages 0-3, 1 and 2 ranks, fp32, bf16 and
# fp16, optimizer offload to the CPU at stages 1-2 in fp32 and bf16, resume at stages 1 and 3 and across offload
# settings, activation checkpointing, SGD, flash attention); the config's acceptance and refusals; then the small
# shipped config (gpt2-tiny) with train.device=cuda on a generated token shard (the embedded corpus needs Debian's
# fortunes, which the device may lack) in fp32, bf16, bf16 at stage 3, and SGD with activation checkpointing at
# stage 1. All need only Python's standard library.
py=$(command -v python3 || echo /usr/bin/python3)
timeout "$(limit 360)" "$py" tests/train/gpu_train_parity_test.py --build-dir "$build" --source-dir . \
  > "$out/gpu_train_parity.log" 2>&1
parity_rc=$?
echo "gpu_train_parity_test: rc=$parity_rc (77 = skipped: no GPU, 124 = timed out)" | tee -a "$out/summary.txt"
tail -30 "$out/gpu_train_parity.log"
[ $parity_rc -eq 0 ] || [ $test_rc -ne 0 ] || test_rc=$parity_rc
timeout "$(limit 60)" "$build/tests/test_config" --gtest_filter='TrainDevice.*' \
  > "$out/test_config_train_device.log" 2>&1
echo "test_config TrainDevice.*: rc=$?" | tee -a "$out/summary.txt"

shard="$(cd "$out" && pwd)/shard.bin"
timeout "$(limit 30)" "$py" -c "import sys; sys.path.insert(0, 'tests/train'); import gpu_train_parity_test as t; \
t.write_shard('$shard', 40000, 7)"
tiny_args=(--config configs/tiny_cpu.json train.device=cuda train.max_steps=20 train.eval_interval=0
           "data.train=$shard" "train.save_dir=$out/train_cuda")
timeout "$(limit 120)" "$build/zerotrain" "${tiny_args[@]}" > "$out/train_cuda.log" 2>&1
echo "zerotrain train.device=cuda (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda.log" | tee -a "$out/summary.txt"
timeout "$(limit 120)" "$build/zerotrain" "${tiny_args[@]}" bf16.enabled=true "train.save_dir=$out/train_cuda_bf16" \
  > "$out/train_cuda_bf16.log" 2>&1
echo "zerotrain train.device=cuda bf16 (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_bf16.log" | tee -a "$out/summary.txt"
# ZeRO stage 3 on the GPU in bf16, every unit gathered before and freed after each use.
timeout "$(limit 120)" "$build/zerotrain" "${tiny_args[@]}" bf16.enabled=true zero_optimization.stage=3 \
  zero_optimization.stage3_param_persistence_threshold=0 zero_optimization.stage3_max_reuse_distance=0 \
  "train.save_dir=$out/train_cuda_stage3" > "$out/train_cuda_stage3.log" 2>&1
echo "zerotrain train.device=cuda bf16 stage 3 (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_stage3.log" | tee -a "$out/summary.txt"
timeout "$(limit 120)" "$build/zerotrain" "${tiny_args[@]}" zero_optimization.stage=1 optimizer.type=SGD \
  optimizer.params.lr=0.05 optimizer.params.momentum=0.9 activation_checkpointing.enabled=true \
  "train.save_dir=$out/train_cuda_sgd_ckpt" > "$out/train_cuda_sgd_ckpt.log" 2>&1
echo "zerotrain train.device=cuda SGD + activation checkpointing stage 1 (tiny, 20 steps): rc=$?" |
  tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_sgd_ckpt.log" | tee -a "$out/summary.txt"
# ZeRO-Infinity on the GPU: stage 3 in bf16 with the optimizer state in NVMe swap files (under $out) and the
# parameter partition in pinned host memory.
mkdir -p "$out/nvme"
timeout "$(limit 120)" "$build/zerotrain" "${tiny_args[@]}" bf16.enabled=true zero_optimization.stage=3 \
  zero_optimization.offload_optimizer.device=nvme "zero_optimization.offload_optimizer.nvme_path=$out/nvme" \
  zero_optimization.offload_param.device=cpu "train.save_dir=$out/train_cuda_infinity" \
  > "$out/train_cuda_infinity.log" 2>&1
echo "zerotrain train.device=cuda bf16 stage 3 nvme optimizer + cpu params (tiny, 20 steps): rc=$?" \
  | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_infinity.log" | tee -a "$out/summary.txt"

if command -v compute-sanitizer > /dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout "$(limit 240)" "$sanitizer" --tool memcheck --error-exitcode 3 "$build/tests/test_cuda" \
    --gtest_filter='KernelsGpu.*:AttentionGpu.*:GradUpdateGpu.*:CastGpu.*:CrossEntropyGpu.*:HostOffloadOptimizerGpu.*' \
    > "$out/memcheck.log" 2>&1
  echo "memcheck: rc=$? (3 = errors found, 124 = timed out)" | tee -a "$out/summary.txt"
fi

for opts in "" "--flash" "--dtype bf16 --flash"; do
  # shellcheck disable=SC2086  # opts is a list of options
  timeout "$(limit 120)" "$build/cuda_model_step_bench" --model gpt2-124M --B 4 --T 256 --iters 5 --cpu-iters 1 \
    $opts >> "$out/bench.log" 2>&1
  echo "bench $opts: rc=$?" | tee -a "$out/summary.txt"
done
mkdir -p "$out/nvme"
timeout "$(limit 120)" "$build/cuda_offload_step_bench" --n 33554432 --iters 5 --nvme "$out/nvme" \
  >> "$out/bench.log" 2>&1
echo "bench offload step: rc=$?" | tee -a "$out/summary.txt"
echo "total: $SECONDS s of a $budget s budget" | tee -a "$out/summary.txt"
cat "$out/bench.log"
exit $test_rc
