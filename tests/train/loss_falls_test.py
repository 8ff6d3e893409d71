#!/usr/bin/env python3
"""Training learns: `zerotrain --config configs/tiny_cpu.json` (gpt2-tiny, byte-level, on the embedded fortunes
corpus), shortened, must bring the training loss from about ln(256) well down, and the recorded validation loss
must fall too."""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

MAX_STEPS = 200
FINAL_RATIO = 0.6  # last training loss < FINAL_RATIO * first
VAL_RATIO = 0.7    # validation loss < VAL_RATIO * first training loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    zt = os.path.join(args.build_dir, "zerotrain")
    config = os.path.join(args.source_dir, "configs", "tiny_cpu.json")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [zt, "--config", config, f"train.max_steps={MAX_STEPS}", f"train.save_dir={tmp}",
               f"train.eval_interval={MAX_STEPS}"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            print(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}",
                  file=sys.stderr)
            return 1
        with open(os.path.join(tmp, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
        if not os.path.getsize(os.path.join(tmp, "model.safetensors")) > 0:
            failures.append("model.safetensors is empty")
    if records[0].get("type") != "run":
        failures.append(f"first metrics record is not the run record: {records[0]}")
    steps = [r for r in records if r.get("type") == "step"]
    evals = [r for r in records if r.get("type") == "eval"]
    if [s["step"] for s in steps] != list(range(1, MAX_STEPS + 1)):
        failures.append(f"expected step records 1..{MAX_STEPS}, got {[s['step'] for s in steps][:10]}...")
        steps = steps or [{"loss": float("nan")}]
    first, last = steps[0]["loss"], steps[-1]["loss"]
    # A fresh byte-level model predicts about uniformly over 256 tokens.
    if not abs(first - math.log(256)) < 0.5:
        failures.append(f"first loss {first:.4f} is not near ln(256) = {math.log(256):.4f}")
    if not last < FINAL_RATIO * first:
        failures.append(f"final loss {last:.4f} is not below {FINAL_RATIO} x first loss {first:.4f}")
    if not all(math.isfinite(s["loss"]) and s["tokens_per_s"] > 0 and s["peak_rss_bytes"] > 0 for s in steps):
        failures.append("a step record has a non-finite loss or no throughput/memory figures")
    if not evals:
        failures.append("no eval record in metrics.jsonl")
    else:
        val = evals[-1]["val_loss"]
        if evals[-1]["step"] != MAX_STEPS:
            failures.append(f"last eval at step {evals[-1]['step']}, expected {MAX_STEPS}")
        if not val < VAL_RATIO * first:
            failures.append(f"val loss {val:.4f} is not below {VAL_RATIO} x first loss {first:.4f}")
        print(f"val loss at step {evals[-1]['step']}: {val:.4f}")
    print(f"{len(steps)} steps: loss {first:.4f} -> {last:.4f}; "
          f"{sum(s['ms_per_step'] for s in steps) / len(steps):.1f} ms/step")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
