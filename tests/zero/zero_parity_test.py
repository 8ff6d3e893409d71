"""Every ZeRO stage at every world size trains exactly the model that single-process training does.

Runs the real `zerotrain` binary (stages 0-3 x world sizes 1-4, gradient accumulation 1 and 4 at the same global
batch) on the embedded corpus and compares each run's per-step losses (metrics.jsonl) and final weights
(model.safetensors, read with json + numpy) against single-process stage-0 training.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, read_safetensors  # noqa: E402

STEPS = 5
GLOBAL_BATCH = 48
# (loss relative tolerance, weight absolute tolerance) per precision; bf16 runs are compared with single-process bf16.
TOLERANCE = {"fp32": (1e-5, 1e-5), "bf16": (2e-2, 2e-2)}


def run(build, workdir, name, stage, world, gas, precision="fp32"):
    out = os.path.join(workdir, name)
    os.makedirs(out, exist_ok=True)
    cfg = {
        "train_batch_size": GLOBAL_BATCH,
        "gradient_accumulation_steps": gas,
        "steps_per_print": 100,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8,
                                                   "weight_decay": 0.1}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 3e-3,
                                                     "warmup_num_steps": 3, "warmup_type": "linear"}},
        "zero_optimization": {"stage": stage, "reduce_bucket_size": 3000, "allgather_bucket_size": 5000,
                              "overlap_comm": True, "stage3_prefetch_bucket_size": 20000,
                              "stage3_max_live_parameters": 40000, "stage3_max_reuse_distance": 10000,
                              "stage3_param_persistence_threshold": 200},
        # Odd sizes so that no unit divides evenly by the world size.
        "model": {"n_layer": 2, "n_head": 3, "n_embd": 48, "vocab_size": 256, "block_size": 32},
        "data": {"seq_len": 16, "shuffle": True},
        "train": {"max_steps": STEPS, "seed": 7, "save_dir": out, "eval_interval": 0},
        "world_size": world,
    }
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    cmd = [os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", str(world),
           "--master_port", str(free_port())]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"{name}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    losses = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("type") == "step":
                losses.append(rec["loss"])
    assert len(losses) == STEPS, f"{name}: {len(losses)} steps in metrics.jsonl, expected {STEPS}"
    return np.array(losses), read_safetensors(os.path.join(out, "model.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--stages", default="0,1,2,3")
    ap.add_argument("--worlds", default="1,2,3,4")
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
      for precision in args.precisions.split(","):
        loss_rtol, weight_atol = TOLERANCE[precision]
        ref_losses, ref_w = run(args.build_dir, tmp, f"reference_{precision}", 0, 1, 1, precision)
        assert ref_losses[-1] < ref_losses[0], f"reference loss did not fall: {ref_losses}"
        if precision == "fp32":
            fp32_ref = ref_losses
        else:
            # 16-bit training must really round (differ from fp32) yet stay close to it.
            d = np.max(np.abs(ref_losses - fp32_ref) / np.abs(fp32_ref))
            print(f"{precision} reference vs fp32 reference: max loss rel diff {d:.2e}")
            if not (0 < d < 5e-2):
                failures.append(f"{precision} reference losses {ref_losses.tolist()} vs fp32 {fp32_ref.tolist()}")
        for stage in [int(s) for s in args.stages.split(",")]:
            for world in [int(w) for w in args.worlds.split(",")]:
                # bf16 at every world size with accumulation 1; the accumulation variants in fp32.
                for gas in ((1, 4) if precision == "fp32" else (1,)):
                    name = f"{precision}_stage{stage}_world{world}_gas{gas}"
                    try:
                        losses, w = run(args.build_dir, tmp, name, stage, world, gas, precision)
                    except AssertionError as e:
                        failures.append(str(e))
                        continue
                    rel = np.max(np.abs(losses - ref_losses) / np.abs(ref_losses))
                    wdiff = max(float(np.max(np.abs(w[k] - ref_w[k]))) for k in ref_w)
                    ok = rel <= loss_rtol and wdiff <= weight_atol and set(w) == set(ref_w)
                    print(f"{name}: max loss rel diff {rel:.2e}, max weight diff {wdiff:.2e} {'ok' if ok else 'FAIL'}")
                    if not ok:
                        failures.append(f"{name}: losses {losses.tolist()} vs reference {ref_losses.tolist()}, "
                                        f"max weight diff {wdiff:.3e}")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    print("all ZeRO stages match single-process training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
