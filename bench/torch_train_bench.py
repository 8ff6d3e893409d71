#!/usr/bin/env python3
"""PyTorch CPU fp32 training steps of a GPT-2, the reference for bench/train_bench.sh.

One optimizer step = forward + backward + clip_grad_norm_ + AdamW (weight decay on the 2-D weights only), on
micro-batches read in order from an llm.c token shard, as `zerotrain` does with data.shuffle=false. Prints one
JSON line: tokens/s over the timed steps (warmup steps excluded) and the process's peak RSS (ru_maxrss).
Run with Debian's /usr/bin/python3 (it has torch):
  /usr/bin/python3 bench/torch_train_bench.py --model gpt2-124M --shard tokens.bin --B 4 --T 64
"""
import argparse
import json
import math
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"gpt2-tiny": (2, 2, 64, 256, 64), "gpt2-124M": (12, 12, 768, 50257, 1024)}  # L, heads, C, V, block


class Block(nn.Module):
    def __init__(self, C, nh, sdpa=False):
        super().__init__()
        self.nh, self.sdpa = nh, sdpa
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        if self.sdpa:  # PyTorch 2.x (flash attention on GPUs); the explicit form below is the CPU 1.13 reference
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.nh)
            causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)
            y = att.masked_fill(causal, float("-inf")).softmax(-1) @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, L, nh, C, V, block, sdpa=False):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(block, C)
        self.h = nn.ModuleList(Block(C, nh, sdpa) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") or "mlp_proj" in name else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def read_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1, f"{path}: not an llm.c token shard"
    return np.fromfile(path, dtype="<u2", offset=1024, count=int(header[2])).astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-124M", choices=sorted(PRESETS))
    ap.add_argument("--shard", required=True)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    model = GPT2(*PRESETS[a.model])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    tokens = read_shard(a.shard)
    span = a.B * a.T
    b = 0
    times, losses = [], []
    for step in range(a.warmup + a.steps):
        if b * span + span + 1 > len(tokens):
            b = 0
        w = torch.from_numpy(tokens[b * span: b * span + span + 1])
        b += 1
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(w[:-1].view(a.B, a.T), w[1:].view(a.B, a.T))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    timed = times[a.warmup:]
    print(json.dumps({"impl": "torch", "torch_version": torch.__version__, "model": a.model, "B": a.B, "T": a.T,
                      "threads": a.threads, "timed_steps": len(timed),
                      "tokens_per_s": span * len(timed) / sum(timed),
                      "ms_per_step": 1e3 * sum(timed) / len(timed),
                      "first_loss": losses[0], "last_loss": losses[-1],
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
