"""Optimizer offload trains exactly the model that training without offload does:
offload_optimizer.device = cpu (vectorised CPU Adam) and nvme (fp32 master and Adam state streamed through swap
files in sub-groups) for stages 1, 2 and 3 at world sizes 1 and 2 in fp32, and nvme at stages 1-3 in bf16 and fp16
(world size 2): per-step losses within 1e-6 relative (they are in fact bit-identical) and equal final weights.
Also: a checkpoint saved with NVMe offload resumes bit-identically (master and state are read back from the swap
files), swap files are removed at exit, and a missing nvme_path fails fast naming the path.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, read_safetensors, step_records  # noqa: E402

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def run(build, out, stage, world, device, nvme_dir, steps=4, extra_train=None, expect_ok=True, precision="fp32"):
    cfg = {
        "train_batch_size": 8,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.1}},
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": stage, "sub_group_size": 5000,
                              "offload_optimizer": {"device": device, "nvme_path": nvme_dir}},
        "model": {"n_layer": 2, "n_head": 3, "n_embd": 48, "vocab_size": 256, "block_size": 32},
        "data": {"seq_len": 16},
        "train": dict({"max_steps": steps, "seed": 9, "save_dir": out}, **(extra_train or {})),
        "world_size": world,
    }
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif precision == "fp16":
        cfg["fp16"] = {"enabled": True, "initial_scale_power": 8}
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.run([os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", str(world),
                        "--master_port", str(free_port())], capture_output=True, text=True, timeout=120)
    if expect_ok and p.returncode != 0:
        raise AssertionError(p.stderr[-2000:])
    return p


def losses(out):
    return [r["loss"] for r in step_records(out)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    b = ap.parse_args().build_dir
    # Swap files under the build tree: a real disk, where O_DIRECT works (/tmp may be tmpfs).
    with tempfile.TemporaryDirectory(dir=b) as tmp:
        nvme = os.path.join(tmp, "nvme")
        os.makedirs(nvme)
        cases = [(stage, world, "fp32", ("cpu", "nvme")) for stage in (1, 2, 3) for world in (1, 2)]
        cases += [(stage, 2, precision, ("nvme",)) for precision in ("bf16", "fp16") for stage in (1, 2, 3)]
        for stage, world, precision, devices in cases:
            ref = os.path.join(tmp, f"none_s{stage}_w{world}_{precision}")
            run(b, ref, stage, world, "none", nvme, precision=precision)
            for device in devices:
                out = os.path.join(tmp, f"{device}_s{stage}_w{world}_{precision}")
                run(b, out, stage, world, device, nvme, precision=precision)
                la, lb = np.array(losses(out)), np.array(losses(ref))
                rel = float(np.max(np.abs(la - lb) / np.abs(lb)))
                wa, wb = read_safetensors(os.path.join(out, "model.safetensors")), \
                    read_safetensors(os.path.join(ref, "model.safetensors"))
                wdiff = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wb)
                check(rel <= 1e-6 and wdiff <= 1e-6,
                      f"offload {device} stage {stage} world {world} {precision}: loss rel diff {rel:.1e}, "
                      f"weight diff {wdiff:.1e}")
        check(os.listdir(nvme) == [], f"swap files are removed at exit: {os.listdir(nvme)}")

        # Resume with NVMe offload: master and optimizer state come back from the checkpoint into fresh swap files.
        for stage, precision in ((3, "fp32"), (1, "bf16")):
            a = os.path.join(tmp, f"resume_a_s{stage}_{precision}")
            run(b, a, stage, 2, "nvme", nvme, steps=6, extra_train={"save_interval": 3}, precision=precision)
            r = os.path.join(tmp, f"resume_b_s{stage}_{precision}")
            os.makedirs(r)
            shutil.copytree(os.path.join(a, "global_step3"), os.path.join(r, "global_step3"))
            run(b, r, stage, 2, "nvme", nvme, steps=6, extra_train={"save_interval": 3, "resume": "global_step3"},
                precision=precision)
            check(losses(r) == losses(a)[3:], f"NVMe-offload resume at stage {stage} {precision} is bit-identical: "
                  f"{losses(r)} vs {losses(a)[3:]}")

        missing = os.path.join(tmp, "no_such_dir")
        p = run(b, os.path.join(tmp, "missing"), 2, 2, "nvme", missing, expect_ok=False)
        check(p.returncode != 0 and missing in p.stderr + p.stdout,
              f"a missing nvme_path fails naming it: {(p.stderr + p.stdout).strip().splitlines()[-3:]}")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
