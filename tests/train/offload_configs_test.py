#!/usr/bin/env python3
"""The shipped offload configs train as they are: `zerotrain --config configs/ds_zero_stage_3_offload_cpu.json`
and `..._nvme.json` with 2 ranks on CPU (shortened to a few steps), the loss falls, the startup log says what the
offload does, and the NVMe one (offload_param and offload_optimizer nvme under /var/tmp) leaves no swap file."""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

STEPS = 20

EXPECTED_LOG = {
    "ds_zero_stage_3_offload_cpu.json": ["offload_optimizer to cpu", "offload_param to cpu"],
    "ds_zero_stage_3_offload_nvme.json": [
        "offload_optimizer: the fp32 master weights and Adam state stream through swap files",
        "offload_param: each rank's parameter partition"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    failures = []
    for name, lines in EXPECTED_LOG.items():
        config = os.path.join(args.source_dir, "configs", name)
        with open(config) as f:
            nvme = json.load(f)["zero_optimization"]["offload_param"].get("nvme_path")
        swap_before = set(glob.glob(os.path.join(nvme, "zt_swap_*"))) if nvme else set()
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [os.path.join(args.build_dir, "zerotrain"), "--config", config, "--nproc_per_node", "2",
                   f"train.max_steps={STEPS}", f"train.save_dir={tmp}"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                failures.append(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
                continue
            with open(os.path.join(tmp, "metrics.jsonl")) as f:
                losses = [r["loss"] for r in map(json.loads, f) if r.get("type") == "step"]
        log = p.stdout + p.stderr
        for line in lines:
            if line not in log:
                failures.append(f"{name}: the log does not say '{line}'")
        if len(losses) != STEPS or not losses[-1] < 0.85 * losses[0]:
            failures.append(f"{name}: loss did not fall: {losses}")
        print(f"{name}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if nvme:
            left = set(glob.glob(os.path.join(nvme, "zt_swap_*"))) - swap_before
            if left:
                failures.append(f"{name}: swap files left in {nvme}: {sorted(left)}")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
