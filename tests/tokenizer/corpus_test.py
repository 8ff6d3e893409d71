"""tools/make_embedded_corpus.sh on a small fake fortunes folder: .dat/.u8 files and subfolders are skipped, '%'
separators become blank lines, and the val/train shards hold the bytes (val ~5% first)."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--build-dir", required=True)
parser.add_argument("--source-dir", required=True)
args = parser.parse_args()
script = os.path.join(args.source_dir, "tools", "make_embedded_corpus.sh")
tokenizer = os.path.join(args.build_dir, "tokenizer")


def tokens(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        t = np.frombuffer(f.read(), dtype="<u2")
    assert header[0] == 20240520 and header[2] == len(t)
    return bytes(t.astype(np.uint8))


with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "fortunes")
    os.makedirs(os.path.join(src, "off"))
    with open(os.path.join(src, "b_fortunes"), "w") as f:
        f.write("Second file.\n%\n" * 40)
    with open(os.path.join(src, "a_fortunes"), "w") as f:
        f.write("A penny saved is a penny earned.\n%\nLook before you leap.\n%\n" * 30)
    for skipped in ("a_fortunes.dat", "a_fortunes.u8", os.path.join("off", "rude")):
        with open(os.path.join(src, skipped), "w") as f:
            f.write("SKIPPED\n")
    out = os.path.join(tmp, "out")
    env = dict(os.environ, FORTUNE_DIR=src, TOKENIZER=tokenizer)
    res = subprocess.run(["bash", script, out], env=env, capture_output=True, text=True)
    print(res.stdout, res.stderr)
    text = tokens(os.path.join(out, "fortunes_val_000000.bin")) + tokens(os.path.join(out, "fortunes_train_000000.bin"))
    expect = ("A penny saved is a penny earned.\n\nLook before you leap.\n\n" * 30 + "Second file.\n\n" * 40).encode()
    ok = res.returncode == 0 and text == expect
    val = len(tokens(os.path.join(out, "fortunes_val_000000.bin")))
    ok = ok and val == int(len(expect) * 0.05 + 0.5)
    res2 = subprocess.run(["bash", script, out], env=dict(os.environ, FORTUNE_DIR=src, TOKENIZER=""),
                          capture_output=True, text=True)
    ok = ok and res2.returncode == 2
    print("ok" if ok else "FAIL", "corpus from fake fortunes")
    sys.exit(0 if ok else 1)
