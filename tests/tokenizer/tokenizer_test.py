"""The tokenizer program against an independent Python GPT-2 BPE (the GPT-2 pattern with Python's re, merges by
rank) on the tiny hand-made vocabulary in tiny_bpe/, plus byte mode, --decode, the val split and shard headers."""
import argparse
import glob
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--build-dir", required=True)
parser.add_argument("--source-dir", required=True)
args = parser.parse_args()
tokenizer = os.path.join(args.build_dir, "tokenizer")
vocab_dir = os.path.join(args.source_dir, "tests", "tokenizer", "tiny_bpe")
encoder_path, merges_path = os.path.join(vocab_dir, "encoder.json"), os.path.join(vocab_dir, "vocab.bpe")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def read_shard(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        tokens = np.frombuffer(f.read(), dtype="<u2")
    check(header[0] == 20240520 and header[1] == 1 and header[2] == len(tokens), f"shard header of {path}")
    return tokens


def read_split(prefix, split):
    paths = sorted(glob.glob(f"{prefix}_{split}_*.bin"))
    return paths, (np.concatenate([read_shard(p) for p in paths]) if paths else np.zeros(0, np.uint16))


# ---- the oracle ----
def bytes_to_unicode():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


PATTERN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?[0-9]+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")
encoder = json.load(open(encoder_path, encoding="utf-8"))
ranks = {tuple(l.split(" ")): i for i, l in enumerate(
    l for l in open(merges_path, encoding="utf-8").read().splitlines() if l and not l.startswith("#version"))}
b2u = bytes_to_unicode()


def bpe(word):
    parts = [b2u[b] for b in word.encode("utf-8")]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        best = min(pairs)[0]
        if best == 1 << 30:
            break
        a, b = next((parts[i], parts[i + 1]) for r, i in pairs if r == best)
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return [encoder[p] for p in parts]


def oracle(texts):
    out = []
    for t in texts:
        out.append(encoder["<|endoftext|>"])
        for w in PATTERN.findall(t):
            out.extend(bpe(w))
    return out


texts = ["hello world's the 12 hello  world\n\nthe  end   \nI'll we've they're I'm he'd it's don't DON'T\n",
         "café naïve 2024 12x hi!!! ... a_b__c\ttab\t\tx   \n\n\n  hello\n world 122\n  ",
         "on  on on\n"]

with tempfile.TemporaryDirectory() as tmp:
    inputs = []
    for i, t in enumerate(texts):
        p = os.path.join(tmp, f"doc{i}.txt")
        with open(p, "w", encoding="utf-8") as f:
            f.write(t)
        inputs.append(p)

    # BPE mode, several train shards.
    prefix = os.path.join(tmp, "bpe")
    subprocess.run([tokenizer, "--bpe", encoder_path, merges_path, "--val-fraction", "0.25", "--shard-tokens", "40",
                    "--out", prefix] + inputs, check=True, capture_output=True)
    expect = oracle(texts)
    val_paths, val = read_split(prefix, "val")
    train_paths, train = read_split(prefix, "train")
    got = list(np.concatenate([val, train]))
    check(got == expect, f"BPE tokens match the oracle ({len(expect)} tokens)")
    if got != expect:
        print("  got   ", got[:60])
        print("  expect", expect[:60])
    check(len(val) == int(len(expect) * 0.25 + 0.5), "val split is the first quarter of the tokens")
    check(len(train_paths) == (len(train) + 39) // 40 and len(train_paths) > 1, "train split in 40-token shards")
    check(len(set(expect)) > 40 and any(t > 255 for t in expect), "merges were exercised")
    res = subprocess.run([tokenizer, "--bpe", encoder_path, merges_path, "--decode", train_paths[0]], check=True,
                         capture_output=True)
    full = "".join("<|endoftext|>" + t for t in texts).encode("utf-8")
    check(full.find(res.stdout) >= 0 and len(res.stdout) > 0, "BPE --decode gives back the text")

    # Byte mode: token = byte; --decode is the identity.
    prefix = os.path.join(tmp, "bytes")
    subprocess.run([tokenizer, "--val-fraction", "0.1", "--out", prefix] + inputs, check=True, capture_output=True)
    raw = b"".join(t.encode("utf-8") for t in texts)
    val_paths, val = read_split(prefix, "val")
    train_paths, train = read_split(prefix, "train")
    check(bytes(np.concatenate([val, train]).astype(np.uint8)) == raw and len(val) == int(len(raw) * 0.1 + 0.5),
          "byte mode tokens are the bytes, val first")
    res = subprocess.run([tokenizer, "--decode", train_paths[0]], check=True, capture_output=True)
    check(res.stdout == raw[len(val):], "byte --decode")

    # Errors: usage is exit 2, a missing input exit 1.
    res = subprocess.run([tokenizer, "--frobnicate"], capture_output=True, text=True)
    check(res.returncode == 2 and "unknown option" in res.stderr, "unknown option: exit 2")
    res = subprocess.run([tokenizer, "--out", prefix, os.path.join(tmp, "missing.txt")], capture_output=True, text=True)
    check(res.returncode == 1 and "missing.txt" in res.stderr, "missing input: exit 1")

sys.exit(1 if failures else 0)
