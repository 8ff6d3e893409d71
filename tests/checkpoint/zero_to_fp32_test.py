"""zero_to_fp32 against the engine:
- its output equals the engine's gathered fp32 weights (the final model.safetensors) bit for bit, for stages 1-3 x
  world sizes 1-3, on a model whose parameter count (40495) and unit sizes divide by neither 2 nor 3;
- the output directory is what Hugging Face's GPT2LMHeadModel loads (tests/pylib/hf_checks.py: names, Conv1D
  shapes, dtypes, the safetensors header, the shard index, config.json), single-file and sharded;
- the merged weights, loaded into a torch GPT-2 (tests/model's, read with json + numpy), give zerotrain's eval loss
  on the same batch within 1e-5;
- sharded output (--max_shard_size) loads again through zerotrain's model.init_from;
- peak RSS of the merge: the process's own baseline plus its 16 MiB checksum window plus one output shard, far
  below the checkpoint's size (a merge holding the model or the checkpoint in memory fails this);
- --tag picks an older tag; --exclude_frozen_parameters (nothing is frozen) changes nothing;
- a corrupted, truncated or missing shard or a manifest checksum mismatch: an error naming the file, and an earlier
  output in the same place is left untouched (no half-written model.safetensors, no .tmp left behind);
- the progress bar is drawn on a terminal only;
- stage3_gather_16bit_weights_on_model_save writes bf16 / fp16 models equal to the fp32 masters rounded.
"""
import argparse
import hashlib
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, read_safetensors  # noqa: E402
from hf_checks import check_hf_gpt2_dir  # noqa: E402

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


