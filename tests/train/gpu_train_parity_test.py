#!/usr/bin/env python3
"""zerotrain on the GPU (train.device "cuda") against the CPU: for 5 training steps of a small GPT-2 at ZeRO stages
0, 1, 2 and 3 (one rank, and two ranks at stages 0, 2 and 3), every step's loss must agree with the CPU run of the
same config to 1e-5 relative (fp32 on both; the GPU's cuBLASLt runs fp32 without TF32). In bf16 (stages 0-3 on one
rank, stages 2 and 3 on two) and fp16 (stage 1, a loss scale that does not overflow) the losses must agree to 2e-2
(the GPU also stores activations in 16 bits, the CPU computes them in fp32), and fp16's skipped steps must be the
same. Stage 3 runs with no persistent unit and no reuse, so every unit is gathered and freed around each use. The
same with the optimizer offloaded to the CPU (offload_optimizer.device "cpu", pinned, in chunks of 5000 elements) in
fp32 at stage 1 on one rank and stage 2 on two, and in bf16 at stage 2 on two, against the CPU run with the same
offload. ZeRO-Infinity's cases the same way against the CPU with the same offload: the optimizer in NVMe swap files
(fp32 at stage 2 on one rank and stage 3 on two), stage 3 with the optimizer in host memory (fp32 on one rank, bf16
on two), and stage 3 with the parameters in host memory too (offload_param "cpu": fp32 and bf16 on one rank, fp32
on two with the optimizer on NVMe), and stage 3 with parameters and optimizer on NVMe (fp32 on one rank, bf16 on
two). The same with overlap_comm and buckets of 60000 elements (the final LayerNorm with the last block, each other
block, the embeddings: several collectives issued during backward, one of them over two units) at stages 0, 1 and 2
on two ranks in fp32 and at stage 2 in bf16. GPU runs stopped after 3 steps and resumed from their checkpoint
(stages 1 and 3, and stage 3 with parameters and optimizer offloaded) must continue with the same losses, and so
must GPU runs whose checkpoints go from offloaded to on-device optimizer state and back (stage 1; stage 3 through
NVMe). A GPU run with the optimizer on NVMe whose master swap file is deleted mid-run must stop naming the file.
These runs use the reference attention on the GPU (train.attention "reference", the CPU model's); then, each against
the CPU run of the same config to the same tolerances: activation checkpointing (stage 0 on one rank, stage 3 on
two), SGD with momentum and weight decay (stage 1 on one rank, stage 3 on two), and flash attention on the GPU only
(fp32 at stage 1 on one rank, bf16 at stage 3 on two).

Without a GPU (or without CUDA in the build) it checks instead that `train.device=cuda` is refused cleanly (usage
exit code, the message names train.device, also with bf16, bf16 plus optimizer offload at stage 2, bf16 at stage 3,
bf16 at stage 3 with parameters and optimizer offloaded, bf16 with the optimizer on NVMe at stage 2, bf16 with
activation checkpointing, with SGD at stage 3 and with train.attention "flash", which the GPU path takes), then
reports itself skipped ("no GPU", exit code 77, ctest's SKIP_RETURN_CODE). That configs the GPU path does not
support (offload_param without offload_optimizer, partial optimizer offload, SGD with optimizer offload) are refused
at parse time, naming the keys, is checked everywhere.

Cases (a CPU and a GPU run each) and resumes go --jobs at a time, each multi-rank run on a port of its own and each
NVMe run in a directory of its own. --self-check runs the GPU side on the CPU instead (without its GPU-only settings):
ctest runs it that way too (py.train.gpu_train_parity_selfcheck), so a broken case shows up without a GPU."""
import argparse
import concurrent.futures
import itertools
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import step_records  # noqa: E402

STEPS = 5
REL_TOL = 1e-5
REL_TOL_16BIT = 2e-2
SKIP = 77
# The optimizer's partition and Adam state in pinned host memory; on the GPU the step moves it in several chunks.
OFFLOAD = ["zero_optimization.offload_optimizer.device=cpu", "zero_optimization.offload_optimizer.pin_memory=true",
           "zero_optimization.sub_group_size=5000"]
