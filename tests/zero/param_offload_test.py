"""Parameter offload to NVMe (offload_param.device = nvme, stage 3) trains exactly the model that stage 3 without
offload does: alone and together with offload_optimizer nvme, at world sizes 1 and 2, with roomy buffers and with
buffer_count 2 and max_in_cpu equal to the largest shard (every read evicts), in fp32 and bf16: per-step losses
within 1e-6 relative (checked bit-identical, which holds on CPU) and equal final weights; io_wait_ms counts the
parameter reads. A checkpoint saved with parameter offload resumes bit-identically. Impossible settings are
rejected naming the key; a deleted parameter swap file, a deleted optimizer master swap file and a read-only
nvme_path fail with a named error and a non-zero exit, without hanging, and leave no swap file behind; so does a job
stopped with SIGTERM.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, read_safetensors, step_records  # noqa: E402

failures = []

MODEL = {"n_layer": 2, "n_head": 3, "n_embd": 48, "vocab_size": 256, "block_size": 32}


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def largest_shard(world):
    c, v, t = MODEL["n_embd"], MODEL["vocab_size"], MODEL["block_size"]
    largest = max(v * c + t * c, 12 * c * c + 13 * c, 2 * c)
    align = 16 * world
    return (largest + align - 1) // align * align // world


def config(out, world, nvme, param="nvme", opt="none", steps=4, param_extra=None, extra_train=None, bf16=False,
           with_world=True):
    zero = {"stage": 3, "sub_group_size": 5000,
            # Every unit is fetched and released through the trace (the tiny model's units are all below the
            # default persistence threshold), with prefetching.
            "stage3_param_persistence_threshold": 0, "stage3_prefetch_bucket_size": 30000,
            "offload_optimizer": {"device": opt, "nvme_path": nvme},
            "offload_param": dict({"device": param, "nvme_path": nvme}, **(param_extra or {}))}
    cfg = {
        "train_batch_size": 8,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.1}},
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        "model": MODEL,
        "data": {"seq_len": 16},
        "train": dict({"max_steps": steps, "seed": 9, "save_dir": out}, **(extra_train or {})),
    }
    if with_world:
        cfg["world_size"] = world
    if bf16:
        cfg["bf16"] = {"enabled": True}
    return cfg


def start(build, out, world, cfg):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return subprocess.Popen([os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", str(world),
                             "--master_port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def run(build, out, world, cfg, expect_ok=True):
    p = start(build, out, world, cfg)
    text, _ = p.communicate(timeout=180)
    if expect_ok and p.returncode != 0:
        raise AssertionError(text[-3000:])
    return p.returncode, text


def losses(out):
    return [r["loss"] for r in step_records(out)]


def compare(out, ref, what):
    la, lb = np.array(losses(out)), np.array(losses(ref))
    rel = float(np.max(np.abs(la - lb) / np.abs(lb)))
    wa = read_safetensors(os.path.join(out, "model.safetensors"))
    wb = read_safetensors(os.path.join(ref, "model.safetensors"))
    wdiff = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wb)
    check(rel <= 1e-6 and wdiff <= 1e-6, f"{what}: loss rel diff {rel:.1e}, weight diff {wdiff:.1e}")
    check(list(la) == list(lb) and wdiff == 0.0, f"{what}: bit-identical losses and weights")


def parity(b, tmp, nvme):
    for world in (1, 2):
        for bf16 in (False, True):
            if bf16 and world == 1:
                continue
            tag = f"w{world}{'_bf16' if bf16 else ''}"
            ref = os.path.join(tmp, f"ref_{tag}")
            run(b, ref, world, config(ref, world, nvme, param="none", bf16=bf16))
            tight = {"buffer_count": 2, "max_in_cpu": largest_shard(world), "buffer_size": largest_shard(world)}
            variants = [("param nvme", "none", None), ("param nvme + optimizer nvme", "nvme", None),
                        ("param nvme, buffer_count 2, max_in_cpu = largest shard", "none", tight)]
            if bf16:
                variants = variants[:1]
            for name, opt, extra in variants:
                out = os.path.join(tmp, f"{tag}_{opt}_{'tight' if extra else 'roomy'}")
                run(b, out, world, config(out, world, nvme, opt=opt, param_extra=extra, bf16=bf16))
                compare(out, ref, f"{name}, world {world}{', bf16' if bf16 else ''}")
                waits = [r["io_wait_ms"] for r in step_records(out)]
                check(all(w > 0 for w in waits), f"{name}, world {world}: io_wait_ms counts parameter I/O {waits}")
                check(os.listdir(nvme) == [], f"swap files are removed at exit: {os.listdir(nvme)}")


def resume(b, tmp, nvme):
    a = os.path.join(tmp, "resume_a")
    run(b, a, 2, config(a, 2, nvme, opt="nvme", steps=6, extra_train={"save_interval": 3}))
    r = os.path.join(tmp, "resume_b")
    os.makedirs(r)
    shutil.copytree(os.path.join(a, "global_step3"), os.path.join(r, "global_step3"))
    run(b, r, 2, config(r, 2, nvme, opt="nvme", steps=6,
                        extra_train={"save_interval": 3, "resume": "global_step3"}))
    check(losses(r) == losses(a)[3:], f"param-offload resume is bit-identical: {losses(r)} vs {losses(a)[3:]}")


def bad_settings(b, tmp, nvme):
    shard = largest_shard(2)
    for with_world in (True, False):  # checked by the parser, or by the engine once the world size is known
        for key, value in (("buffer_size", shard - 1), ("max_in_cpu", shard - 1)):
            out = os.path.join(tmp, f"bad_{key}_{with_world}")
            rc, text = run(b, out, 2, config(out, 2, nvme, param_extra={key: value}, with_world=with_world),
                           expect_ok=False)
            check(rc != 0 and f"zero_optimization.offload_param.{key}: {value}" in text and str(shard) in text,
                  f"{key} below the largest shard ({'parser' if with_world else 'engine'}) fails naming the key: "
                  f"rc {rc}, {text.strip().splitlines()[-1:]}")
    out = os.path.join(tmp, "bad_opt_buffers")
    cfg = config(out, 2, nvme, param="none", opt="nvme")
    cfg["zero_optimization"]["offload_optimizer"]["buffer_count"] = 1
    rc, text = run(b, out, 2, cfg, expect_ok=False)
    check(rc != 0 and "zero_optimization.offload_optimizer.buffer_count" in text,
          f"offload_optimizer.buffer_count 1 fails naming the key: {text.strip().splitlines()[-1:]}")
    check(os.listdir(nvme) == [], f"no swap file left after rejected settings: {os.listdir(nvme)}")


def wait_for_training(p, out, nvme):
    """Waits until the run has logged 2 steps with its swap files in place; returns their names."""
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        files = [f for f in os.listdir(nvme) if f.startswith("zt_swap_")]
        with open(metrics) if os.path.exists(metrics) else open(os.devnull) as f:
            steps_logged = f.read().count('"type":"step"')  # complete or not: the run is past that point
        if steps_logged >= 2 and files:
            return files
        time.sleep(0.05)
    return []


def swap_file_deleted(b, tmp, nvme, part="params", param="nvme"):
    """Deletes rank 0's swap file of the given part (params, master) while the job trains."""
    what = {"params": "parameter", "master": "optimizer master"}[part]
    out = os.path.join(tmp, f"deleted_{part}")
    p = start(b, out, 2, config(out, 2, nvme, param=param, opt="nvme", steps=100000))
    deleted = None
    files = [f for f in wait_for_training(p, out, nvme) if f"_rank0_{part}_" in f]
    if files:
        deleted = os.path.join(nvme, sorted(files)[0])
        os.unlink(deleted)
    try:
        text, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        text, _ = p.communicate()
        check(False, f"a deleted {what} swap file stops the run within 60 s")
        return
    check(deleted is not None, f"the {what} swap file was found and deleted mid-run")
    check(p.returncode != 0 and deleted is not None and f"swap file {deleted} was deleted while in use" in text,
          f"a deleted {what} swap file fails naming it: rc {p.returncode}, "
          f"{[line for line in text.splitlines() if 'deleted' in line][:1]}")
    check(os.listdir(nvme) == [], f"the other rank's swap files are removed too: {os.listdir(nvme)}")


