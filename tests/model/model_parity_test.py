#!/usr/bin/env python3
"""PyTorch parity of the GPT-2 model: zt_model_probe inits a model, writes its weights, and runs one forward and
backward; a GPT-2 written here in torch (HF layout: Conv1D weights [in, out], fused c_attn, gelu tanh, tied head)
loads the same weights and must give the same loss and gradients."""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F


def gpt2_loss(params, cfg, inputs, targets):
    """params: name -> tensor (requires_grad). inputs, targets: [B, T] int64."""
    B, T = inputs.shape
    C, nh = cfg["n_embd"], cfg["n_head"]
    hd = C // nh
    eps = 1e-5
    p = params
    x = p["transformer.wte.weight"][inputs] + p["transformer.wpe.weight"][:T].unsqueeze(0)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        h = f"transformer.h.{l}."
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, nh, hd).transpose(1, 2)
        k = k.view(B, T, nh, hd).transpose(1, 2)
        v = v.view(B, T, nh, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        m = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        m = F.gelu(m @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    logits = x @ p["transformer.wte.weight"].t()
    return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))


def check_shape(probe, cfg, B, T, seed, ckpt):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, cfg["vocab_size"], size=(B, T), dtype=np.int32)
    targets = rng.integers(0, cfg["vocab_size"], size=(B, T), dtype=np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokens.bin")
        np.concatenate([inputs.ravel(), targets.ravel()]).astype("<i4").tofile(tok_path)
        cmd = [probe, "--seed", str(seed), "--B", str(B), "--T", str(T), "--tokens", tok_path, "--out", tmp]
        for key in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"):
            cmd += ["--" + key, str(cfg[key])]
        if ckpt:
            cmd.append("--ckpt")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}")
        with open(os.path.join(tmp, "manifest.json")) as f:
            manifest = json.load(f)
        n = manifest["num_params"]
        weights = np.fromfile(os.path.join(tmp, "weights.bin"), dtype="<f4")
        grads = np.fromfile(os.path.join(tmp, "grads.bin"), dtype="<f4")
    assert weights.size == n and grads.size == n, f"file sizes {weights.size}, {grads.size} != {n}"

    # Run the reference in double so that the comparison measures zerotrain's float error only.
    params = {}
    for e in manifest["params"]:
        w = weights[e["offset"]:e["offset"] + e["numel"]].reshape(e["shape"])
        params[e["name"]] = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    loss = gpt2_loss(params, cfg, torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long))
    loss.backward()

    failures = []
    zt_loss = manifest["loss"]
    rel = abs(zt_loss - loss.item()) / abs(loss.item())
    if rel > 1e-5:
        failures.append(f"loss {zt_loss} vs torch {loss.item()} (rel {rel:.2e})")
    worst = 0.0
    for e in manifest["params"]:
        ref = params[e["name"]].grad.numpy().ravel()
        got = grads[e["offset"]:e["offset"] + e["numel"]].astype(np.float64)
        scale = np.abs(ref).max()
        if scale == 0:
            failures.append(f"{e['name']}: reference gradient is all zero")
            continue
        err = np.abs(got - ref).max() / scale
        worst = max(worst, err)
        if err > 1e-4:
            failures.append(f"{e['name']}: max|diff|/max|grad| = {err:.2e}")
    tag = f"L{cfg['n_layer']} C{cfg['n_embd']} H{cfg['n_head']} V{cfg['vocab_size']} B{B} T{T} ckpt={ckpt}"
    print(f"{tag}: loss zt {zt_loss:.7f} torch {loss.item():.7f}; worst grad rel err {worst:.2e}")
    return [f"{tag}: {m}" for m in failures]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    probe = os.path.join(args.build_dir, "tests", "zt_model_probe")
    if not os.path.exists(probe):
        print(f"FAIL: {probe} not built", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    failures = []
    odd = dict(n_layer=2, n_head=3, n_embd=48, vocab_size=97, block_size=17)
    even = dict(n_layer=3, n_head=4, n_embd=64, vocab_size=256, block_size=32)
    failures += check_shape(probe, odd, B=3, T=17, seed=1234, ckpt=False)
    failures += check_shape(probe, even, B=2, T=32, seed=99, ckpt=False)
    failures += check_shape(probe, even, B=2, T=32, seed=7, ckpt=True)
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
