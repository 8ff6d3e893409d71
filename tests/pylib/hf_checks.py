"""What Hugging Face transformers' GPT2LMHeadModel.from_pretrained needs of a model directory, checked with json +
numpy only (transformers is not installed here). Not a test itself: tests call check_hf_gpt2_dir().

The expected state dict follows GPT2LMHeadModel's module tree: transformer.{wte, wpe} (nn.Embedding: [vocab, C],
[n_positions, C]); transformer.h.<l>.{ln_1, ln_2} (nn.LayerNorm: weight, bias [C]); attn.c_attn, attn.c_proj,
mlp.c_fc, mlp.c_proj (transformers' Conv1D, whose weight is [in_features, out_features], the transpose of
nn.Linear's: forward is x @ weight + bias); transformer.ln_f; lm_head (nn.Linear(C, vocab, bias=False)), tied to
transformer.wte.weight, so save_pretrained leaves it out and from_pretrained ties it back. The attention's causal
mask buffers (attn.bias, attn.masked_bias) are not persistent in current transformers and must not be required.
"""
import json
import os
import struct

import numpy as np

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1}


def expected_state_dict(n_layer, n_head, n_embd, vocab_size, n_positions):
    """name -> shape of GPT2LMHeadModel's persistent parameters, lm_head.weight excluded (tied)."""
    C = n_embd
    shapes = {"transformer.wte.weight": [vocab_size, C], "transformer.wpe.weight": [n_positions, C]}
    for l in range(n_layer):
        h = f"transformer.h.{l}."
        shapes.update({
            h + "ln_1.weight": [C], h + "ln_1.bias": [C],
            h + "attn.c_attn.weight": [C, 3 * C], h + "attn.c_attn.bias": [3 * C],
            h + "attn.c_proj.weight": [C, C], h + "attn.c_proj.bias": [C],
            h + "ln_2.weight": [C], h + "ln_2.bias": [C],
            h + "mlp.c_fc.weight": [C, 4 * C], h + "mlp.c_fc.bias": [4 * C],
            h + "mlp.c_proj.weight": [4 * C, C], h + "mlp.c_proj.bias": [C],
        })
    shapes["transformer.ln_f.weight"] = [C]
    shapes["transformer.ln_f.bias"] = [C]
    return shapes


def read_header(path, problems):
    """The safetensors header, checked against the format: 8-byte little-endian length, a JSON object, tensors'
    data_offsets tiling the data section exactly (no gaps, no overlaps), the file ending where the data ends."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
    if 8 + n > size:
        problems.append(f"{path}: header length {n} runs past the file's {size} bytes")
        return {}
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as e:
        problems.append(f"{path}: the header is not JSON: {e}")
        return {}
    if (8 + n) % 8 != 0:
        problems.append(f"{path}: the data section starts at byte {8 + n}, not 8-byte aligned")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != "pt":
        problems.append(f"{path}: __metadata__ must hold format 'pt' (transformers refuses others): {meta}")
    spans = []
    for name, t in header.items():
        if t.get("dtype") not in DTYPE_SIZES:
            problems.append(f"{path}: {name}: unknown dtype {t.get('dtype')}")
            continue
        b, e = t["data_offsets"]
        want = int(np.prod(t["shape"], dtype=np.int64)) * DTYPE_SIZES[t["dtype"]]
        if e - b != want:
            problems.append(f"{path}: {name}: data_offsets span {e - b} bytes, shape x dtype needs {want}")
        spans.append((b, e, name))
    spans.sort()
    at = 0
    for b, e, name in spans:
        if b != at:
            problems.append(f"{path}: {name} starts at {b}, the previous tensor ends at {at} (gap or overlap)")
        at = e
    if 8 + n + at != size:
        problems.append(f"{path}: the data section ends at {8 + n + at}, the file at {size}")
    return header


def check_hf_gpt2_dir(path, model, dtype="F32"):
    """Problems (a list of strings; empty when loadable) of a merged model directory for GPT2LMHeadModel.
    model: zerotrain's model dims (n_layer, n_head, n_embd, vocab_size, block_size)."""
    problems = []
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        problems.append(f"{path}: no config.json")
    else:
        cfg = json.load(open(cfg_path))
        want = {"model_type": "gpt2", "n_layer": model["n_layer"], "n_head": model["n_head"],
                "n_embd": model["n_embd"], "vocab_size": model["vocab_size"], "n_positions": model["block_size"],
                "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}
        for k, v in want.items():
            if cfg.get(k) != v:
                problems.append(f"config.json: {k} is {cfg.get(k)!r}, expected {v!r}")
        if "GPT2LMHeadModel" not in cfg.get("architectures", []):
            problems.append(f"config.json: architectures {cfg.get('architectures')} lacks GPT2LMHeadModel")

    index_path = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    headers = {}  # file -> header
    if os.path.exists(index_path):
        index = json.load(open(index_path))
        weight_map = index.get("weight_map", {})
        for f in sorted(set(weight_map.values())):
            if not os.path.exists(os.path.join(path, f)):
                problems.append(f"index: {f} is missing")
            else:
                headers[f] = read_header(os.path.join(path, f), problems)
        for name, f in weight_map.items():
            if f in headers and name not in headers[f]:
                problems.append(f"index: {name} is mapped to {f}, which does not hold it")
        for f, h in headers.items():
            for name in h:
                if weight_map.get(name) != f:
                    problems.append(f"{f} holds {name}, the index maps it to {weight_map.get(name)}")
        total = sum(int(np.prod(t["shape"], dtype=np.int64)) * DTYPE_SIZES[t["dtype"]]
                    for h in headers.values() for t in h.values())
        if index.get("metadata", {}).get("total_size") != total:
            problems.append(f"index: metadata.total_size {index.get('metadata')} is not the tensors' {total} bytes")
    elif os.path.exists(single):
        headers["model.safetensors"] = read_header(single, problems)
    else:
        problems.append(f"{path}: neither model.safetensors nor model.safetensors.index.json")

    tensors = {}
    for f, h in headers.items():
        for name, t in h.items():
            if name in tensors:
                problems.append(f"{name} is written twice ({f})")
            tensors[name] = t
    want = expected_state_dict(model["n_layer"], model["n_head"], model["n_embd"], model["vocab_size"],
                               model["block_size"])
    if "lm_head.weight" in tensors:
        problems.append("lm_head.weight is written: it is tied to transformer.wte.weight and must appear once")
    for name in sorted(set(want) - set(tensors)):
        problems.append(f"{name} is missing")
    for name in sorted(set(tensors) - set(want) - {"lm_head.weight"}):
        problems.append(f"{name} is not a GPT2LMHeadModel parameter")
    for name in sorted(set(want) & set(tensors)):
        t = tensors[name]
        if t["shape"] != want[name]:
            problems.append(f"{name}: shape {t['shape']}, GPT2LMHeadModel expects {want[name]}")
        if t["dtype"] != dtype:
            problems.append(f"{name}: dtype {t['dtype']}, expected {dtype}")
    return problems
