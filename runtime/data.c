/* data.c — associative-recall sequences (DESIGN.md section 1), drawn from
 * the counter-based generator so that an example depends only on
 * (seed, step, example). */
#include "runtime.h"

int rt_ar_validate(int K, int M, int tau, int n, ir_error *err) {
  if (K < 2)
    ir_err(err, "AR task: vocabulary size K = %d, need K >= 2 (filler "
           "tokens must differ from the query)", K);
  else if (M < 1 || M > K)
    ir_err(err, "AR task: number of queries M = %d must be in 1..K (K = %d)",
           M, K);
  else if (tau < 1)
    ir_err(err, "AR task: distance tau = %d, need tau >= 1", tau);
  else if ((long long)n < (long long)tau + 2)
    ir_err(err, "AR task: length n = %d is too short for tau = %d (the "
           "shortest sequence is n = tau + 2 = %lld)", n, tau,
           (long long)tau + 2);
  else
    return 0;
  return -1;
}

/* A filler: uniform over [K] \ {q}, drawn as r from K-1 values, q skipped. */
static inline int32_t skip(uint32_t r, int32_t q) {
  return (int32_t)r < q ? (int32_t)r : (int32_t)r + 1;
}

int rt_ar_example(uint64_t seed, uint64_t step, uint32_t example,
                  const rt_ar_task *task, int32_t *tokens, int32_t *label,
                  int32_t *i_out) {
  int K = task->K, tau = task->tau, n = task->n;
  if (rt_ar_validate(K, task->M, tau, n, NULL) < 0) return -1;
  rt_rng g;
  rt_rng_init(&g, seed, step, example);
  int32_t q = (int32_t)rt_rng_below(&g, (uint32_t)task->M);
  int32_t v = (int32_t)rt_rng_below(&g, (uint32_t)K);
  int32_t i = (int32_t)rt_rng_below(&g, (uint32_t)(n - tau - 1));
  /* the fillers, n - 3 draws in position order, made all at once (as
   * uint32 in tokens' room), then moved up past q (at i) and v (at i +
   * tau), last first so that none is overwritten before it is read */
  rt_bound filler = rt_bound_make((uint32_t)(K - 1));
  uint32_t *r = (uint32_t *)tokens;
  rt_rng_below_n(&g, &filler, r, (size_t)n - 3);
  tokens[n - 1] = q;
  for (int p = n - 2; p > i + tau; p--) tokens[p] = skip(r[p - 2], q);
  tokens[i + tau] = v;
  for (int p = i + tau - 1; p > i; p--) tokens[p] = skip(r[p - 1], q);
  tokens[i] = q;
  for (int p = i - 1; p >= 0; p--) tokens[p] = skip(r[p], q);
  if (label) *label = v;
  if (i_out) *i_out = i;
  return 0;
}

int rt_ar_batch(uint64_t seed, uint64_t step, uint32_t first, int count,
                const rt_ar_task *task, int32_t *tokens, int32_t *labels) {
  for (int b = 0; b < count; b++)
    if (rt_ar_example(seed, step, first + (uint32_t)b, task,
                      tokens + (size_t)b * (size_t)task->n,
                      labels ? labels + b : NULL, NULL) < 0)
      return -1;
  return 0;
}
