#!/usr/bin/env python3
"""PyTorch parity of training: zerotrain and a torch GPT-2 train the same model on the same batches for a few steps.

The test makes random GPT-2-like weights (numpy seed) and writes them as safetensors (json + numpy), writes an
llm.c token shard of random tokens, and runs `zerotrain` with `model.init_from` and `data.train` set to them,
`data.shuffle: false`, AdamW with weight decay, DeepSpeed's WarmupLR and gradient clipping. Torch then trains the
same weights in float64 on the same batches (rebuilt from docs/data.md's sequential rule), with
torch.optim.AdamW, weight decay on the 2-D parameters only (docs/optimizer.md), the lr of scheduler index k-1 for
the k-th step, and clip_grad_norm_. Per-step losses must agree within LOSS_RTOL relative, the pre-clip gradient
norms within NORM_RTOL, and the final weights within WEIGHT_TOL * max(1, |w|).

Each case also checks that the comparison can fail: torch references trained without weight decay, with the lr
of index k instead of k-1, and (where clipping is active) without clipping must each disagree with zerotrain.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import read_safetensors  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from model_parity_test import gpt2_loss  # noqa: E402  (the torch GPT-2 of tests/model)

STEPS = 5
LOSS_RTOL = 1e-5
NORM_RTOL = 1e-4
WEIGHT_TOL = 1e-5


# ---- files zerotrain reads -------------------------------------------------------------------------------------

def param_shapes(cfg):
    """HF GPT-2 names and shapes (Conv1D weights are [in, out]), in the model's order."""
    C, V, L, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"], cfg["block_size"]
    shapes = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (P, C))]
    for l in range(L):
        h = f"transformer.h.{l}."
        shapes += [(h + "ln_1.weight", (C,)), (h + "ln_1.bias", (C,)),
                   (h + "attn.c_attn.weight", (C, 3 * C)), (h + "attn.c_attn.bias", (3 * C,)),
                   (h + "attn.c_proj.weight", (C, C)), (h + "attn.c_proj.bias", (C,)),
                   (h + "ln_2.weight", (C,)), (h + "ln_2.bias", (C,)),
                   (h + "mlp.c_fc.weight", (C, 4 * C)), (h + "mlp.c_fc.bias", (4 * C,)),
                   (h + "mlp.c_proj.weight", (4 * C, C)), (h + "mlp.c_proj.bias", (C,))]
    shapes += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return shapes


def init_weights(cfg, seed):
    """GPT-2's init (normal 0.02, residual projections 0.02/sqrt(2L)), except that biases and LayerNorm parameters
    get small random values instead of 0 and 1, so that a mix-up between them cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_shapes(cfg):
        if name.endswith("c_proj.weight"):
            w = rng.normal(0.0, 0.02 / math.sqrt(2 * cfg["n_layer"]), shape)
        elif len(shape) == 2:
            w = rng.normal(0.0, 0.02, shape)
        elif ".ln_" in name and name.endswith(".weight"):
            w = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            w = rng.normal(0.0, 0.02, shape)
        out[name] = w.astype(np.float32)
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def write_shard(path, tokens):
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


# ---- the reference ---------------------------------------------------------------------------------------------

def sequential_batches(tokens, B, T, count):
    """docs/data.md, shuffle=false, one rank, one shard: micro-batch b takes tokens [b*B*T, b*B*T + B*T + 1);
    when that window runs past the end, reading restarts at the shard's start with b = 0."""
    b = 0
    for _ in range(count):
        if b * B * T + B * T + 1 > len(tokens):
            b = 0
        w = tokens[b * B * T: b * B * T + B * T + 1].astype(np.int64)
        yield torch.tensor(w[:-1].reshape(B, T)), torch.tensor(w[1:].reshape(B, T))
        b += 1


def warmup_lr(sched, index):
    """DeepSpeed WarmupLR at last_batch_iteration = index."""
    W = max(2, sched["warmup_num_steps"])
    if index < W:
        f = index / W if sched["warmup_type"] == "linear" else math.log(index + 1) / math.log(W)
    else:
        f = 1.0
    return sched["warmup_min_lr"] + (sched["warmup_max_lr"] - sched["warmup_min_lr"]) * f


