"""zerotrain sweep and report end to end on CPU: a 2-rank stage x micro-batch sweep of the tiny model with one bad
grid value, a rerun that skips finished runs, an interrupted sweep (SIGINT) that resumes, and the report's table,
CSV and PNG plots. Run: /usr/bin/python3 sweep_report_test.py --build-dir BUILD --source-dir SRC"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    return r


def status(out, name):
    with open(os.path.join(out, name, "status.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    a = ap.parse_args()
    zt = os.path.join(a.build_dir, "zerotrain")
    tmp = tempfile.mkdtemp(prefix="zt_sweep_test_")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        base = os.path.join(tmp, "base.json")
        with open(base, "w") as f:
            json.dump({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
                       "steps_per_print": 1, "optimizer": {"type": "AdamW", "params": {"lr": 0.003}},
                       "zero_optimization": {"stage": 0}, "model": {"preset": "gpt2-tiny"},
                       "data": {"seq_len": 32},
                       "train": {"max_steps": 5, "eval_interval": 5, "eval_steps": 2, "save_dir": "unused"},
                       "comm": {"backend": "gloo"}}, f)
        out = os.path.join(tmp, "sweep")
        sweep_cmd = [zt, "sweep", "--config", base, "--grid", "zero_optimization.stage=0,3,7",
                     "--grid", "train_micro_batch_size_per_gpu=2,4", "--nproc_per_node", "2", "--out", out]
        t0 = time.time()
        r = run(sweep_cmd, env=env)
        print(r.stdout[-3000:], r.stderr[-2000:], "sweep took %.1f s" % (time.time() - t0), flush=True)
        check(r.returncode == 1, "a sweep with a failed run exits 1, got %d" % r.returncode)
        good = ["zero_optimization.stage=%d__train_micro_batch_size_per_gpu=%d" % (s, b) for s in (0, 3) for b in (2, 4)]
        bad = ["zero_optimization.stage=7__train_micro_batch_size_per_gpu=%d" % b for b in (2, 4)]
        for name in good:
            d = os.path.join(out, name)
            st = status(out, name)
            check(st["state"] == "finished" and st["exit_code"] == 0, name + " finished: %s" % st)
            for f in ("config.json", "log.txt", "metrics.jsonl", "status.json"):
                check(os.path.isfile(os.path.join(d, f)), name + " has " + f)
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
            check(cfg["train"]["save_dir"] == d, name + " config.json has the run's save_dir")
            with open(os.path.join(d, "metrics.jsonl")) as f:
                lines = [json.loads(l) for l in f]
            check(lines[0]["type"] == "run" and lines[0]["world_size"] == 2, name + " ran on 2 ranks")
            check(sum(1 for l in lines if l["type"] == "step") == 5, name + " has 5 steps")
            check(isinstance(st["wall_s"], float) and st["wall_s"] > 0, name + " has a wall time")
        for name in bad:
            st = status(out, name)
            check(st["state"] == "failed" and st["exit_code"] == 2, name + " failed with exit 2: %s" % st)
            check("zero_optimization.stage" in st["error"], name + " error names the key: " + st["error"])
        check("| run" in r.stdout and all(n in r.stdout for n in good + bad), "the summary table lists every run")

        # Rerun: the finished runs are skipped (their metrics untouched), the failed ones run again.
        mtimes = {n: os.path.getmtime(os.path.join(out, n, "metrics.jsonl")) for n in good}
        r = run(sweep_cmd, env=env)
        check(r.returncode == 1, "rerun exits 1 again (the bad runs fail again)")
        check(r.stdout.count("finished before, skipped") == 4, "rerun skips the 4 finished runs:\n" + r.stdout)
        for n in good:
            check(os.path.getmtime(os.path.join(out, n, "metrics.jsonl")) == mtimes[n], n + " was not rerun")
        for n in bad:
            check(status(out, n)["state"] == "failed", n + " reran and failed again")

        # Report: the table, the CSV and the plots.
        plots = os.path.join(tmp, "plots")
        r = run([zt, "report", out, "--plots", plots], env=env)
        print(r.stdout, r.stderr[-2000:], flush=True)
        check(r.returncode == 0, "report exits 0, got %d: %s" % (r.returncode, r.stderr))
        for n in good + bad:
            check(n in r.stdout, "report lists " + n)
        with open(os.path.join(out, "report.csv")) as f:
            rows = list(csv.DictReader(f))
        check(len(rows) == 6, "report.csv has 6 rows")
        by_name = {row["run"]: row for row in rows}
        for n in good:
            row = by_name.get(n, {})
            check(row.get("status") == "finished" and row.get("steps") == "5", n + " csv status/steps: %s" % row)
            check(0 < float(row.get("final loss") or 0) < 10, n + " csv has a final loss")
            check(0 < float(row.get("best val loss") or 0) < 10, n + " csv has a val loss")
            check(float(row.get("median tok/s") or 0) > 0, n + " csv has tokens/s")
            check(float(row.get("model states MiB/rank") or 0) > 0, n + " csv has model-state memory")
            check(float(row.get("peak RSS MiB/rank") or 0) > 0, n + " csv has peak RSS")
        for n in bad:
            check(by_name.get(n, {}).get("status") == "failed", n + " csv status failed")
        if shutil.which("gnuplot"):
            for png in ("loss_vs_step.png", "loss_vs_tokens.png", "tokens_per_s.png", "memory_per_rank.png"):
                p = os.path.join(plots, png)
                ok = os.path.isfile(p)
                check(ok, png + " exists")
                if ok:
                    with open(p, "rb") as f:
                        data = f.read()
                    check(data[:8] == b"\x89PNG\r\n\x1a\n", png + " is a PNG")
                    check(len(data) > 5000, png + " is not trivial (%d bytes)" % len(data))
        else:
            print("gnuplot not installed: PNG checks skipped (the no-gnuplot path is tested below)")
        # Without gnuplot on PATH: says so, still writes the table; a single run folder is one run.
        single_csv = os.path.join(tmp, "single.csv")
        r = run([zt, "report", os.path.join(out, good[0]), "--plots", os.path.join(tmp, "p2"), "--csv", single_csv],
                env=dict(env, PATH="/nonexistent"))
        check(r.returncode == 0 and "gnuplot is not on PATH" in r.stdout, "report without gnuplot: " + r.stdout)
        with open(single_csv) as f:
            check(len(list(csv.DictReader(f))) == 1, "single-run report has one row")

        # Interrupt: SIGINT while the first run trains stops it, marks it interrupted, exits 130; rerun resumes.
        out2 = os.path.join(tmp, "sweep2")
        cmd2 = [zt, "sweep", "--config", base, "train.max_steps=250", "train.eval_interval=0", "--nproc_per_node", "2",
                "--grid", "zero_optimization.stage=1,2", "--out", out2]
        p = subprocess.Popen(cmd2, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        first = os.path.join(out2, "zero_optimization.stage=1")
        deadline = time.time() + 60
        started = False
        while time.time() < deadline and not started:
            try:
                with open(os.path.join(first, "metrics.jsonl")) as f:
                    started = '"type":"step"' in f.read().replace(" ", "")
            except OSError:
                pass
            time.sleep(0.02)
        check(started, "the first run of the second sweep started training")
        p.send_signal(signal.SIGINT)
        text, _ = p.communicate(timeout=60)
        print(text[-2000:], flush=True)
        check(p.returncode == 130, "interrupted sweep exits 130, got %s" % p.returncode)
        st = status(out2, "zero_optimization.stage=1")
        check(st["state"] == "interrupted", "the interrupted run is marked interrupted: %s" % st)
        check(not os.path.exists(os.path.join(out2, "zero_optimization.stage=2", "status.json")),
              "the sweep stopped before the second run")
        r = run(cmd2, env=env)
        check(r.returncode == 0, "resumed sweep exits 0, got %d: %s" % (r.returncode, r.stdout[-1000:]))
        for n in ("zero_optimization.stage=1", "zero_optimization.stage=2"):
            check(status(out2, n)["state"] == "finished", n + " finished after the resume")
        print("total %.1f s" % (time.time() - t0))
    finally:
        if os.environ.get("ZT_KEEP_TMP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print("%d checks failed" % len(FAILURES))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
