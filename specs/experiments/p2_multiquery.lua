-- p2_multiquery.lua — Problem 2 of the study (DESIGN.md 1): multi-query
-- associative recall, M 4, 8 and 16 query tokens (tau 1), for Mamba, the
-- RoPE transformer and the hybrid.
--
-- Learning rates as in Problem 1 (p1_induction.lua says how they were
-- measured): lr 1e-2 for the transformer, 3e-3 for Mamba and the hybrid,
-- one ceiling of 3000 steps for all (at M 4, lr 3e-3, Mamba climbs to
-- ~0.5 by step 2000 and the hybrid to ~0.45 by 1500, then both plateau
-- there until 3000; the RoPE transformer stays at chance for 3000 steps).
-- For longer budgets: --set steps=10000. Measured that way (2026-11-29,
-- 5 min 18 s with -j 2), 3 of the 27 runs reach 0.99 (the transformer at
-- M 4 in one seed by step 5500, Mamba at M 4 in one by 7800, the hybrid
-- at M 16 in one by 8900) and most still climb slowly at step 10000:
-- Mamba 0.75 at M 4, 0.16-0.36 at M 8, ~0.2 at M 16; the hybrid
-- 0.56-0.72, 0.40-0.69, 0.40-0.73; the transformer at M 8 and 16 at
-- chance. Converging budgets here are beyond 10000 steps.
--   recall run specs/experiments/p2_multiquery.lua [-j 2] [--set L=32]
return {
  name = "p2_multiquery",
  title = "Problem 2: multi-query recall (M 4, 8, 16)",
  problem = 2,
  task = {K = 16, L = 64, d = 8, M = {4, 8, 16}, tau = 1},
  train = {optimizer = "adam", lr = 3e-3, batch = 64, steps = 3000,
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
