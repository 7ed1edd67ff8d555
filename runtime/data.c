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
  rt_bound filler = rt_bound_make((uint32_t)(K - 1));
  for (int p = 0; p < n; p++) {
    if (p == i || p == n - 1) {
      tokens[p] = q;
    } else if (p == i + tau) {
      tokens[p] = v;
    } else { /* uniform over [K] \ {q}: draw from K-1 values, skip q */
      int32_t r = (int32_t)rt_rng_below_by(&g, &filler);
      tokens[p] = r < q ? r : r + 1;
    }
  }
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
