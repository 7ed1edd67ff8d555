-- p3_embedding.lua — Problem 3 of the study (DESIGN.md 1): a wide
-- embedding, d 64, for Mamba: M 4, 8 and 16 at tau 1, and M 16 at tau 10.
--
-- ../shared/notes/training.md measured Mamba at d 64, L 64, lr 1e-3: 0.95
-- at step 400 (PyTorch, M 1), so lr 1e-3. A d 64 Mamba step costs ~90 ms
-- here (12 times a d 8 step), so for the ten-minute study the ceiling is
-- 600 steps, the test batch 500 and the sweep 50 sequences per length
-- (--set steps=3000 --set sweep_n=1000 for the note's budget; M 16 did not
-- learn in 1500 steps in our measurement).
--   recall run specs/experiments/p3_embedding.lua [-j 2] [--set L=32]
return {
  name = "p3_embedding",
  title = "Problem 3: Mamba with a wide embedding (d 64)",
  problem = 3,
  task = {K = 16, L = 64, d = 64},
  train = {optimizer = "adam", lr = 1e-3, batch = 64, steps = 600,
           eval_every = 100, test_size = 500, target = 0.99, patience = 2},
  eval = {sweep_n = 50},
  seeds = 3,
  models = {
    {label = "mamba", spec = "mamba", M = {4, 8, 16}, tau = 1},
    {label = "mamba", spec = "mamba", M = 16, tau = 10},
  },
}
