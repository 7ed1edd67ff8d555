-- p3_embedding.lua — Problem 3 of the study (DESIGN.md 1): a wide
-- embedding, d 64, for Mamba: M 4, 8 and 16 at tau 1, and M 16 at tau 10.
--
-- ../shared/notes/training.md measured Mamba at d 64, L 64, lr 1e-3: 0.95
-- at step 400 (PyTorch, M 1). With more queries it is slower: measured
-- here at lr 1e-3, M 4 stays at chance until step ~1000 and reaches 0.45
-- at 1500, M 16 stays at chance for 1500 steps; at lr 3e-3 M 4 is still
-- at chance at step 1000. So lr 1e-3 and a ceiling of 1500 steps, which
-- shows where learning starts, not where it ends: a d 64 Mamba step costs
-- ~65 ms (bench/RESULTS.md), and these twelve runs are most of the
-- study's time. The test batch is 500 and the sweep 50 sequences per
-- length. For the note's budget: --set steps=3000 --set sweep_n=1000.
-- Measured at 3000 steps (2026-11-29, -j 2, ~40 ms a step with two runs
-- at once): M 4 reaches 0.99 in all three seeds, at steps 2200, 2400 and
-- 2600 (~100 s a run); M 8 is at 0.08, 0.33 and 0.41 at step 3000 and
-- M 16 at 0.07-0.14: converging there takes well beyond 3000 steps,
-- ~2 min of training per 3000 steps and run. The learning rate matters
-- there: M 8 at step 3000 (seeds 1 and 2) reads 0.25-0.31 at lr 5e-4,
-- 0.33-0.41 at 1e-3 and 0.78-0.79 at 2e-3; at 2e-3, M 4 reaches 0.99
-- in one seed of two by step 2400 (0.73 in the other at 3000, where
-- 1e-3 converged by 2600) and M 16 stays at chance (0.09) in both.
--   recall run specs/experiments/p3_embedding.lua [-j 2] [--set L=32]
return {
  name = "p3_embedding",
  title = "Problem 3: Mamba with a wide embedding (d 64)",
  problem = 3,
  task = {K = 16, L = 64, d = 64},
  train = {optimizer = "adam", lr = 1e-3, batch = 64, steps = 1500,
           eval_every = 100, test_size = 500, target = 0.99, patience = 2},
  eval = {sweep_n = 50},
  seeds = 3,
  models = {
    {label = "mamba", spec = "mamba", M = {4, 8, 16}, tau = 1},
    {label = "mamba", spec = "mamba", M = 16, tau = 10},
  },
}
