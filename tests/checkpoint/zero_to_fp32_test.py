"""zero_to_fp32 against the engine:
- its output equals the engine's gathered fp32 weights (the final model.safetensors) bit for bit, for stages 1-3 x
  world sizes 1-3, on a model whose units do not divide by the world size;
- the merged weights, loaded into a torch GPT-2 (tests/model's, read with json + numpy), give zerotrain's eval loss
  on the same batch within 1e-5;
- sharded output (--max_shard_size) with an index, loadable again by zerotrain's model.init_from;
- peak RSS of the merge stays far below the checkpoint's size (it streams tensor by tensor).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, read_safetensors  # noqa: E402

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def train(build, out, stage, world, model, steps=2, extra=None):
    cfg = {"train_batch_size": 6, "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 50},
           "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}},
           "model": model, "data": {"seq_len": 16, "shuffle": True},
           "train": {"max_steps": steps, "save_dir": out, "seed": 5}, "world_size": world}
    for k, v in (extra or {}).items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.run([os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", str(world),
                        "--master_port", str(free_port())], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(p.stderr[-2000:])
    return cfg


def merge(build, ckpt, out, *flags):
    p = subprocess.run([os.path.join(build, "zero_to_fp32"), ckpt, out, *flags], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(p.stderr)
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    b = args.build_dir
    sys.path.insert(0, os.path.join(args.source_dir, "tests", "model"))
    from model_parity_test import gpt2_loss  # noqa: E402

    odd = {"n_layer": 2, "n_head": 3, "n_embd": 48, "vocab_size": 256, "block_size": 32}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in (1, 2, 3):
            for world in (1, 2, 3):
                out = os.path.join(tmp, f"s{stage}w{world}")
                train(b, out, stage, world, odd)
                log = merge(b, out, os.path.join(out, "merged"))
                got = read_safetensors(os.path.join(out, "merged", "model.safetensors"))
                ref = read_safetensors(os.path.join(out, "model.safetensors"))
                same = set(got) == set(ref) and all(np.array_equal(got[k], ref[k]) for k in ref)
                check(same and f"ZeRO stage {stage}, world size {world}" in log,
                      f"stage {stage} world {world}: merge equals the engine's gathered weights bit for bit")

        # Eval loss through torch on the merged weights.
        out = os.path.join(tmp, "eval")
        train(b, out, 3, 2, odd, steps=3, extra={"train": {"eval_interval": 3, "eval_steps": 1}})
        merge(b, out, os.path.join(out, "merged.safetensors"))
        w = {k: torch.from_numpy(v.copy()).double() for k, v in read_safetensors(os.path.join(out, "merged.safetensors")).items()}
        with open(os.path.join(out, "metrics.jsonl")) as f:
            val = [json.loads(l)["val_loss"] for l in f if '"eval"' in l][-1]
        # The val loader reads the val shard in order: rank r's first micro-batch starts at r*B*T (B = micro).
        val_shard = os.path.join(b, "data", "fortunes_val_000000.bin")
        toks = np.fromfile(val_shard, dtype="<u2", offset=1024).astype(np.int64)
        B, T = 3, 16
        losses = []
        for r in range(2):
            chunk = toks[r * B * T: r * B * T + B * T + 1]
            x = torch.from_numpy(chunk[:-1].reshape(B, T))
            y = torch.from_numpy(chunk[1:].reshape(B, T))
            losses.append(float(gpt2_loss(w, odd, x, y)))
        torch_val = sum(losses) / 2
        check(abs(torch_val - val) / val < 1e-5, f"torch eval loss on merged weights {torch_val:.7f} vs zerotrain {val:.7f}")

        # Sharded output, loaded back by model.init_from.
        big = {"n_layer": 12, "n_head": 4, "n_embd": 256, "vocab_size": 256, "block_size": 32}
        out = os.path.join(tmp, "big")
        train(b, out, 3, 2, big, steps=1)
        shards = os.path.join(out, "shards")
        # The merge's own peak RSS (a fresh child, measured through its parent's RUSAGE_CHILDREN).
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        p = subprocess.run([sys.executable, "-c", probe, os.path.join(b, "zero_to_fp32"), out, shards,
                            "--max_shard_size", "8MB"], capture_output=True, text=True)
        check(p.returncode == 0, f"sharded merge runs: {p.stderr[-500:]}")
        peak = int(p.stdout.strip().splitlines()[-1]) * 1024
        ckpt_bytes = sum(os.path.getsize(os.path.join(out, "global_step1", f))
                         for f in os.listdir(os.path.join(out, "global_step1")))
        files = sorted(os.listdir(shards))
        check("model.safetensors.index.json" in files and len(files) > 3, f"sharded output with an index: {files}")
        check(peak < 0.25 * ckpt_bytes,
              f"merge peak RSS {peak / 1e6:.1f} MB is under a quarter of the {ckpt_bytes / 1e6:.1f} MB checkpoint")
        merged = {}
        for f in files:
            if f.endswith(".safetensors"):
                merged.update(read_safetensors(os.path.join(shards, f)))
        ref = read_safetensors(os.path.join(out, "model.safetensors"))
        check(all(np.array_equal(merged[k], ref[k]) for k in ref), "sharded merge equals the gathered weights")
        again = os.path.join(tmp, "again")
        train(b, again, 0, 1, dict(big, init_from=shards), steps=1)
        check(os.path.exists(os.path.join(again, "model.safetensors")), "model.init_from loads the sharded merge")

        # 16-bit export with each save (stage3_gather_16bit_weights_on_model_save), bf16 training.
        out = os.path.join(tmp, "export16")
        train(b, out, 3, 2, odd, extra={"bf16": {"enabled": True},
                                        "zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}})
        path = os.path.join(out, "global_step2", "model.safetensors")
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        merge(b, out, os.path.join(out, "merged"))
        fp32 = read_safetensors(os.path.join(out, "merged", "model.safetensors"))
        ok = True
        for k, v in fp32.items():
            meta = header[k]
            bits = np.frombuffer(data[meta["data_offsets"][0]:meta["data_offsets"][1]], "<u2").astype(np.uint32)
            widened = (bits << 16).view(np.float32).reshape(v.shape)
            want = torch.from_numpy(v.copy()).to(torch.bfloat16).float().numpy()
            ok = ok and meta["dtype"] == "BF16" and np.array_equal(widened, want)
        check(ok, "the bf16 export holds the fp32 master weights rounded to bf16")

        # Errors: not a checkpoint; a corrupted shard.
        p = subprocess.run([os.path.join(b, "zero_to_fp32"), tmp, os.path.join(tmp, "x")], capture_output=True,
                           text=True)
        check(p.returncode != 0 and "latest" in p.stderr, f"a directory without checkpoints: {p.stderr.strip()}")
        shard = os.path.join(tmp, "s3w2", "global_step2", "rank_00001.safetensors")
        os.truncate(shard, os.path.getsize(shard) - 8)
        p = subprocess.run([os.path.join(b, "zero_to_fp32"), os.path.join(tmp, "s3w2"), os.path.join(tmp, "y")],
                           capture_output=True, text=True)
        check(p.returncode != 0 and "rank_00001.safetensors" in p.stderr, f"a truncated shard: {p.stderr.strip()}")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