def torch_train(case, weights, tokens, lr_shift=0, weight_decay=None, clip=True, decay_all=False):
    """Returns (losses, pre-clip grad norms, final weights). lr_shift / weight_decay / clip / decay_all perturb the
    recipe for the sensitivity checks."""
    cfg, opt_cfg, sched = case["model"], case["adamw"], case["sched"]
    B, T, gas = case["B"], case["T"], case["gas"]
    wd = opt_cfg["weight_decay"] if weight_decay is None else weight_decay
    params = {n: torch.tensor(w, dtype=torch.float64, requires_grad=True) for n, w in weights.items()}
    decay = [p for p in params.values() if p.dim() >= 2 or decay_all]
    no_decay = [p for p in params.values() if p.dim() < 2 and not decay_all]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=0.0, betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"])
    batches = sequential_batches(tokens, B, T, STEPS * gas)
    losses, norms = [], []
    for k in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=False)
        total = 0.0
        for _ in range(gas):
            x, y = next(batches)
            loss = gpt2_loss(params, cfg, x, y)
            (loss / gas).backward()
            total += loss.item()
        losses.append(total / gas)
        max_norm = case["clip"] if clip else float("inf")
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)))
        for g in opt.param_groups:
            g["lr"] = warmup_lr(sched, k - 1 + lr_shift)
        opt.step()
    return np.array(losses), np.array(norms), {n: p.detach().numpy() for n, p in params.items()}


# ---- zerotrain -------------------------------------------------------------------------------------------------

def run_zerotrain(build, out, case, weights_path, shard_path):
    cfg = {
        "train_batch_size": case["B"] * case["gas"],
        "train_micro_batch_size_per_gpu": case["B"],
        "gradient_accumulation_steps": case["gas"],
        "steps_per_print": 100,
        "gradient_clipping": case["clip"],
        "optimizer": {"type": "AdamW", "params": case["adamw"]},
        "scheduler": {"type": "WarmupLR", "params": case["sched"]},
        "zero_optimization": {"stage": 0},
        "world_size": 1,
        "model": dict(case["model"], init_from=weights_path),
        "data": {"train": [shard_path], "seq_len": case["T"], "shuffle": False},
        "train": {"max_steps": STEPS, "seed": 5, "save_dir": out, "eval_interval": 0},
    }
    if case["ckpt"]:
        cfg["activation_checkpointing"] = {}  # on whenever the section is present (docs/config.md)
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    p = subprocess.run([os.path.join(build, "zerotrain"), "--config", path], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"zerotrain exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    resolved = records[0].get("config", {})
    ckpt = resolved.get("activation_checkpointing", {}).get("enabled", False)
    assert ckpt == case["ckpt"], f"the run record says activation checkpointing is {ckpt}, expected {case['ckpt']}"
    steps = [r for r in records if r.get("type") == "step"]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1)), f"steps in metrics.jsonl: {steps}"
    return (np.array([s["loss"] for s in steps]), np.array([s["grad_norm"] for s in steps]),
            np.array([s["lr"] for s in steps]), read_safetensors(os.path.join(out, "model.safetensors")))


def compare(zt, ref):
    """Worst loss relative error, grad norm relative error, and weight error / max(1, |w|)."""
    zl, zn, zw = zt
    rl, rn, rw = ref
    loss_err = float(np.max(np.abs(zl - rl) / np.abs(rl)))
    norm_err = float(np.max(np.abs(zn - rn) / np.abs(rn)))
    w_err, w_name = 0.0, ""
    for name, r in rw.items():
        e = float(np.max(np.abs(zw[name].astype(np.float64) - r) / np.maximum(1.0, np.abs(r))))
        if e > w_err:
            w_err, w_name = e, name
    return loss_err, norm_err, w_err, w_name


def passes(errs):
    return errs[0] <= LOSS_RTOL and errs[1] <= NORM_RTOL and errs[2] <= WEIGHT_TOL


