-- valgrind_run.lua — the tiny experiment `make check-valgrind` runs under
-- valgrind (with --backend interp): two runs of the hybrid, so the worker
-- pool, results.csv, convergence.csv and the report all run once.
return {
  name = "valgrind", title = "valgrind: a tiny experiment", problem = 9,
  task = {K = 8, d = 8, L = 8, M = 1, tau = 1},
  train = {lr = 1e-3, steps = 20, batch = 8, eval_every = 10, test_size = 16},
  eval = {n = 4},
  seeds = 2,
  models = {{label = "hybrid", spec = "hybrid"}},
}
