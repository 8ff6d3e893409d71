"""float -> bf16 / fp16 against torch's .to(torch.bfloat16) / .to(torch.float16), bit for bit."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--build-dir", required=True)
parser.add_argument("--source-dir", required=True)
args = parser.parse_args()
probe = os.path.join(args.build_dir, "tests", "half_probe")

rng = np.random.default_rng(2024)
parts = [
    rng.integers(0, 2**32, 300000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # every exponent
    (rng.standard_normal(100000) * np.exp2(rng.integers(-30, 20, 100000))).astype(np.float32),  # fp16's range
    np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.996, 65520, -65520, 2**-24, 2**-25, 2**-26, 1e-45, 3.4e38],
             dtype=np.float32),
]
x = np.concatenate(parts)
nan = np.isnan(x)

with tempfile.TemporaryDirectory() as tmp:
    inp, ob, oh = (os.path.join(tmp, n) for n in ("x.bin", "b.bin", "h.bin"))
    x.tofile(inp)
    subprocess.run([probe, inp, ob, oh], check=True)
    ours_b = np.fromfile(ob, dtype=np.uint16)
    ours_h = np.fromfile(oh, dtype=np.uint16)

t = torch.from_numpy(x)
torch_b = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
torch_h = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)

failures = 0
for name, ours, ref, exp_mask, mant_mask in (("bf16", ours_b, torch_b, 0x7F80, 0x007F),
                                              ("fp16", ours_h, torch_h, 0x7C00, 0x03FF)):
    mismatch = (ours != ref) & ~nan
    ours_nan = ((ours & exp_mask) == exp_mask) & ((ours & mant_mask) != 0)
    nan_ok = bool(np.all(ours_nan[nan]))
    print(f"{name}: {len(x) - nan.sum()} finite/inf values, {mismatch.sum()} differ from torch; "
          f"{nan.sum()} NaNs stay NaN: {nan_ok}")
    if mismatch.any():
        i = np.flatnonzero(mismatch)[0]
        print(f"  first: x={x[i]!r} bits={x.view(np.uint32)[i]:#010x} ours={ours[i]:#06x} torch={ref[i]:#06x}")
    failures += int(mismatch.any()) + int(not nan_ok)

sys.exit(1 if failures else 0)
