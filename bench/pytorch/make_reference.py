#!/usr/bin/python3
"""Writes reference files in the golden format (../shared/golden/README.md)
from bench/pytorch/models.py, at sizes the golden files do not cover.

The golden files are at L 16 = K 16. Above K, recall's kernels take another
path (ir/sink.c: the first layer's row-wise work on the embedding's K rows),
which those files never reach; tests/test_golden.c also runs these. models.py
is itself checked against the golden files (check_golden.py), so it is a
second reference, not an independent one.

Each file: one forward+backward in float64 of every model, weights moved away
from their initial values (so that every parameter matters), uniform random
tokens and labels; stored as float32 (tokens, labels i32).

usage: make_reference.py OUT_DIR [--K 16] [--d 8] [--L 64] [--B 4] [--seed 7]
                         [--models mamba,hybrid,...]
tests/data/reference holds the defaults' files and mamba's at --d 64 --L 32
--B 2 (Problem 3's embedding; E 128, the kernels' widest vector paths).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors, meta):
    """tensors: {name: numpy array (float32 or int32)}, in order."""
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        a = np.array(a, order="C")  # (ascontiguousarray would make a scalar [1])
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def reference(kind, K, d, L, B, seed):
    torch.manual_seed(seed)
    m = models.Model(kind, K=K, d=d, L=L).to(torch.float64)
    with torch.no_grad():  # away from the initial values: norms != 1, biases != 0, D != 1
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, K, (B, L), generator=gen)
    labels = torch.randint(0, K, (B,), generator=gen)
    loss, logits = m.loss(tokens, labels)
    loss.backward()
    out = {}
    trained = dict(m.named_parameters())
    for name, t in m.state_dict().items():
        out[name] = models.to_project(name, t).numpy().astype(np.float32)
    for name, p in trained.items():
        out["grad." + name] = models.to_project(name, p.grad).numpy().astype(np.float32)
    out["tokens"] = tokens.numpy().astype(np.int32)
    out["labels"] = labels.numpy().astype(np.int32)
    out["logits"] = logits.detach().numpy().astype(np.float32)
    out["loss"] = np.array(loss.item(), dtype=np.float32)
    meta = {"model": kind, "K": str(K), "d": str(d), "L": str(L), "B": str(B),
            "layers": "2", "d_state": "16", "expand": "2", "d_conv": "4",
            "dt_rank": str(-(-d // 16)), "rope_base": "10000", "pe_rows": str(3 * L),
            "source": "bench/pytorch/models.py (checked against ../shared/golden), "
                      f"float64, make_reference.py seed {seed}"}
    return out, meta


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--models", default=",".join(models.MODELS))
    a = ap.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    for kind in a.models.split(","):
        t, meta = reference(kind, a.K, a.d, a.L, a.B, a.seed)
        path = os.path.join(a.out_dir, f"{kind}_K{a.K}_d{a.d}_L{a.L}.safetensors")
        write_safetensors(path, t, meta)
        print(f"{path}: loss {float(t['loss']):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
