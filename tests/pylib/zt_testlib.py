"""Helpers shared by the Python tests that drive the zerotrain binary (not a test itself: tests/CMakeLists.txt runs
only *_test.py files)."""
import json
import socket
import struct

import numpy as np


def step_records(out_dir):
    """The per-step records of a run's metrics.jsonl (train.save_dir), in order."""
    with open(f"{out_dir}/metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r.get("type") == "step"]


def free_port():
    """A TCP port free right now on loopback, for --master_port (tests run concurrently)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_safetensors(path):
    """name -> float32 array, for an F32 safetensors file, read with json + numpy only."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", f"{path}: {name} is {meta['dtype']}, expected F32"
        b, e = meta["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(meta["shape"])
    return out
