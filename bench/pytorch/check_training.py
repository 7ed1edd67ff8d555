#!/usr/bin/python3
"""Checks recall's training against PyTorch step for step: same initial
weights, same batches, Adam; compares the parameters after N steps.

usage: check_training.py [--recall build/recall] [--model hybrid] [--steps 100]
                         [--lr 3e-3] [--set k=v ...]

recall trains the model for N steps (`recall train`); its initial weights
come from a 1-step run at lr 1e-30 (Adam's update is then ~1e-30, below
float32's resolution of the weights), its batches from `recall data
--stream train --set step=s`. models.py then trains from those weights on
those batches with torch.optim.Adam. Prints the mean loss of the first
eval_every steps on both sides and the worst relative difference of every
parameter (max |a - b| / max |b|); exits 1 above --tol (default 1e-3:
float32 rounding grows over the steps; measured 2026-11-29, 100 steps at
d 8: 6e-7 to 3e-6 for the five models; mamba d 64, 30 steps: 1e-4). Models: transformer-rope|transformer-learned|transformer-nope|
mamba|hybrid.
"""
import argparse
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import models  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = np.float32 if v["dtype"] == "F32" else np.int32
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"])
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_training.py: {' '.join(cmd)} failed:\n{r.stderr}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recall", default=os.path.join(ROOT, "build", "recall"))
    p.add_argument("--model", default="hybrid")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--set", action="append", default=[], metavar="k=v",
                   help="task options for recall (K, d, L, M, tau, seed)")
    p.add_argument("--tol", type=float, default=1e-3)
    a = p.parse_args()
    kind = models.kind_of(a.model, "check_training.py")
    spec = os.path.join(ROOT, "specs", "models", kind.split("_")[0] + ".lua")
    opts = dict(s.split("=", 1) for s in a.set)
    K, d, L = int(opts.get("K", 16)), int(opts.get("d", 8)), int(opts.get("L", 64))
    sets = [x for s in a.set for x in ("--set", s)]
    if kind.startswith("transformer_"):
        sets += ["--set", "pe=" + kind.split("_")[1]]
    common = [a.recall, "train", spec, *sets, "--set", "sweep_n=0", "--set", "test_size=64"]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run(common + ["--set", "lr=1e-30", "--set", "steps=1", "-o", f"{tmp}/init"])
        every = min(10, a.steps)
        run(common + ["--set", f"lr={a.lr}", "--set", f"steps={a.steps}",
                      "--set", f"eval_every={every}", "--set", "target=1",
                      "--set", f"patience={a.steps + 1}", "-o", f"{tmp}/final"])
        task = [x for k in ("K", "M", "tau", "seed") if k in opts for x in ("--set", f"{k}={opts[k]}")]
        model = models.Model(kind, K=K, d=d, L=L)
        missing = models.from_project(model, read_safetensors(f"{tmp}/init/checkpoint.safetensors"))
        if [m for m in missing if m != "embedding.weight"]:
            raise SystemExit(f"check_training.py: not in recall's checkpoint: {missing}")
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=a.lr)
        losses = []
        for s in range(a.steps):
            bf = f"{tmp}/batch.safetensors"
            run([a.recall, "data", *task, "--length", str(L), "-n", "64",
                 "--stream", "train", "--set", f"step={s}", "-o", bf])
            b = read_safetensors(bf)
            x = torch.tensor(b["tokens"].astype(np.int64))
            y = torch.tensor(b["labels"].astype(np.int64))
            opt.zero_grad(set_to_none=True)
            loss, _ = model.loss(x, y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with open(f"{tmp}/final/train.csv") as f:
            first = next(csv.DictReader(f))
        print(f"{a.model} {' '.join(a.set)} lr {a.lr}: mean training loss of steps 1-{every}: "
              f"recall {float(first['train_loss']):.6f}, PyTorch {np.mean(losses[:every]):.6f}")
        final = read_safetensors(f"{tmp}/final/checkpoint.safetensors")
        worst, name_worst = 0.0, ""
        for name, t in model.state_dict().items():
            if name not in final:
                continue
            ours, theirs = models.to_project(name, t).numpy(), final[name]
            err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-6))
            if err > worst:
                worst, name_worst = err, name
        print(f"after {a.steps} Adam steps: worst parameter difference {worst:.2e} ({name_worst})")
        return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
