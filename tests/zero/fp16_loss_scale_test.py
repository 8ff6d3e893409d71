"""fp16 dynamic loss scaling with DeepSpeed's semantics, across ranks.

An overflow injected into one rank's gradients (ZT_INJECT_OVERFLOW=rank:call) makes every rank skip that step
(rank 0 reports it in metrics.jsonl although the inf was on rank 1), halves the scale (hysteresis 1), and does not
advance the LR schedule; the scale doubles again after loss_scale_window clean steps. A static loss_scale never
changes. Runs stages 0 and 3 with 2 ranks.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port  # noqa: E402

def run(build, out, stage, fp16, inject=None):
    cfg = {
        "train_batch_size": 8,
        "train_micro_batch_size_per_gpu": 4,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 1e-3,
                                                     "warmup_num_steps": 10, "warmup_type": "linear"}},
        "fp16": fp16,
        "zero_optimization": {"stage": stage},
        "model": {"preset": "gpt2-tiny"},
        "data": {"seq_len": 32},
        "train": {"max_steps": 8, "seed": 3, "save_dir": out},
        "steps_per_print": 100,
    }
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    if inject:
        env["ZT_INJECT_OVERFLOW"] = inject
    p = subprocess.run([os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", "2",
                        "--master_port", str(free_port())], capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    steps = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("type") == "step":
                steps.append(rec)
    return steps, p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    failures = []

    def check(cond, msg):
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            failures.append(msg)

    dynamic = {"enabled": True, "loss_scale": 0, "initial_scale_power": 8, "loss_scale_window": 2,
               "hysteresis": 1, "min_loss_scale": 1}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in (0, 3):
            steps, log = run(args.build_dir, os.path.join(tmp, f"s{stage}"), stage, dynamic, inject="1:3")
            scales = [s["loss_scale"] for s in steps]
            skipped = [s["skipped"] for s in steps]
            lrs = [s["lr"] for s in steps]
            print(f"stage {stage}: scales {scales} skipped {skipped}")
            check(skipped == [False, False, True, False, False, False, False, False],
                  f"stage {stage}: only step 3 is skipped on rank 0 (the inf was on rank 1): {skipped}")
            # 256, 256 -> x2 after 2 clean steps -> 512 at step 3 (overflow: halve to 256) -> 256, 512, 512, 1024...
            check(scales == [256, 256, 512, 256, 256, 512, 512, 1024],
                  f"stage {stage}: scale halves on the overflow and doubles every 2 clean steps: {scales}")
            check(lrs[3] == lrs[2] and lrs[2] > lrs[1],
                  f"stage {stage}: the skipped step does not advance the schedule: {lrs[:5]}")
            check("gradient overflow" in log and "step skipped" in log,
                  f"stage {stage}: the skip is logged")
        steps, _ = run(args.build_dir, os.path.join(tmp, "static"), 2,
                       {"enabled": True, "loss_scale": 128})
        check(all(s["loss_scale"] == 128 and not s["skipped"] for s in steps), "static loss scale stays 128")
        check(steps[-1]["loss"] < steps[0]["loss"], "fp16 training lowers the loss")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
