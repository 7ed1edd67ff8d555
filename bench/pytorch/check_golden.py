#!/usr/bin/python3
"""Checks bench/pytorch/models.py against the golden data.

For every <model>_K<K>_d<d>_L<L>.safetensors in the golden directory: load
the weights, run one forward+backward in float64 and in float32, and compare
logits, loss and every gradient with the stored tensors. Agreement (golden
README): max|ours - golden| / max(max|golden|, 1e-6) <= 1e-4. Also checks
that our V (numpy seed 0) equals the stored embedding.weight.

usage: check_golden.py [GOLDEN_DIR] [-v]     exit status 0 iff all pass
"""
import glob
import json
import os
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

TOL = 1e-4
DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    """{name: numpy array}, plus the __metadata__ dict."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(blob[base + a:base + b], dtype=dt).reshape(info["shape"])
    return out, meta


def rel_err(ours, gold):
    ours = np.asarray(ours, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if ours.shape != gold.shape:
        return float("inf")
    return float(np.abs(ours - gold).max() / max(np.abs(gold).max(), 1e-6))


def check_file(path, verbose):
    t, meta = read_safetensors(path)
    kind = meta["model"]
    K, d, L = int(meta["K"]), int(meta["d"]), int(meta["L"])
    ok = True
    V = models.embedding_table(K, d)
    ev = rel_err(V, t["embedding.weight"])
    if ev > 1e-6:
        print(f"  embedding.weight differs from numpy seed 0 V: {ev:.2e}")
        ok = False
    worst = {}
    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(1)
        m = models.Model(kind, K=K, d=d, L=L, layers=int(meta["layers"]),
                         rope_base=float(meta["rope_base"]), expand=int(meta["expand"]),
                         d_state=int(meta["d_state"]), d_conv=int(meta["d_conv"]))
        m = m.to(dtype)
        missing = models.from_project(m, t)
        if missing:
            print(f"  golden file lacks {missing}")
            ok = False
        extra = [k for k in t if k not in m.state_dict() and not k.startswith("grad.")
                 and k not in ("tokens", "labels", "logits", "loss")]
        if extra:
            print(f"  model lacks golden tensors {extra}")
            ok = False
        tokens = torch.as_tensor(t["tokens"].astype(np.int64))
        labels = torch.as_tensor(t["labels"].astype(np.int64))
        loss, logits = m.loss(tokens, labels)
        loss.backward()
        res = {"logits": rel_err(logits.detach().numpy(), t["logits"]),
               "loss": rel_err(loss.detach().numpy(), t["loss"])}
        trained = dict(m.named_parameters())
        for name in m.state_dict():
            gname = "grad." + name
            if name not in trained:  # frozen: must have no gradient either
                if gname in t:
                    print(f"  golden has a gradient for frozen {name}")
                    ok = False
                continue
            g = trained[name].grad
            if g is None or gname not in t:
                print(f"  no gradient for {name} (ours {g is not None}, golden {gname in t})")
                ok = False
                continue
            res[gname] = rel_err(models.to_project(name, g).numpy(), t[gname])
        tag = "f64" if dtype == torch.float64 else "f32"
        for k, e in res.items():
            if verbose or e > TOL:
                print(f"  {tag} {k:45s} {e:.2e}{'  FAIL' if e > TOL else ''}")
            ok = ok and e <= TOL
        worst[tag] = max(res.items(), key=lambda kv: kv[1])
    summary = ", ".join(f"{tag} worst {k} {e:.1e}" for tag, (k, e) in worst.items())
    print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path)}: {summary}")
    return ok


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    gdir = args[0] if args else "/work/shared/golden"
    files = sorted(glob.glob(os.path.join(gdir, "*.safetensors")))
    if not files:
        print(f"no .safetensors files in {gdir}")
        return 1
    bad = [f for f in files if not check_file(f, verbose)]
    print(f"{len(files) - len(bad)}/{len(files)} golden files agree (tolerance {TOL:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
