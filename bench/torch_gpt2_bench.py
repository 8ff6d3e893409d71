#!/usr/bin/env python3
"""Times the same GPT-2 forward + backward in PyTorch CPU fp32 (for comparison with model_step_bench).
Run with Debian's /usr/bin/python3 (has torch): /usr/bin/python3 bench/torch_gpt2_bench.py [--model gpt2-124M]"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, nh):
        super().__init__()
        self.nh = nh
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.nh)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, L, nh, C, V, block):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(block, C)
        self.h = nn.ModuleList(Block(C, nh) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-124M")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dims = {"gpt2-124M": (12, 12, 768, 50257, 1024), "gpt2-tiny": (2, 2, 64, 256, 64)}[a.model]
    m = GPT2(*dims)
    idx = torch.randint(0, dims[3], (a.B, a.T))
    tg = torch.randint(0, dims[3], (a.B, a.T))
    for _ in range(1):
        m.zero_grad(set_to_none=False)
        m(idx, tg).backward()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        loss = m(idx, tg)
        loss.backward()
    ms = (time.perf_counter() - t0) / a.iters * 1000
    print(f"torch {a.model} B={a.B} T={a.T} threads={a.threads}: {ms:.1f} ms/step, {a.B * a.T / (ms / 1000):.0f} tokens/s")


if __name__ == "__main__":
    main()
