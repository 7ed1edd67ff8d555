#!/usr/bin/python3
"""PyTorch side of the benchmark: training-step time and length-sweep time.

usage: bench.py --model transformer-rope|transformer-learned|transformer-nope|
                        mamba|hybrid [--d 8] [--K 16] [--L 64] [--batch 64]
                [--threads 1] [--warmup 5] [--steps 30] [--lr 1e-3]
                [--sweep-n 1000] [--sweep-target 1000] [--sweep-batch 0]
                [--no-step] [--no-sweep]

Prints one JSON object per line per measurement (keys in bench/README.md;
cpu_ms / cpu_s are the process CPU time, a check on a busy machine):
  {"impl": "pytorch", "measure": "train_step", ..., "train_step_ms": median}
  {"impl": "pytorch", "measure": "sweep", ..., "sweep_s": seconds}
A training step = fresh AR batch (M 1, tau 1) + forward + backward + Adam
step; its time is the median over --steps steps after --warmup steps. The
sweep runs every length tau+2 .. 3L (3..192 for L 64), --sweep-n sequences
per length, one no_grad forward per length (split into --sweep-batch
sequences if given), argmax accuracy included. With --sweep-n below --sweep-target the
time is scaled linearly to --sweep-target sequences and "extrapolated" is
true in the output.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

TAU, M = 1, 1


def emit(rec):
    print(json.dumps(rec), flush=True)


def time_steps(model, a, gen):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr)
    times, cpu = [], []
    for s in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        x, y = models.ar_batch(gen, a.batch, a.L, a.K, M, TAU)
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(x, y)
        loss.backward()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if s >= a.warmup:
            times.append(dt * 1e3)
            cpu.append(dc * 1e3)
    return times, cpu


def time_sweep(model, a, gen):
    lengths = range(TAU + 2, 3 * a.L + 1)
    chunk = a.sweep_batch if a.sweep_batch > 0 else a.sweep_n
    correct = total = 0
    model.eval()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for n in lengths:
            x, y = models.ar_batch(gen, a.sweep_n, n, a.K, M, TAU)
            for i in range(0, a.sweep_n, chunk):
                logits = model(x[i:i + chunk])
                correct += int((logits.argmax(-1) == y[i:i + chunk]).sum())
                total += logits.shape[0]
    sec, csec = time.perf_counter() - t0, time.process_time() - c0
    model.train()
    return sec, csec, lengths, correct / total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--K", type=int, default=16)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sweep-n", type=int, default=1000)
    p.add_argument("--sweep-target", type=int, default=1000)
    p.add_argument("--sweep-batch", type=int, default=0, help="0: all --sweep-n at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-step", action="store_true")
    p.add_argument("--no-sweep", action="store_true")
    a = p.parse_args()
    kind = models.kind_of(a.model, "bench.py")
    label = kind.replace("_", "-")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    model = models.Model(kind, K=a.K, d=a.d, L=a.L)
    base = {"impl": "pytorch", "torch": torch.__version__, "model": label,
            "K": a.K, "d": a.d, "L": a.L, "batch": a.batch, "threads": a.threads}
    if not a.no_step:
        t, c = time_steps(model, a, gen)
        emit(dict(base, measure="train_step", train_step_ms=round(statistics.median(t), 4),
                  cpu_ms=round(statistics.median(c), 4),
                  min_ms=round(min(t), 4), mean_ms=round(statistics.mean(t), 4),
                  steps=a.steps, warmup=a.warmup))
    if not a.no_sweep and a.sweep_n > 0:
        sec, csec, lengths, acc = time_sweep(model, a, gen)
        scale = a.sweep_target / a.sweep_n
        emit(dict(base, measure="sweep", sweep_s=round(sec * scale, 4),
                  cpu_s=round(csec * scale, 4),
                  sweep_n=a.sweep_target, measured_n=a.sweep_n, measured_s=round(sec, 4),
                  extrapolated=a.sweep_n != a.sweep_target,
                  lengths=f"{lengths.start}..{lengths.stop - 1}", accuracy=round(acc, 4)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
