"""Checkpoints that never lose a run, through the real binary:
- a resumed run's per-step losses are bit-identical to an uninterrupted one (same world size, fp32);
- a checkpoint saved at world size 2 / stage 3 resumes at world size 3 / stage 2 and at world size 1 / stage 0,
  and the next step's loss matches the original run's within 1e-6 relative;
- a truncated, corrupted or missing shard, or another model shape, gives an error naming the file (or the shape)
  and changes nothing on disk;
- a manifest whose checksum does not match a shard is refused, naming the shard;
- a rank SIGKILLed during a save (halfway through its shard, after writing it, before the manifest, before the
  rename, before `latest`) leaves `latest` on a loadable checkpoint; keep_last prunes old tags.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from zt_testlib import free_port, step_records  # noqa: E402

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def base_config(save_dir, stage, world, steps, save_interval=3, model=None):
    return {
        "train_batch_size": 12,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.1}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": 3e-3, "warmup_num_steps": 4,
                                                     "warmup_type": "linear"}},
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 100},
        "model": model or {"n_layer": 2, "n_head": 3, "n_embd": 48, "vocab_size": 256, "block_size": 32},
        "data": {"seq_len": 16},
        "train": {"max_steps": steps, "seed": 11, "save_dir": save_dir, "save_interval": save_interval,
                  "keep_last": 3},
        "world_size": world,
        "steps_per_print": 100,
    }


def run(build, cfg, env_extra=None, expect_ok=True):
    os.makedirs(cfg["train"]["save_dir"], exist_ok=True)
    path = os.path.join(cfg["train"]["save_dir"], "..", f"cfg_{abs(hash(json.dumps(cfg, sort_keys=True)))}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run([os.path.join(build, "zerotrain"), "--config", path, "--nproc_per_node", str(cfg["world_size"]),
                        "--master_port", str(free_port())], capture_output=True, text=True, env=env, timeout=120)
    if expect_ok and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {p.stderr[-2000:]}")
    return p


def losses(save_dir):
    return {r["step"]: r["loss"] for r in step_records(save_dir)}


def tree_digest(d):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(d)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            h.update(p.encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    b = ap.parse_args().build_dir
    with tempfile.TemporaryDirectory() as tmp:
        # The uninterrupted run: world 2, stage 3, 6 steps, checkpoints at 3 and 6.
        a = os.path.join(tmp, "a")
        run(b, base_config(a, 3, 2, 6))
        la = losses(a)
        check(sorted(os.listdir(a)) == ["global_step3", "global_step6", "latest", "metrics.jsonl",
                                        "model.safetensors"], f"save dir holds the tags and latest: {os.listdir(a)}")
        check(open(os.path.join(a, "latest")).read().strip() == "global_step6", "latest names the newest tag")

        # Bit-identical resume at the same world size.
        r = os.path.join(tmp, "resume_same")
        os.makedirs(r)
        shutil.copytree(os.path.join(a, "global_step3"), os.path.join(r, "global_step3"))
        cfg = base_config(r, 3, 2, 6)
        cfg["train"]["resume"] = "global_step3"
        run(b, cfg)
        lr = losses(r)
        check([lr[s] for s in (4, 5, 6)] == [la[s] for s in (4, 5, 6)],
              f"resume at world 2 stage 3 is bit-identical: {[lr.get(s) for s in (4, 5, 6)]} vs "
              f"{[la[s] for s in (4, 5, 6)]}")

        # Other world sizes and stages, from the same checkpoint.
        for stage, world in ((2, 3), (0, 1), (1, 4)):
            r = os.path.join(tmp, f"resume_s{stage}_w{world}")
            os.makedirs(r)
            shutil.copytree(os.path.join(a, "global_step3"), os.path.join(r, "global_step3"))
            cfg = base_config(r, stage, world, 4)
            cfg["train"]["resume"] = os.path.join(r, "global_step3")
            run(b, cfg)
            l4 = losses(r)[4]
            rel = abs(l4 - la[4]) / abs(la[4])
            check(rel <= 1e-6, f"resume at world {world} stage {stage}: step 4 loss {l4} vs {la[4]} (rel {rel:.1e})")

        # Corruptions: each must fail naming the culprit and leave the directory untouched.
        def corrupt_case(name, mutate, expect_text):
            d = os.path.join(tmp, "corrupt_" + name)
            shutil.copytree(a, d)
            mutate(os.path.join(d, "global_step6"))
            before = tree_digest(d)
            cfg = base_config(d, 3, 2, 8)
            cfg["train"]["resume"] = "latest"
            p = run(b, cfg, expect_ok=False)
            msg = p.stdout + p.stderr
            check(p.returncode != 0 and expect_text in msg,
                  f"{name}: exit {p.returncode}, message names '{expect_text}': {msg.strip().splitlines()[-1:]}")
            check(tree_digest(d) == before, f"{name}: nothing on disk changed")

        def truncate(tag):
            f = os.path.join(tag, "rank_00001.safetensors")
            os.truncate(f, os.path.getsize(f) - 100)

        def flip(tag):
            f = os.path.join(tag, "rank_00000.safetensors")
            with open(f, "r+b") as fh:
                fh.seek(os.path.getsize(f) - 50)
                byte = fh.read(1)
                fh.seek(-1, 1)
                fh.write(bytes([byte[0] ^ 0x40]))

        corrupt_case("truncated", truncate, "rank_00001.safetensors")
        corrupt_case("flipped", flip, "rank_00000.safetensors")
        corrupt_case("missing", lambda t: os.remove(os.path.join(t, "rank_00001.safetensors")),
                     "rank_00001.safetensors")

        def manifest_crc(tag):  # the file is whole, the manifest's checksum for it is not its own
            m = json.load(open(os.path.join(tag, "manifest.json")))
            m["files"][1]["crc32"] ^= 0x100
            json.dump(m, open(os.path.join(tag, "manifest.json"), "w"))

        corrupt_case("checksum_mismatch", manifest_crc, "rank_00001.safetensors")
        d = os.path.join(tmp, "othermodel")
        shutil.copytree(a, d)
        before = tree_digest(d)
        cfg = base_config(d, 3, 2, 8, model={"n_layer": 3, "n_head": 3, "n_embd": 48, "vocab_size": 256,
                                             "block_size": 32})
        cfg["train"]["resume"] = "latest"
        p = run(b, cfg, expect_ok=False)
        check(p.returncode != 0 and "another model shape" in p.stderr + p.stdout, "another model shape is refused")
        check(tree_digest(d) == before, "another model shape: nothing on disk changed")

        # SIGKILL of a rank during a save, at several moments.
        for who, point in ((1, "mid_shard"), (1, "after_shard"), (0, "before_manifest"), (0, "before_rename"),
                           (0, "before_latest")):
            d = os.path.join(tmp, "kill_" + point)
            run(b, base_config(d, 2, 2, 2, save_interval=2))
            cfg = base_config(d, 2, 2, 4, save_interval=2)
            cfg["train"]["resume"] = "latest"
            p = run(b, cfg, env_extra={"ZT_INJECT_SAVE_CRASH": f"{who}:{point}"}, expect_ok=False)
            check(p.returncode != 0, f"kill {point}: the job fails (exit {p.returncode})")
            check(open(os.path.join(d, "latest")).read().strip() == "global_step2",
                  f"kill {point}: latest still names global_step2")
            cfg = base_config(d, 2, 2, 4, save_interval=2)
            cfg["train"]["resume"] = "latest"
            p = run(b, cfg, expect_ok=False)
            check(p.returncode == 0 and open(os.path.join(d, "latest")).read().strip() == "global_step4",
                  f"kill {point}: the run resumes from latest and completes ({p.stderr.strip().splitlines()[-1:]})")
            check(not any(n.startswith(".tmp_") or n.startswith(".old_") for n in os.listdir(d)),
                  f"kill {point}: leftovers of the killed save are cleaned: {os.listdir(d)}")

        # keep_last
        d = os.path.join(tmp, "keep")
        cfg = base_config(d, 1, 1, 8, save_interval=2)
        cfg["train"]["keep_last"] = 2
        run(b, cfg)
        check(sorted(n for n in os.listdir(d) if n.startswith("global_step")) == ["global_step6", "global_step8"],
              f"keep_last 2 keeps the two newest: {sorted(os.listdir(d))}")
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
