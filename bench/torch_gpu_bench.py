#!/usr/bin/env python3
"""PyTorch GPT-2 training on one GPU, bf16, the baseline for zerotrain's CUDA benchmarks (issue 9).

Runs where PyTorch 2.x with CUDA is installed (the lent device image), not with Debian's CPU torch 1.13. One step =
forward + backward + clip_grad_norm_ + fused AdamW on random tokens, under bf16 autocast with fp32 master weights,
attention through F.scaled_dot_product_attention (flash where available). Each configuration is run eager and, with
--compile, also under torch.compile. Prints one JSON line per configuration:
tokens/s, ms/step, peak device memory, and MFU = model FLOPs/s over the bf16 dense-matmul peak measured in the same
run (an 8192^3 bf16 matmul), model FLOPs per token = 6 N + 12 L T C (weights, forward + backward, plus attention's
QK^T and AV; N counts the matmul weights, not the embeddings' lookups, but includes the tied LM head).
  python3 bench/torch_gpu_bench.py --models gpt2-124M,gpt2-350M --B 16 --T 1024 --compile
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_bench import GPT2  # noqa: E402  (the one torch GPT-2 of the benchmarks)

PRESETS = {  # L, heads, C, V, block
    "gpt2-124M": (12, 12, 768, 50257, 1024),
    "gpt2-350M": (24, 16, 1024, 50257, 1024),
    "gpt2-774M": (36, 20, 1280, 50257, 1024),
    "gpt2-1.5B": (48, 25, 1600, 50257, 1024),
    "gpt2-1558M": (48, 25, 1600, 50257, 1024),  # zerotrain's name for it (model.preset)
}


def bf16_peak_tflops(n=8192, iters=20):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def model_flops_per_token(L, nh, C, V, T):
    n_matmul = L * 12 * C * C + V * C  # qkv 3C^2 + proj C^2 + mlp 8C^2 per layer, plus the LM head
    return 6 * n_matmul + 12 * L * T * C


def run(model_name, B, T, steps, warmup, compiled, peak):
    L, nh, C, V, block = PRESETS[model_name]
    torch.manual_seed(1337)
    model = GPT2(L, nh, C, V, block, sdpa=True).cuda()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model) if compiled else model
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        idx = torch.randint(0, V, (B, T + 1), device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(idx[:, :-1], idx[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    timed = times[warmup:]
    tok_s = B * T * len(timed) / sum(timed)
    mfu = tok_s * model_flops_per_token(L, nh, C, V, T) / (peak * 1e12)
    return {"impl": "torch-compile" if compiled else "torch-eager", "torch_version": torch.__version__,
            "device": torch.cuda.get_device_name(), "model": model_name, "B": B, "T": T, "dtype": "bf16",
            "tokens_per_s": tok_s, "ms_per_step": 1e3 * sum(timed) / len(timed), "mfu": mfu,
            "bf16_peak_tflops": peak, "peak_device_bytes": torch.cuda.max_memory_allocated(),
            "last_loss": loss.item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gpt2-124M,gpt2-350M")
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also run each model under torch.compile")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_gpu_bench: no GPU visible to torch " + torch.__version__)
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = bf16_peak_tflops()
    print(json.dumps({"bf16_matmul_peak_tflops": peak, "device": torch.cuda.get_device_name()}), flush=True)
    for name in a.models.split(","):
        for compiled in ([False, True] if a.compile else [False]):
            print(json.dumps(run(name, a.B, a.T, a.steps, a.warmup, compiled, peak)), flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
