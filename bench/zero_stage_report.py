"""The table of bench/zero_stage_bench.sh from each run's metrics.jsonl and `zerotrain --dry-run` output.

usage: zero_stage_report.py OUT_DIR STAGE...   (OUT_DIR/stage_<STAGE>/ holds each run)
"""
import json
import os
import re
import statistics
import sys


def gib(b):
    return f"{b / 2**30:.2f}"


def formula_bytes(psi, stage, n):
    # fp32 training with Adam: 4Ψ params + 4Ψ grads + 8Ψ (m, v); stages 1-2 also keep an fp32 master copy of their
    # partition (+4Ψ/N, as DeepSpeed's partitioned optimizer; docs/zero.md). Stage 1 divides the optimizer term by
    # N, stage 2 also the gradients, stage 3 also the parameters (its partition is the master).
    p, g, o = 4 * psi, 4 * psi, (12 if stage in (1, 2) else 8) * psi
    if stage >= 1:
        o /= n
    if stage >= 2:
        g /= n
    if stage >= 3:
        p /= n
    return p + g + o


def main():
    out, stages = sys.argv[1], sys.argv[2:]
    rows = []
    for stage in stages:
        run = os.path.join(out, f"stage_{stage}")
        steps = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"step"' in l]
        steps = [s for s in steps if s.get("type") == "step"]
        timed = steps[1:]
        if not timed:
            sys.exit(f"{run}: fewer than two step records")
        dry = open(os.path.join(run, "dry_run.txt")).read()
        m = re.search(r"total:\s*([0-9]+) bytes", dry)
        log = open(os.path.join(run, "log.txt")).read()
        pm = re.search(r"([0-9]+) parameters", log)
        psi = int(pm.group(1)) if pm else None
        load = open(os.path.join(run, "load.txt")).read().split("\n")
        rows.append({
            "stage": stage,
            "tok_s": statistics.median(s["tokens_per_s"] for s in timed),
            "ms": statistics.median(s["ms_per_step"] for s in timed),
            "rss": max(s["peak_rss_bytes"] for s in steps),
            "msb": steps[-1]["model_state_bytes"],
            "formula": formula_bytes(psi, int(stage.split("-")[0]), 2) if psi else None,
            "dry": gib(int(m.group(1))) if m else "?",
            "load": " / ".join(re.sub(r"^stage \S+: ", "", l) for l in load if l),
            "loss": steps[-1]["loss"],
        })
    base = rows[0]["tok_s"]
    print("GPT-2 124M dims, world size 2 (Gloo, CPU), micro-batch 2, T=64; tokens/s and ms/step: median of the step "
          "records after the first; RSS: rank 0's peak\n")
    print("| stage | tokens/s | ms/step | vs stage " + stages[0] + " | peak RSS GiB | model-state GiB (engine) "
          "| formula GiB (docs/zero.md) | dry-run GiB | final loss | load avg (1/5/15 min) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for r in rows:
        print(f"| {r['stage']} | {r['tok_s']:.1f} | {r['ms']:.0f} | {r['tok_s'] / base:.3f} | {gib(r['rss'])} | "
              f"{gib(r['msb'])} | {gib(r['formula']) if r['formula'] else '?'} | {r['dry']} | {r['loss']:.4f} | "
              f"{r['load']} |")


if __name__ == "__main__":
    main()
