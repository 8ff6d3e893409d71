"""safetensors interop with an independent numpy reader/writer (no safetensors package): C++ writes, Python reads;
Python writes, C++ reads."""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--build-dir", required=True)
parser.add_argument("--source-dir", required=True)
args = parser.parse_args()
probe = os.path.join(args.build_dir, "tests", "st_probe")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    # Round to nearest even on the dropped 16 bits (finite values only here).
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "F32":
            v = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "F16":
            v = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        else:
            v = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        out[name] = (e["dtype"], e["shape"], v.reshape(e["shape"]))
    return header, n, out


with tempfile.TemporaryDirectory() as tmp:
    # C++ writes, numpy reads.
    path = os.path.join(tmp, "cpp.safetensors")
    subprocess.run([probe, "write", path], check=True)
    header, n, tensors = read_safetensors(path)
    check(n % 8 == 0, "header padded to 8 bytes")
    check(header.get("__metadata__") == {"writer": "st_probe"}, "metadata")
    ref = lambda k: (np.arange(k, dtype=np.float32) * np.float32(0.37) - np.float32(3.1)).astype(np.float32)
    dt, shape, v = tensors["alpha"]
    check(dt == "F32" and shape == [2, 3] and np.array_equal(v.ravel(), ref(6)), "alpha F32 values")
    dt, shape, v = tensors["beta"]
    check(dt == "BF16" and shape == [10] and np.array_equal(v, bf16_bits_to_f32(f32_to_bf16_bits(ref(10)))),
          "beta BF16 values (round to nearest even)")
    dt, shape, v = tensors["gamma"]
    check(dt == "F16" and shape == [3, 1] and np.array_equal(v.ravel(), ref(3).astype(np.float16).astype(np.float32)),
          "gamma F16 values")
    offsets = sorted(e["data_offsets"] for k, e in header.items() if k != "__metadata__")
    check(offsets[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offsets, offsets[1:])), "contiguous data")

    # numpy writes (unsorted data order, metadata, unaligned data start), C++ reads.
    rng = np.random.default_rng(3)
    w32 = rng.standard_normal((4, 5)).astype(np.float32)
    w16 = rng.standard_normal(7).astype(np.float16)
    wbf = f32_to_bf16_bits(rng.standard_normal(9).astype(np.float32))
    blobs = [("zeta", "F32", [4, 5], w32.tobytes()), ("eta", "F16", [7], w16.tobytes()),
             ("theta", "BF16", [9], wbf.tobytes())]
    head, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, raw in blobs:
        head[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    text = json.dumps(head).encode() + b" "  # odd length: the data section is not 8-byte aligned
    py_path = os.path.join(tmp, "py.safetensors")
    with open(py_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(r for _, _, _, r in blobs))
    res = subprocess.run([probe, "dump", py_path], check=True, capture_output=True, text=True)
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    got = {l["name"]: l for l in lines if "name" in l}
    check(np.array_equal(np.array(got["zeta"]["values"], dtype=np.float32), w32.ravel())
          and got["zeta"]["shape"] == [4, 5], "C++ reads F32")
    check(np.array_equal(np.array(got["eta"]["values"], dtype=np.float32), w16.astype(np.float32)), "C++ reads F16")
    check(np.array_equal(np.array(got["theta"]["values"], dtype=np.float32), bf16_bits_to_f32(wbf)), "C++ reads BF16")
    check({"metadata": "format", "value": "pt"} in lines, "C++ reads metadata")

    # A corrupt file written by Python: the error names the file and the tensor.
    bad = dict(head)
    bad["eta"] = {"dtype": "F16", "shape": [7], "data_offsets": [80, 80 + 14 + 100]}
    text = json.dumps(bad).encode()
    bad_path = os.path.join(tmp, "bad.safetensors")
    with open(bad_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(r for _, _, _, r in blobs))
    res = subprocess.run([probe, "dump", bad_path], capture_output=True, text=True)
    check(res.returncode == 1 and "bad.safetensors" in res.stderr and "'eta'" in res.stderr,
          "corrupt offsets error names file and tensor: " + res.stderr.strip())

sys.exit(1 if failures else 0)