def peak_rss(cmd):
    """Peak RSS in bytes of cmd alone (a fresh child, measured through its parent's RUSAGE_CHILDREN)."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True)
    rc, kb = p.stdout.split()
    return int(rc), int(kb) * 1024


def digest(d):
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        h.update(name.encode())
        with open(os.path.join(d, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def same_weights(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in b)


def read_dir(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(read_safetensors(os.path.join(d, f)))
    return out


def write_st(path, tensors):
    """A minimal F32 safetensors writer, for the checks' own negative cases."""
    header, data, at = {"__metadata__": {"format": "pt"}}, b"", 0
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        data += b
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    b = args.build_dir
    z2f = os.path.join(b, "zero_to_fp32")
    sys.path.insert(0, os.path.join(args.source_dir, "tests", "model"))
    from model_parity_test import gpt2_loss  # noqa: E402

    # 40495 parameters; units of 10115 and 15155 elements: odd and not multiples of 3.
    odd = {"n_layer": 2, "n_head": 5, "n_embd": 35, "vocab_size": 257, "block_size": 32}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in (1, 2, 3):
            for world in (1, 2, 3):
                out = os.path.join(tmp, f"s{stage}w{world}")
                train(b, out, stage, world, odd)
                log = merge(b, out, os.path.join(out, "merged"))
                got = read_safetensors(os.path.join(out, "merged", "model.safetensors"))
                ref = read_safetensors(os.path.join(out, "model.safetensors"))
                n = sum(v.size for v in ref.values())
                check(same_weights(got, ref) and f"ZeRO stage {stage}, world size {world}, {n} parameters" in log
                      and n % 2 == 1 and n % 3 != 0,
                      f"stage {stage} world {world}: merge equals the engine's gathered weights bit for bit ({n} "
                      "parameters)")
        problems = check_hf_gpt2_dir(os.path.join(tmp, "s3w2", "merged"), odd)
        check(not problems, f"the merged directory is what GPT2LMHeadModel loads: {problems}")

        # The checks themselves catch what transformers would reject.
        bad = os.path.join(tmp, "bad_hf")
        shutil.copytree(os.path.join(tmp, "s3w2", "merged"), bad)
        w = read_safetensors(os.path.join(bad, "model.safetensors"))
        w = {k: (v.T if k.endswith("attn.c_attn.weight") else v) for k, v in w.items()}  # nn.Linear orientation
        w["lm_head.weight"] = w["transformer.wte.weight"]
        write_st(os.path.join(bad, "model.safetensors"), w)
        problems = check_hf_gpt2_dir(bad, odd)
        check(any("c_attn.weight: shape" in p for p in problems) and any("lm_head" in p for p in problems),
              f"hf_checks catches a [out, in] Conv1D weight and an untied lm_head: {problems[:3]}")

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

        # A bigger model: sharded output, loaded back by model.init_from; the merge's peak RSS.
        big = {"n_layer": 12, "n_head": 6, "n_embd": 384, "vocab_size": 256, "block_size": 32}
        out = os.path.join(tmp, "big")
        train(b, out, 3, 2, big, steps=1)
        shards = os.path.join(out, "shards")
        rc, peak = peak_rss([z2f, out, shards, "--max_shard_size", "8MB"])
        _, base = peak_rss([z2f, "--help"])
        check(rc == 0, "sharded merge runs")
        ckpt_bytes = sum(os.path.getsize(os.path.join(out, "global_step1", f))
                         for f in os.listdir(os.path.join(out, "global_step1")))
        out_bytes = sum(os.path.getsize(os.path.join(shards, f)) for f in os.listdir(shards))
        files = sorted(os.listdir(shards))
        check("model.safetensors.index.json" in files and len(files) > 5, f"sharded output with an index: {files}")
        budget = base + 16 * 2**20 + 8e6 + 8e6  # baseline + the CRC's 16 MiB mapping window + one 8 MB shard + slack
        check(peak <= budget and peak < ckpt_bytes / 4,
              f"merge peak RSS {peak / 1e6:.1f} MB (baseline {base / 1e6:.1f} MB) within {budget / 1e6:.1f} MB and "
              f"under a quarter of the {ckpt_bytes / 1e6:.1f} MB checkpoint ({out_bytes / 1e6:.1f} MB written)")
        ref = read_safetensors(os.path.join(out, "model.safetensors"))
        check(same_weights(read_dir(shards), ref), "sharded merge equals the gathered weights")
        problems = check_hf_gpt2_dir(shards, big)
        check(not problems, f"the sharded directory is what GPT2LMHeadModel loads: {problems}")
        again = os.path.join(tmp, "again")
        train(b, again, 0, 1, dict(big, init_from=shards), steps=1)
        check(os.path.exists(os.path.join(again, "model.safetensors")), "model.init_from loads the sharded merge")
        # Merging again into the same directory as one file drops the now stale index.
        merge(b, out, shards)
        check(not os.path.exists(os.path.join(shards, "model.safetensors.index.json")) and
              same_weights(read_safetensors(os.path.join(shards, "model.safetensors")), ref),
              "a single-file merge over a sharded one replaces the index")

        # --tag, --exclude_frozen_parameters. In fp32, the "16-bit" export is the engine's gathered fp32 weights of
        # each tag: the reference for merging an older tag.
        out = os.path.join(tmp, "tags")
        train(b, out, 2, 3, odd, steps=2, extra={"train": {"save_interval": 1},
                                                 "zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}})
        merge(b, out, os.path.join(out, "t1"), "--tag", "global_step1")
        t1 = read_safetensors(os.path.join(out, "t1", "model.safetensors"))
        check(same_weights(t1, read_safetensors(os.path.join(out, "global_step1", "model.safetensors"))) and
              not same_weights(t1, read_safetensors(os.path.join(out, "model.safetensors"))),
              "--tag global_step1 merges that tag, not the latest")
        merge(b, out, os.path.join(out, "nofrozen"), "--exclude_frozen_parameters")
        check(same_weights(read_safetensors(os.path.join(out, "nofrozen", "model.safetensors")),
                           read_safetensors(os.path.join(out, "model.safetensors"))),
              "--exclude_frozen_parameters: everything is trained, so the merge is the same")
        p = subprocess.run([z2f, out, os.path.join(tmp, "x"), "--tag", "global_step9"], capture_output=True, text=True)
        check(p.returncode != 0 and "global_step9" in p.stderr, f"an unknown tag: {p.stderr.strip()}")

        # The progress bar: on a terminal only.
        master, slave = pty.openpty()
        p = subprocess.Popen([z2f, out, os.path.join(tmp, "tty")], stdout=slave, stderr=slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        p.wait()
        os.close(master)
        piped = merge(b, out, os.path.join(tmp, "piped"))
        check(p.returncode == 0 and b"\r[" in seen and b"MB" in seen and "\r" not in piped,
              f"progress bar on a terminal, none in a pipe: {seen[-120:]!r}")

        # 16-bit exports with each save: bf16 and fp16, each the fp32 masters rounded.
        for prec, dtype, torch_dtype in (("bf16", "BF16", torch.bfloat16), ("fp16", "F16", torch.float16)):
            out = os.path.join(tmp, "export_" + prec)
            extra = {"zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}}
            extra.update({"bf16": {"enabled": True}} if prec == "bf16" else {"fp16": {"enabled": True}})
            train(b, out, 3, 2, odd, extra=extra)
            path = os.path.join(out, "global_step2", "model.safetensors")
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
                data = f.read()
            merge(b, out, os.path.join(out, "merged"))
            fp32 = read_safetensors(os.path.join(out, "merged", "model.safetensors"))
            ok = set(fp32) == set(header) - {"__metadata__"}
            for k, v in fp32.items():
                meta = header[k]
                raw = np.frombuffer(data[meta["data_offsets"][0]:meta["data_offsets"][1]], "<u2").copy()
                got = torch.from_numpy(raw.view(np.int16)).view(torch_dtype).float().numpy().reshape(v.shape)
                want = torch.from_numpy(v.copy()).to(torch_dtype).float().numpy()
                ok = ok and meta["dtype"] == dtype and np.array_equal(got, want)
            check(ok, f"the {prec} export holds the fp32 master weights rounded to {dtype}")

        # Errors: not a checkpoint; each corruption names the file and leaves an earlier output untouched.
        p = subprocess.run([z2f, tmp, os.path.join(tmp, "x")], capture_output=True, text=True)
        check(p.returncode != 0 and "latest" in p.stderr, f"a directory without checkpoints: {p.stderr.strip()}")

        def corrupt_case(name, mutate, expect_text):
            d = os.path.join(tmp, "corrupt_" + name)
            shutil.copytree(os.path.join(tmp, "s3w2"), d)
            merged = os.path.join(d, "merged")
            before = digest(merged)
            mutate(os.path.join(d, "global_step2"))
            p = subprocess.run([z2f, d, merged], capture_output=True, text=True)
            check(p.returncode != 0 and expect_text in p.stderr, f"{name}: {p.stderr.strip()}")
            check(digest(merged) == before, f"{name}: the earlier output is untouched, no .tmp left behind")

        def flip(tag):  # a byte inside rank 1's master tensor
            f = os.path.join(tag, "rank_00001.safetensors")
            with open(f, "r+b") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                fh.seek(8 + n + 100)
                byte = fh.read(1)
                fh.seek(-1, 1)
                fh.write(bytes([byte[0] ^ 0x10]))

        def manifest_crc(tag):
            m = json.load(open(os.path.join(tag, "manifest.json")))
            m["files"][0]["prefix_crc32"] ^= 1
            json.dump(m, open(os.path.join(tag, "manifest.json"), "w"))

        corrupt_case("flipped", flip, "rank_00001.safetensors")
        corrupt_case("manifest_checksum", manifest_crc, "rank_00000.safetensors")
        corrupt_case("truncated", lambda t: os.truncate(os.path.join(t, "rank_00001.safetensors"), 1000),
                     "rank_00001.safetensors")
        corrupt_case("missing", lambda t: os.remove(os.path.join(t, "rank_00000.safetensors")),
                     "rank_00000.safetensors")
        d = os.path.join(tmp, "corrupt_flipped")
        p = subprocess.run([z2f, d, os.path.join(d, "unverified"), "--no_verify"], capture_output=True, text=True)
        check(p.returncode == 0 and "not verified" in p.stdout, "--no_verify merges without the checksum")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