def check_case(build, tmp, name, case):
    failures = []
    rng = np.random.default_rng(case["seed"])
    cfg = case["model"]
    weights = init_weights(cfg, case["seed"])
    tokens = rng.integers(0, cfg["vocab_size"], size=case["n_tokens"]).astype(np.uint16)
    out = os.path.join(tmp, name)
    os.makedirs(out)
    weights_path, shard_path = os.path.join(out, "init.safetensors"), os.path.join(out, "train_000000.bin")
    write_safetensors(weights_path, weights)
    write_shard(shard_path, tokens)

    zl, zn, zlr, zw = run_zerotrain(build, out, case, weights_path, shard_path)
    missing = set(weights) ^ set(zw)
    if missing:
        return [f"{name}: tensor names differ between init and zerotrain's output: {sorted(missing)}"]

    expected_lr = np.array([warmup_lr(case["sched"], k - 1) for k in range(1, STEPS + 1)])
    if np.max(np.abs(zlr - expected_lr)) > 1e-12:
        failures.append(f"{name}: lr per step {zlr.tolist()}, expected {expected_lr.tolist()}")

    rl, rn, rw = torch_train(case, weights, tokens)
    errs = compare((zl, zn, zw), (rl, rn, rw))
    clipped = int(np.sum(rn > case["clip"]))
    print(f"{name}: losses zt {np.round(zl, 6).tolist()}\n"
          f"{' ' * len(name)}  torch {np.round(rl, 6).tolist()}\n"
          f"{' ' * len(name)}  grad norms {np.round(rn, 4).tolist()} ({clipped} of {STEPS} steps clipped at "
          f"{case['clip']})\n"
          f"{' ' * len(name)}  max loss rel err {errs[0]:.2e}, grad norm rel err {errs[1]:.2e}, "
          f"weight err {errs[2]:.2e} ({errs[3]})")
    if not passes(errs):
        failures.append(f"{name}: loss rel err {errs[0]:.2e} (tol {LOSS_RTOL}), grad norm rel err {errs[1]:.2e} "
                        f"(tol {NORM_RTOL}), weight err {errs[2]:.2e} at {errs[3]} (tol {WEIGHT_TOL})")

    # The comparison must be able to fail: a reference with a wrong recipe has to disagree with zerotrain.
    wrong = {"no weight decay": dict(weight_decay=0.0), "weight decay on every parameter": dict(decay_all=True),
             "lr of index k instead of k-1": dict(lr_shift=1)}
    if 0 < clipped:
        wrong["no gradient clipping"] = dict(clip=False)
    for what, kw in wrong.items():
        bad = torch_train(case, weights, tokens, **kw)
        e = compare((zl, zn, zw), bad)
        print(f"{' ' * len(name)}  sensitivity: torch with {what}: loss rel err {e[0]:.1e}, weight err {e[2]:.1e}")
        if passes(e):
            failures.append(f"{name}: a torch reference with {what} also matches zerotrain (weight err {e[2]:.2e}): "
                            f"the test cannot tell them apart")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.build_dir, "zerotrain")):
        print(f"FAIL: {args.build_dir}/zerotrain not built", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    adamw = {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}
    linear = {"warmup_min_lr": 1e-4, "warmup_max_lr": 1e-3, "warmup_num_steps": 3, "warmup_type": "linear"}
    log = {"warmup_min_lr": 2e-4, "warmup_max_lr": 2e-3, "warmup_num_steps": 4, "warmup_type": "log"}
    odd = dict(n_layer=2, n_head=3, n_embd=48, vocab_size=97, block_size=17)
    regular = dict(n_layer=3, n_head=4, n_embd=64, vocab_size=256, block_size=40)
    cases = {
        # 7 micro-batches of 3*17 tokens fit in the shard, so the 10 of the gas=2 case wrap around to its start.
        "odd": dict(model=odd, B=3, T=17, gas=1, ckpt=False, clip=1.0, adamw=adamw, sched=linear, seed=11,
                    n_tokens=7 * 3 * 17 + 5),
        "odd_gas2": dict(model=odd, B=3, T=17, gas=2, ckpt=False, clip=1.0, adamw=adamw, sched=linear, seed=12,
                         n_tokens=7 * 3 * 17 + 5),
        "regular": dict(model=regular, B=4, T=32, gas=1, ckpt=False, clip=1.0, adamw=adamw, sched=log, seed=13,
                        n_tokens=4 * 32 * 8),
        "regular_ckpt": dict(model=regular, B=4, T=32, gas=1, ckpt=True, clip=1.0, adamw=adamw, sched=log, seed=14,
                             n_tokens=4 * 32 * 8),
    }
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases.items():
            try:
                failures += check_case(args.build_dir, tmp, name, case)
            except AssertionError as e:
                failures.append(f"{name}: {e}")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