# ZeRO-Infinity: the optimizer state in NVMe swap files (the directory is filled in by main), three buffer sets.
NVME = ["zero_optimization.offload_optimizer.device=nvme", "zero_optimization.offload_optimizer.buffer_count=3",
        "zero_optimization.sub_group_size=5000"]
# Stage 3's parameter partition in pinned host memory too.
PARAM = ["zero_optimization.offload_param.device=cpu", "zero_optimization.offload_param.pin_memory=true"]
# Stage 3 with every unit gathered before and freed after each use (this model's units are below the default
# persistence threshold, and the default reuse distance would keep them all).
STAGE3_GATHER_EVERY_USE = ["zero_optimization.stage3_param_persistence_threshold=0",
                           "zero_optimization.stage3_max_reuse_distance=0"]
# Gradients reduced in several buckets while backward goes on (stages 0-2 on the GPU).
OVERLAPPED_BUCKETS = ["zero_optimization.overlap_comm=true", "zero_optimization.reduce_bucket_size=60000"]
CHECKPOINTING = ["activation_checkpointing.enabled=true"]
SGD = ["optimizer.type=SGD", "optimizer.params.momentum=0.9", "optimizer.params.weight_decay=0.01"]
FLASH = ["train.attention=flash"]


def write_shard(path, n_tokens, seed):
    """An llm.c token shard of byte-level tokens from a fixed pseudo-random text."""
    state = seed
    tokens = []
    for _ in range(n_tokens):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        tokens.append(97 + (state >> 33) % 26 if (state >> 20) % 7 else 32)
    header = [20240520, 1, n_tokens] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{n_tokens}H", *tokens))


def base_config(shard):
    return {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "steps_per_print": 1,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "betas": [0.9, 0.95], "eps": 1e-8,
                                                  "weight_decay": 0.1}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.003,
                                                     "warmup_num_steps": 3, "warmup_type": "linear"}},
        "zero_optimization": {"stage": 0},
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 256, "block_size": 64},
        "data": {"train": [shard], "seq_len": 64, "shuffle": True},
        # The CPU model's attention on the GPU too (the model's head dim, 32, would take flash by default).
        "train": {"max_steps": STEPS, "seed": 1234, "attention": "reference"},
    }


# Runs go in parallel (--jobs): each multi-rank run rendezvouses on a port of its own.
_ports = itertools.count(20000 + os.getpid() % 30000)
_ports_lock = threading.Lock()


