"""The engine's own accounting of model-state bytes per rank matches ZeRO's formulas (fp32) for every stage at world
sizes 2 and 4, within 2% plus the partition padding. Formulas (Ψ parameters, N ranks, fp32, Adam):
  stage 0: 4Ψ + 4Ψ + 8Ψ;  stage 1: 4Ψ + 4Ψ + 12Ψ/N;  stage 2: 4Ψ + 4Ψ/N + 12Ψ/N;  stage 3: 4Ψ/N + 4Ψ/N + 8Ψ/N
(stages 1-2 keep an fp32 master copy of the partition; stage 3's partition is the master). The same numbers must come
out of `zerotrain --dry-run`, which uses the estimator that `zerotrain plan` will share.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port  # noqa: E402

N_LAYER, N_HEAD, N_EMBD, VOCAB, BLOCK = 3, 4, 96, 256, 64


def psi():
    C = N_EMBD
    per_layer = 2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * 4 * C + 4 * C + 4 * C * C + C
    return VOCAB * C + BLOCK * C + N_LAYER * per_layer + 2 * C


def formula(stage, n, p):
    return {0: 16 * p, 1: 8 * p + 12 * p / n, 2: 4 * p + 16 * p / n, 3: 16 * p / n}[stage]


def config(stage, world, out):
    return {
        "train_batch_size": 4 * world, "train_micro_batch_size_per_gpu": 4,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
        "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 0},
        "model": {"n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD, "vocab_size": VOCAB, "block_size": BLOCK},
        "data": {"seq_len": 16},
        "train": {"max_steps": 1, "save_dir": out},
        "world_size": world,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    exe = os.path.join(args.build_dir, "zerotrain")
    p = psi()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in (2, 4):
            for stage in range(4):
                out = os.path.join(tmp, f"s{stage}w{world}")
                os.makedirs(out)
                path = os.path.join(out, "config.json")
                with open(path, "w") as f:
                    json.dump(config(stage, world, out), f)
                r = subprocess.run([exe, "--config", path, "--dry-run"], capture_output=True, text=True)
                assert r.returncode == 0, r.stderr
                m = re.search(r"^\s*total:\s+(\d+) bytes", r.stdout, re.M)
                dry = int(m.group(1)) if m else -1
                r = subprocess.run([exe, "--config", path, "--nproc_per_node", str(world), "--master_port",
                                    str(free_port())], capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    failures.append(f"stage {stage} world {world}: exit {r.returncode}: {r.stderr[-1500:]}")
                    continue
                with open(os.path.join(out, "metrics.jsonl")) as f:
                    recs = [json.loads(l) for l in f]
                run = recs[0]
                step = next(x for x in recs if x.get("type") == "step")
                assert run["num_params"] == p, f"num_params {run['num_params']} != {p}"
                got = step["model_state_bytes"]
                want = formula(stage, world, p)
                # Padding: each of the L+2 units rounds up to world*16 elements, in 4 fp32 partition buffers.
                pad = (N_LAYER + 2) * world * 16 * 4 * 4
                ok = abs(got - want) <= 0.02 * want + pad and abs(dry - want) <= 4 * world
                print(f"stage {stage} world {world}: engine {got} B, formula {want:.0f} B, dry-run {dry} B, "
                      f"ratio {got / want:.4f} {'ok' if ok else 'FAIL'}")
                if not ok:
                    failures.append(f"stage {stage} world {world}: engine {got} vs formula {want}")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
