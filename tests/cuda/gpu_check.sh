#!/usr/bin/env bash
# The CUDA backend's device check in one go, sized for a short GPU lease (about 10 minutes on 16 cores + one GPU):
# builds only what it needs, runs every GPU test, compute-sanitizer's memcheck over the kernel tests, and the model
# step benchmark. Logs go to $OUT (or ./gpu_check_out); the exit status is the test program's.
# Usage (from the repository root): bash tests/cuda/gpu_check.sh [build dir, default build-gpu]
set -uo pipefail
out=${OUT:-gpu_check_out}
build=${1:-build-gpu}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed: no GPU here?" | tee -a "$out/summary.txt"

start=$SECONDS
cmake -S . -B "$build" -DZT_WERROR=ON -DZT_CUDA=ON > "$out/configure.log" 2>&1 &&
  cmake --build "$build" -j"$(nproc)" --target test_cuda cuda_model_step_bench zerotrain test_config \
    > "$out/build.log" 2>&1
build_rc=$?
echo "build: rc=$build_rc in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
[ $build_rc -eq 0 ] || { tail -40 "$out/build.log"; exit $build_rc; }

timeout 300 "$build/tests/test_cuda" --gtest_output="xml:$out/test_cuda.xml" > "$out/test_cuda.log" 2>&1
test_rc=$?
echo "test_cuda: rc=$test_rc" | tee -a "$out/summary.txt"
grep -E "^\[  (FAILED|SKIPPED|PASSED) " "$out/test_cuda.log" | tee -a "$out/summary.txt"

if command -v compute-sanitizer > /dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout 240 "$sanitizer" --tool memcheck --error-exitcode 3 "$build/tests/test_cuda" \
    --gtest_filter='KernelsGpu.*:AttentionGpu.*:GradUpdateGpu.*:CastGpu.*:CrossEntropyGpu.*' > "$out/memcheck.log" 2>&1
  echo "memcheck: rc=$? (3 = errors found, 124 = timed out)" | tee -a "$out/summary.txt"
fi

# Training on the GPU: the small shipped config (gpt2-tiny) with train.device=cuda on a generated token shard (the
# embedded corpus needs Debian's fortunes, which the device may lack), the same in bf16 and in bf16 at stage 3, then
# the GPU-vs-CPU parity test (stages 0-3, 1 and 2 ranks, fp32, bf16 and fp16, resume). Both need only Python's
# standard library.
py=$(command -v python3 || echo /usr/bin/python3)
shard="$(cd "$out" && pwd)/shard.bin"
"$py" -c "import sys; sys.path.insert(0, 'tests/train'); import gpu_train_parity_test as t; \
t.write_shard('$shard', 40000, 7)"
tiny_args=(--config configs/tiny_cpu.json train.device=cuda train.max_steps=20 train.eval_interval=0
           "data.train=$shard" "train.save_dir=$out/train_cuda")
timeout 120 "$build/zerotrain" "${tiny_args[@]}" > "$out/train_cuda.log" 2>&1
echo "zerotrain train.device=cuda (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda.log" | tee -a "$out/summary.txt"
timeout 120 "$build/zerotrain" "${tiny_args[@]}" bf16.enabled=true "train.save_dir=$out/train_cuda_bf16" \
  > "$out/train_cuda_bf16.log" 2>&1
echo "zerotrain train.device=cuda bf16 (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_bf16.log" | tee -a "$out/summary.txt"
# ZeRO stage 3 on the GPU in bf16, every unit gathered before and freed after each use.
timeout 120 "$build/zerotrain" "${tiny_args[@]}" bf16.enabled=true zero_optimization.stage=3 \
  zero_optimization.stage3_param_persistence_threshold=0 zero_optimization.stage3_max_reuse_distance=0 \
  "train.save_dir=$out/train_cuda_stage3" > "$out/train_cuda_stage3.log" 2>&1
echo "zerotrain train.device=cuda bf16 stage 3 (tiny, 20 steps): rc=$?" | tee -a "$out/summary.txt"
tail -5 "$out/train_cuda_stage3.log" | tee -a "$out/summary.txt"
timeout 420 "$py" tests/train/gpu_train_parity_test.py --build-dir "$build" --source-dir . \
  > "$out/gpu_train_parity.log" 2>&1
parity_rc=$?
echo "gpu_train_parity_test: rc=$parity_rc (77 = skipped: no GPU)" | tee -a "$out/summary.txt"
tail -30 "$out/gpu_train_parity.log"
timeout 60 "$build/tests/test_config" --gtest_filter='TrainDevice.*' > "$out/test_config_train_device.log" 2>&1
echo "test_config TrainDevice.*: rc=$?" | tee -a "$out/summary.txt"
[ $parity_rc -eq 0 ] || [ $test_rc -ne 0 ] || test_rc=$parity_rc

for opts in "" "--flash" "--dtype bf16 --flash"; do
  # shellcheck disable=SC2086  # opts is a list of options
  timeout 120 "$build/cuda_model_step_bench" --model gpt2-124M --B 4 --T 256 --iters 5 --cpu-iters 1 $opts \
    >> "$out/bench.log" 2>&1
  echo "bench $opts: rc=$?" | tee -a "$out/summary.txt"
done
cat "$out/bench.log"
exit $test_rc