def run(zt, config_path, save_dir, overrides, nproc=1):
    cmd = [zt, "--config", config_path, f"train.save_dir={save_dir}"] + overrides
    if nproc > 1:
        with _ports_lock:
            port = next(_ports)
        cmd += ["--nproc_per_node", str(nproc), "--master_port", str(port)]
    env = dict(os.environ, NVIDIA_TF32_OVERRIDE="0", OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return cmd, p


def losses(save_dir):
    return {r["step"]: r["loss"] for r in step_records(save_dir)}


def skipped_steps(save_dir):
    return sorted(r["step"] for r in step_records(save_dir) if r["skipped"])


def compare(what, got, ref, steps, failures, tol=REL_TOL):
    for s in steps:
        g, r = got.get(s), ref.get(s)
        if g is None or r is None:
            failures.append(f"{what}: step {s} missing (gpu {g}, cpu {r})")
        elif abs(g - r) > tol * abs(r):
            failures.append(f"{what}: step {s} loss {g:.9g} on the GPU, {r:.9g} on the CPU "
                            f"(relative difference {abs(g - r) / abs(r):.2e} > {tol})")
        else:
            print(f"{what}: step {s} gpu {g:.9g} cpu {r:.9g}")


def deleted_swap_file(zt, config, tmp, failures, device="cuda"):
    """A GPU run with the optimizer on NVMe whose master swap file is deleted after 2 steps must stop naming it, as
    the CPU path does (offload/io_file.cpp), and leave no swap file behind."""
    nvme_dir = os.path.join(tmp, f"nvme_fault_{device}")
    os.makedirs(nvme_dir)
    out = os.path.join(tmp, f"{device}_nvme_fault")
    cmd = [zt, "--config", config, f"train.save_dir={out}", f"train.device={device}", "zero_optimization.stage=2",
           "train.max_steps=100000"] + NVME + [f"zero_optimization.offload_optimizer.nvme_path={nvme_dir}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    deleted, deadline = None, time.time() + 120
    metrics = os.path.join(out, "metrics.jsonl")
    while deleted is None and time.time() < deadline and p.poll() is None:
        files = sorted(f for f in os.listdir(nvme_dir) if "_rank0_master_" in f)
        steps = open(metrics).read().count('"type":"step"') if os.path.exists(metrics) else 0
        if files and steps >= 2:
            deleted = os.path.join(nvme_dir, files[0])
            os.unlink(deleted)
        time.sleep(0.05)
    try:
        text, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        text, _ = p.communicate()
        failures.append("a deleted swap file on the GPU did not stop the run within 60 s")
        return
    if deleted is None:
        failures.append(f"{' '.join(cmd)}: the master swap file was not found after 2 steps: {text[-1500:]}")
    elif p.returncode == 0 or f"swap file {deleted} was deleted while in use" not in text:
        failures.append(f"a deleted swap file on the GPU: expected a failure naming {deleted}, got rc "
                        f"{p.returncode}: {text[-1500:]}")
    elif os.listdir(nvme_dir):
        failures.append(f"a deleted swap file on the GPU left swap files behind: {os.listdir(nvme_dir)}")
    else:
        print(f"deleted swap file: the GPU run stopped naming {deleted}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                    help="cases run at the same time (each a CPU and a GPU run; a GPU takes several tiny runs)")
    ap.add_argument("--self-check", action="store_true",
                    help="run the 'GPU' side on the CPU too (without its GPU-only settings): checks this script's "
                         "cases, overrides and comparisons on a machine without a GPU; says nothing of the GPU")
    args = ap.parse_args()
    gpu = "cpu" if args.self_check else "cuda"
    zt = os.path.join(args.build_dir, "zerotrain")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        # Every run that swaps to NVMe gets a directory of its own, as runs go in parallel.
        nvme_dirs = itertools.count()

        def nvme_only(optimizer=True, param=False):
            d = os.path.join(tmp, f"nvme_{next(nvme_dirs)}")
            os.makedirs(d)
            return ((NVME + [f"zero_optimization.offload_optimizer.nvme_path={d}"] if optimizer else []) +
                    (["zero_optimization.offload_param.device=nvme", f"zero_optimization.offload_param.nvme_path={d}"]
                     if param else []))

        offloads = {"": lambda: [], "cpu": lambda: OFFLOAD, "nvme": nvme_only, "param": lambda: OFFLOAD + PARAM,
                    "param_nvme": lambda: nvme_only() + PARAM, "all_nvme": lambda: nvme_only(param=True)}
        nvme = nvme_only()
        described = {"": "", "cpu": ", optimizer offloaded", "nvme": ", optimizer on NVMe",
                     "param": ", parameters and optimizer offloaded",
                     "param_nvme": ", parameters offloaded and optimizer on NVMe",
                     "all_nvme": ", parameters and optimizer on NVMe"}
        shard = os.path.join(tmp, "train_000000.bin")
        write_shard(shard, 40000, 7)
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            json.dump(base_config(shard), f)

        # Refused at parse time on every machine: parameter offload to nvme, parameter offload without the
        # optimizer's, and partial optimizer offload are not on the GPU path.
        refused = [(["zero_optimization.stage=3", "zero_optimization.offload_param.device=cpu"],
                    "zero_optimization.offload_param.device (cpu) without zero_optimization.offload_optimizer"),
                   (["zero_optimization.stage=3", "zero_optimization.offload_param.device=nvme",
                     f"zero_optimization.offload_param.nvme_path={tmp}"],
                    "zero_optimization.offload_param.device (nvme) without zero_optimization.offload_optimizer"),
                   (["zero_optimization.stage=3", "zero_optimization.offload_optimizer.ratio=0.5"] + OFFLOAD,
                    "zero_optimization.offload_optimizer.ratio (0.5)")]
        for overrides, key in refused:
            cmd, p = run(zt, config, os.path.join(tmp, "refused"), ["train.device=cuda"] + overrides)
            if p.returncode != 2 or "train.device" not in p.stderr or key not in p.stderr:
                failures.append(f"{' '.join(cmd)}: expected exit 2 naming train.device and {key}, got "
                                f"{p.returncode}: {p.stderr[-1500:]}")

        cmd, p = run(zt, config, os.path.join(tmp, "probe"), [f"train.device={gpu}", "train.max_steps=1"])
        no_gpu = "no GPU is visible" in p.stderr or "built without CUDA" in p.stderr
        if no_gpu:
            if p.returncode != 2 or "train.device" not in p.stderr:
                failures.append(f"{' '.join(cmd)}: expected exit 2 naming train.device, got {p.returncode}: "
                                f"{p.stderr[-1500:]}")
            # bf16, also with the optimizer offloaded at stage 2, and at stage 3, passes the config's check for the
            # GPU path and meets the same missing GPU.
            for what, extra in (("bf16", []), ("bf16 with optimizer offload", ["zero_optimization.stage=2"] + OFFLOAD),
                                ("bf16 at stage 3", ["zero_optimization.stage=3"]),
                                ("bf16 at stage 3 with parameter and optimizer offload",
                                 ["zero_optimization.stage=3"] + OFFLOAD + PARAM),
                                ("bf16 at stage 2 with the optimizer on NVMe", ["zero_optimization.stage=2"] + nvme),
                                ("bf16 with activation checkpointing", CHECKPOINTING),
                                ("bf16 with SGD at stage 3", ["zero_optimization.stage=3"] + SGD),
                                ("bf16 with flash attention", FLASH)):
                cmd, p = run(zt, config, os.path.join(tmp, "probe_bf16"),
                             ["train.device=cuda", "bf16.enabled=true", "train.max_steps=1"] + extra)
                if p.returncode != 2 or "does not support" in p.stderr or not (
                        "no GPU is visible" in p.stderr or "built without CUDA" in p.stderr):
                    failures.append(f"{' '.join(cmd)}: expected exit 2 for the missing GPU ({what} is on the GPU "
                                    f"path), got {p.returncode}: {p.stderr[-1500:]}")
            for f in failures:
                print("FAIL:", f, file=sys.stderr)
            if failures:
                return 1
            print("train.device=cuda is refused cleanly here; the GPU-vs-CPU parity runs need a GPU")
            print("gpu_train_parity_test.py: Skipped")  # the form tests/report_skips.sh reads a reason from
            print("no GPU")
            return SKIP
        if p.returncode != 0:
            print(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}",
                  file=sys.stderr)
            return 1

        # (precision, stage, ranks, offload); fp16 starts at scale 2^8, far from overflowing this model's
        # gradients.
        precisions = {"fp32": [], "bf16": ["bf16.enabled=true"],
                      "fp16": ["fp16.enabled=true", "fp16.initial_scale_power=8"]}
        cases = [("fp32", 0, 1, ""), ("fp32", 1, 1, ""), ("fp32", 2, 1, ""), ("fp32", 3, 1, ""),
                 ("fp32", 0, 2, ""), ("fp32", 2, 2, ""), ("fp32", 3, 2, ""), ("bf16", 0, 1, ""),
                 ("bf16", 1, 1, ""), ("bf16", 2, 1, ""), ("bf16", 3, 1, ""), ("bf16", 2, 2, ""),
                 ("bf16", 3, 2, ""), ("fp16", 1, 1, ""), ("fp32", 1, 1, "cpu"), ("fp32", 2, 2, "cpu"),
                 ("bf16", 2, 2, "cpu"), ("fp32", 2, 1, "nvme"), ("fp32", 3, 2, "nvme"), ("fp32", 3, 1, "cpu"),
                 ("bf16", 3, 2, "cpu"), ("fp32", 3, 1, "param"), ("bf16", 3, 1, "param"),
                 ("fp32", 3, 2, "param_nvme"), ("fp32", 3, 1, "all_nvme"), ("bf16", 3, 2, "all_nvme")]
        # (precision, stage, ranks, offload, feature): feature is "" or a key of `features`, whose first list goes to
        # both runs and whose second to the GPU run only.
        features = {"": ([], []), "buckets": (OVERLAPPED_BUCKETS, []), "checkpointing": (CHECKPOINTING, []),
                    "SGD": (SGD, []), "flash": ([], FLASH)}
        cases = [c + ("",) for c in cases] + [
            ("fp32", 0, 2, "", "buckets"), ("fp32", 1, 2, "", "buckets"),
            ("fp32", 2, 2, "", "buckets"), ("bf16", 2, 2, "", "buckets"),
            ("fp32", 0, 1, "", "checkpointing"), ("fp32", 3, 2, "", "checkpointing"),
            ("fp32", 1, 1, "", "SGD"), ("fp32", 3, 2, "", "SGD"),
            ("fp32", 1, 1, "", "flash"), ("bf16", 3, 2, "", "flash")]
        def run_case(case):
            """One case's CPU and GPU runs; its failures, in a list of its own (cases run in parallel)."""
            precision, stage, nproc, offload, feature = case
            fails = []
            name = f"{precision}_s{stage}_n{nproc}" + (f"_{offload}" if offload else "") + \
                (f"_{feature}" if feature else "")
            results, skips = {}, {}
            both, gpu_only = features[feature]
            for side, dev in (("cpu", "cpu"), ("cuda", gpu)):
                d = os.path.join(tmp, f"{side}_{name}")
                cmd, p = run(zt, config, d, [f"train.device={dev}", f"zero_optimization.stage={stage}"] +
                             precisions[precision] + offloads[offload]() +
                             (STAGE3_GATHER_EVERY_USE if stage == 3 else []) + both +
                             (gpu_only if dev == "cuda" else []), nproc)
                if p.returncode != 0:
                    fails.append(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
                    break
                results[side] = losses(d)
                skips[side] = skipped_steps(d)
            if len(results) == 2:
                what = f"{precision} stage {stage}, {nproc} rank(s)" + described[offload] + \
                    (f", {feature}" if feature else "")
                compare(what, results["cuda"], results["cpu"], range(1, STEPS + 1), fails,
                        REL_TOL if precision == "fp32" else REL_TOL_16BIT)
                if skips["cuda"] != skips["cpu"]:
                    fails.append(f"{what}: skipped steps {skips['cuda']} on the GPU, {skips['cpu']} on the CPU")
            return fails

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for fails in pool.map(run_case, cases):
                failures.extend(fails)
        print(f"{len(cases)} cases in {time.time() - started:.0f} s with {args.jobs} at a time")

        # Resume on the GPU: 3 steps, then from that checkpoint to 5; steps 4-5 as the CPU's uninterrupted run.
        # Then across offload settings at stage 1: 2 steps offloaded, to 4 with the state on the device, to 5
        # offloaded again.
        stop_and_resume = [["train.max_steps=3"], ["train.resume=latest"]]
        resumes = [("resumed at step 3 (stage 1)", "cuda_resume_s1", 1, stop_and_resume),
                   ("resumed at step 3 (stage 3)", "cuda_resume_s3", 3, stop_and_resume),
                   ("resumed offloaded -> on the device -> offloaded (stage 1)", "cuda_resume_offload", 1,
                    [OFFLOAD + ["train.max_steps=2"], ["train.max_steps=4", "train.resume=latest"],
                     OFFLOAD + ["train.resume=latest"]]),
                   ("resumed at step 3 (stage 3, parameters and optimizer offloaded)", "cuda_resume_s3_param", 3,
                    [OFFLOAD + PARAM + ["train.max_steps=3"], OFFLOAD + PARAM + ["train.resume=latest"]]),
                   ("resumed on NVMe -> on the device -> parameters and optimizer offloaded (stage 3)",
                    "cuda_resume_s3_nvme", 3,
                    [nvme + ["train.max_steps=2"], ["train.max_steps=4", "train.resume=latest"],
                     OFFLOAD + PARAM + ["train.resume=latest"]])]
        def run_resume(resume):
            what, dirname, stage, runs = resume
            fails = []
            resume_dir = os.path.join(tmp, dirname)
            extra_stage = [f"zero_optimization.stage={stage}"] + (STAGE3_GATHER_EVERY_USE if stage == 3 else [])
            for extra in runs:
                cmd, p = run(zt, config, resume_dir, [f"train.device={gpu}"] + extra_stage + extra)
                if p.returncode != 0:
                    fails.append(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
                    return fails
            compare(what, losses(resume_dir), losses(os.path.join(tmp, f"cpu_fp32_s{stage}_n1")),
                    range(1, STEPS + 1), fails)
            return fails

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for fails in pool.map(run_resume, resumes):
                failures.extend(fails)
        deleted_swap_file(zt, config, tmp, failures, device=gpu)
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
