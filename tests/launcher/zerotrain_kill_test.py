"""A real training job loses a rank: `zerotrain --nproc_per_node 3` training stage 3, one worker SIGKILLed mid-run.
The launcher must stop the others and exit non-zero within 10 s, naming the rank and the signal; no process of the
job may be left. Also: a worker that fails with an error (a token shard with an id beyond the vocabulary) makes the
whole job exit non-zero within 10 s with the message on the console, prefixed by its rank."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port  # noqa: E402


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    exe = os.path.join(args.build_dir, "zerotrain")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"train_batch_size": 6, "train_micro_batch_size_per_gpu": 2,
               "zero_optimization": {"stage": 3}, "model": {"preset": "gpt2-tiny"},
               "train": {"max_steps": 100000, "save_dir": tmp}, "comm": {"timeout_s": 30}}
        path = os.path.join(tmp, "c.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        job = subprocess.Popen([exe, "--config", path, "--nproc_per_node", "3", "--master_port", str(free_port())],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Wait until training runs (metrics has step records), then kill rank 1's process.
        metrics = os.path.join(tmp, "metrics.jsonl")
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(metrics) and sum(1 for _ in open(metrics)) > 3:
                break
            time.sleep(0.2)
        workers = sorted(children(job.pid))
        if len(workers) != 3:
            job.kill()
            print(f"FAIL: expected 3 workers, found {workers}")
            return 1
        victim = workers[1]
        t0 = time.time()
        os.kill(victim, signal.SIGKILL)
        try:
            out, _ = job.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            job.kill()
            out, _ = job.communicate()
            failures.append("the job did not end within 15 s of a rank's death")
        took = time.time() - t0
        print(out[-1500:])
        print(f"job ended {took:.1f} s after the kill with exit {job.returncode}")
        if job.returncode == 0:
            failures.append("exit code 0 after a rank was killed")
        if took > 10:
            failures.append(f"took {took:.1f} s (> 10 s)")
        if "signal 9" not in out and "SIGKILL" not in out:
            failures.append("the console does not name the signal")
        left = [w for w in workers if os.path.exists(f"/proc/{w}") and
                open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        if left:
            failures.append(f"worker processes left running: {left}")

        # A rank that raises: a token id beyond the vocabulary in the training shard.
        shard = os.path.join(tmp, "bad.bin")
        header = [20240520, 1, 300] + [0] * 253
        with open(shard, "wb") as f:
            f.write(b"".join(x.to_bytes(4, "little") for x in header))
            f.write(b"".join((t % 300 + (1000 if t == 150 else 0)).to_bytes(2, "little") for t in range(300)))
        cfg2 = dict(cfg, train_batch_size=4, data={"train": [shard], "seq_len": 8},
                    train={"max_steps": 3, "save_dir": tmp})
        with open(path, "w") as f:
            json.dump(cfg2, f)
        t0 = time.time()
        r = subprocess.run([exe, "--config", path, "--nproc_per_node", "2", "--master_port", str(free_port())],
                           capture_output=True, text=True, timeout=60)
        text = r.stdout + r.stderr
        print(text[-1200:])
        if r.returncode == 0:
            failures.append("a bad shard did not fail the job")
        if "[rank 0]" not in text or "bad.bin" not in text:
            failures.append("the worker's error (naming bad.bin) did not reach the console with its rank prefix")
        if time.time() - t0 > 10:
            failures.append("the failing job took more than 10 s")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