def stopped_by_sigterm(b, tmp, nvme):
    # The launcher forwards SIGTERM to the workers, which die of it: their handler still removes the swap files.
    out = os.path.join(tmp, "sigterm")
    p = start(b, out, 2, config(out, 2, nvme, opt="nvme", steps=100000))
    files = wait_for_training(p, out, nvme)
    kinds = sorted(f.split("_", 3)[3].rsplit("_", 1)[0] for f in files)  # zt_swap_<pid>_<rank>_<part>_<k>.bin
    want = sorted(f"rank{r}_{part}" for r in (0, 1) for part in ("params", "master", "exp_avg", "exp_avg_sq"))
    check(kinds == want, f"2 ranks x (parameters, master, exp_avg, exp_avg_sq) swap files while training: {files}")
    p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
    check(p.returncode != 0, f"a job stopped by SIGTERM exits non-zero: {p.returncode}")
    check(os.listdir(nvme) == [], f"SIGTERM leaves no swap file: {os.listdir(nvme)}")


def read_only(b, tmp):
    ro = os.path.join(tmp, "ro")
    os.makedirs(ro)
    mounted = False
    if os.geteuid() == 0:  # root writes anywhere: a read-only filesystem it is
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro]).returncode == 0
    if not mounted:
        os.chmod(ro, 0o555)
    try:
        out = os.path.join(tmp, "readonly")
        rc, text = run(b, out, 2, config(out, 2, ro), expect_ok=False)
        check(rc != 0 and ro in text and ("read-only" in text or "not writable" in text),
              f"a read-only nvme_path ({'ro tmpfs' if mounted else 'mode 555'}) fails naming it: rc {rc}, "
              f"{[line for line in text.splitlines() if 'error' in line][:1]}")
    finally:
        if mounted:
            subprocess.run(["umount", ro])
        else:
            os.chmod(ro, 0o755)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    b = ap.parse_args().build_dir
    # Swap files under the build tree: a real disk, where O_DIRECT works (/tmp may be tmpfs).
    with tempfile.TemporaryDirectory(dir=b) as tmp:
        nvme = os.path.join(tmp, "nvme")
        os.makedirs(nvme)
        parity(b, tmp, nvme)
        resume(b, tmp, nvme)
        bad_settings(b, tmp, nvme)
        swap_file_deleted(b, tmp, nvme)
        swap_file_deleted(b, tmp, nvme, part="master", param="none")
        stopped_by_sigterm(b, tmp, nvme)
        read_only(b, tmp)
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
