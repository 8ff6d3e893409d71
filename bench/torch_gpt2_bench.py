#!/usr/bin/env python3
"""Times the same GPT-2 forward + backward in PyTorch CPU fp32 (for comparison with model_step_bench).
Run with Debian's /usr/bin/python3 (has torch): /usr/bin/python3 bench/torch_gpt2_bench.py [--model gpt2-124M]"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_bench import GPT2, PRESETS  # noqa: E402  (the one torch GPT-2 of the benchmarks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-124M", choices=sorted(PRESETS))
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dims = PRESETS[a.model]
    m = GPT2(*dims)
    idx = torch.randint(0, dims[3], (a.B, a.T))
    tg = torch.randint(0, dims[3], (a.B, a.T))
    m(idx, tg).backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.iters):
        m(idx, tg).backward()
    ms = (time.perf_counter() - t0) / a.iters * 1000
    print(f"torch {a.model} B={a.B} T={a.T} threads={a.threads}: {ms:.1f} ms/step, {a.B * a.T / (ms / 1000):.0f} tokens/s")


if __name__ == "__main__":
    main()
