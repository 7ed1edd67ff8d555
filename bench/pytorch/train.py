#!/usr/bin/python3
"""Trains one model of bench/pytorch/models.py on AR, as `recall train` does.

usage: train.py --model transformer-rope|transformer-learned|transformer-nope|
                        mamba|hybrid [--d 8] [--K 16] [--L 64] [--M 1]
                [--tau 1] [--lr 1e-3] [--steps 3000] [--batch 64]
                [--eval-every 100] [--test-size 1000] [--seed 0]

An independent check of recall's convergence: same models, initialisation,
data rules, Adam, batch and fixed test batch size, but PyTorch's own RNG
(so seed s here and seed s in recall draw different data and weights;
compare the spread over several seeds, not one run). Prints CSV like
recall's train.csv: step,train_loss,test_loss,test_acc,elapsed_s.
"""
import argparse
import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--K", type=int, default=16)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--M", type=int, default=1)
    p.add_argument("--tau", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    kind = models.kind_of(a.model, "train.py")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    model = models.Model(kind, K=a.K, d=a.d, L=a.L)
    test_x, test_y = models.ar_batch(gen, a.test_size, a.L, a.K, a.M, a.tau)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr)
    print("step,train_loss,test_loss,test_acc,elapsed_s", flush=True)
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        x, y = models.ar_batch(gen, a.batch, a.L, a.K, a.M, a.tau)
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(x, y)
        loss.backward()
        opt.step()
        if step % a.eval_every == 0:
            with torch.no_grad():
                tl, logits = model.loss(test_x, test_y)
                acc = (logits.argmax(-1) == test_y).float().mean().item()
            print(f"{step},{loss.item():.6f},{tl.item():.6f},{acc:.4f},"
                  f"{time.perf_counter() - t0:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
