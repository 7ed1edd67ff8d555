-- p2_multiquery.lua — Problem 2 of the study (DESIGN.md 1): multi-query
-- associative recall, M 4, 8 and 16 query tokens (tau 1), for Mamba, the
-- RoPE transformer and the hybrid.
--
-- Learning rates as in Problem 1 (../shared/notes/training.md): transformers
-- at d 8, L 64 need lr 1e-2 and thousands of steps, Mamba and the hybrid
-- train with lr 1e-3 (the note's 0.95 at step ~2000 is for M 1). Ceilings
-- are cut for the ten-minute study as in p1_induction.lua: 3000 steps for
-- the transformer, 2000 for Mamba and the hybrid (--set steps=6000 for
-- longer runs).
--   recall run specs/experiments/p2_multiquery.lua [-j 2] [--set L=32]
return {
  name = "p2_multiquery",
  title = "Problem 2: multi-query recall (M 4, 8, 16)",
  problem = 2,
  task = {K = 16, L = 64, d = 8, M = {4, 8, 16}, tau = 1},
  train = {optimizer = "adam", lr = 1e-3, batch = 64, steps = 2000,
           eval_every = 100, test_size = 1000, target = 0.99, patience = 2},
  eval = {sweep_n = 100},
  seeds = 3,
  models = {
    {label = "mamba", spec = "mamba"},
    {label = "transformer-rope", spec = "transformer", set = {pe = "rope"},
     lr = 1e-2, steps = 3000},
    {label = "hybrid", spec = "hybrid"},
  },
}
