/* test_data.c — AR sequences: validation messages, the structure of every
 * sequence over many (K, M, tau, n), determinism per key, and chi-square
 * uniformity of q, v, i and the filler tokens. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Chi-square critical value at about z = 7 standard deviations (p near
 * 1e-12, Wilson-Hilferty): with a fixed seed a correct sampler cannot
 * plausibly exceed it, a biased one does by far. */
static double chi2_crit(int df) {
  double k = df, h = 2.0 / (9.0 * k);
  return k * pow(1.0 - h + 7.0 * sqrt(h), 3);
}

static void check_uniform(const long *cnt, int cells, const char *what) {
  long total = 0;
  for (int i = 0; i < cells; i++) total += cnt[i];
  double e = (double)total / cells, x = 0;
  for (int i = 0; i < cells; i++) {
    if (cnt[i] == 0) fail_msg("%s: value %d never drawn", what, i);
    x += (cnt[i] - e) * (cnt[i] - e) / e;
  }
  if (x > chi2_crit(cells - 1))
    fail_msg("%s: chi-square %.1f over %d cells (limit %.1f)", what, x, cells, chi2_crit(cells - 1));
}

static void validate_messages(void **s) {
  (void)s;
  ir_error err;
  assert_int_equal(rt_ar_validate(1, 1, 1, 3, &err), -1);
  assert_string_equal(err.msg, "AR task: vocabulary size K = 1, need K >= 2 (filler tokens must differ from the query)");
  assert_int_equal(rt_ar_validate(8, 0, 1, 3, &err), -1);
  assert_string_equal(err.msg, "AR task: number of queries M = 0 must be in 1..K (K = 8)");
  assert_int_equal(rt_ar_validate(8, 9, 1, 3, &err), -1);
  assert_string_equal(err.msg, "AR task: number of queries M = 9 must be in 1..K (K = 8)");
  assert_int_equal(rt_ar_validate(8, 2, 0, 3, &err), -1);
  assert_string_equal(err.msg, "AR task: distance tau = 0, need tau >= 1");
  assert_int_equal(rt_ar_validate(8, 2, 5, 6, &err), -1);
  assert_string_equal(err.msg, "AR task: length n = 6 is too short for tau = 5 (the shortest sequence is n = tau + 2 = 7)");
  assert_int_equal(rt_ar_validate(8, 2, 2147483647, 5, &err), -1); /* no overflow */
  assert_int_equal(rt_ar_validate(2, 2, 5, 7, &err), 0);
  assert_int_equal(rt_ar_validate(8, 1, 1, 3, NULL), 0);
  assert_int_equal(rt_ar_validate(8, 1, 1, 2, NULL), -1);
  /* an invalid task draws nothing */
  int32_t tok[4] = {-5, -5, -5, -5}, label = -5;
  rt_ar_task bad = {.K = 8, .M = 1, .tau = 3, .n = 4};
  assert_int_equal(rt_ar_example(1, 0, 0, &bad, tok, &label, NULL), -1);
  assert_int_equal(tok[0], -5);
  assert_int_equal(label, -5);
}

/* Every rule of DESIGN.md section 1, on one sequence. */
static void check_structure(const rt_ar_task *t, const int32_t *x, int32_t label, int32_t i) {
  int K = t->K, n = t->n, tau = t->tau;
  int32_t q = x[n - 1], v = label;
  if (!(q >= 0 && q < t->M)) fail_msg("q = %d outside 0..%d", q, t->M - 1);
  if (!(v >= 0 && v < K)) fail_msg("v = %d outside 0..%d", v, K - 1);
  if (!(i >= 0 && i <= n - tau - 2)) fail_msg("i = %d outside 0..%d", i, n - tau - 2);
  assert_int_equal(x[i], q);
  assert_int_equal(x[i + tau], v);
  assert_true(i + tau != n - 1); /* the value never lands on the last slot */
  for (int p = 0; p < n; p++) {
    if (!(x[p] >= 0 && x[p] < K)) fail_msg("x[%d] = %d outside [K]", p, x[p]);
    if (p != i && p != n - 1 && p != i + tau && x[p] == q)
      fail_msg("K %d M %d tau %d n %d: q = %d also at %d (i = %d)", K, t->M, tau, n, q, p, i);
  }
}

static void structure_many_tasks(void **s) {
  (void)s;
  static const int Ks[] = {2, 3, 5, 16, 64}, taus[] = {1, 2, 5, 10};
  int32_t x[200];
  long checked = 0;
  for (size_t a = 0; a < sizeof Ks / sizeof *Ks; a++)
    for (int mi = 0; mi < 3; mi++)
      for (size_t b = 0; b < sizeof taus / sizeof *taus; b++) {
        int K = Ks[a], M = mi == 0 ? 1 : mi == 1 ? (K + 1) / 2 : K, tau = taus[b];
        int ns[] = {tau + 2, tau + 3, 2 * tau + 5, 50, 150};
        for (int c = 0; c < 5; c++) {
          rt_ar_task t = {K, M, tau, ns[c]};
          for (uint32_t e = 0; e < 40; e++) {
            int32_t label, i;
            assert_int_equal(rt_ar_example(7, 3, e, &t, x, &label, &i), 0);
            check_structure(&t, x, label, i);
            checked++;
          }
        }
      }
  assert_true(checked == 5 * 3 * 4 * 5 * 40);
}

static void determinism(void **s) {
  (void)s;
  rt_ar_task t = {16, 4, 3, 64};
  int32_t a[64], b[64], c[64], la, lb, ia, ib;
  rt_ar_example(11, 5, 9, &t, a, &la, &ia);
  /* other examples, steps and seeds drawn in between change nothing */
  for (uint32_t e = 0; e < 20; e++) rt_ar_example(11, 5, e, &t, c, NULL, NULL);
  rt_ar_example(12, 6, 9, &t, c, NULL, NULL);
  rt_ar_example(11, 5, 9, &t, b, &lb, &ib);
  assert_memory_equal(a, b, sizeof a);
  assert_int_equal(la, lb);
  assert_int_equal(ia, ib);
  /* each key component gives a different sequence */
  rt_ar_example(11, 5, 10, &t, c, NULL, NULL);
  assert_memory_not_equal(a, c, sizeof a);
  rt_ar_example(11, 6, 9, &t, c, NULL, NULL);
  assert_memory_not_equal(a, c, sizeof a);
  rt_ar_example(12, 5, 9, &t, c, NULL, NULL);
  assert_memory_not_equal(a, c, sizeof a);
  /* a batch is the examples one by one */
  int32_t batch[5 * 64], labels[5];
  assert_int_equal(rt_ar_batch(11, 5, 7, 5, &t, batch, labels), 0);
  for (int k = 0; k < 5; k++) {
    rt_ar_example(11, 5, 7 + (uint32_t)k, &t, c, &la, NULL);
    assert_memory_equal(batch + 64 * k, c, sizeof c);
    assert_int_equal(labels[k], la);
  }
}

/* The draws follow the documented order: q, v, i, then fillers by position
 * from rt_rng(seed, step, example), one word at a time. Re-derived here by
 * hand, for short sequences and long ones (whose fillers are drawn many
 * at once), at the shortest length and with the value at n - 2. */
static void documented_draw_order(void **s) {
  (void)s;
  static const rt_ar_task ts[] = {{10, 3, 2, 9}, {16, 1, 1, 64}, {16, 16, 10, 192},
                                  {3, 2, 1, 3}, {2, 1, 5, 300}, {1000, 7, 3, 45}};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
    for (uint32_t e = 0; e < 50; e++) {
      const rt_ar_task *t = &ts[k];
      int n = t->n;
      int32_t x[300], label, i;
      rt_ar_example(99, 4, e, t, x, &label, &i);
      rt_rng g;
      rt_rng_init(&g, 99, 4, e);
      int32_t q = (int32_t)rt_rng_below(&g, (uint32_t)t->M);
      int32_t v = (int32_t)rt_rng_below(&g, (uint32_t)t->K);
      int32_t ii = (int32_t)rt_rng_below(&g, (uint32_t)(n - t->tau - 1));
      assert_int_equal(x[n - 1], q);
      assert_int_equal(label, v);
      assert_int_equal(i, ii);
      assert_int_equal(x[ii], q);
      assert_int_equal(x[ii + t->tau], v);
      for (int p = 0; p < n - 1; p++) {
        if (p == ii || p == ii + t->tau) continue;
        int32_t r = (int32_t)rt_rng_below(&g, (uint32_t)(t->K - 1));
        if (x[p] != (r < q ? r : r + 1))
          fail_msg("task %zu, example %u, position %d: %d, by hand %d", k, e, p, x[p],
                   r < q ? r : r + 1);
      }
    }
}

static void uniformity(void **s) {
  (void)s;
  enum { K = 7, M = 5, TAU = 3, N = 12, EX = 200000 };
  rt_ar_task t = {K, M, TAU, N};
  static long cq[M], cv[K], ci[N - TAU - 1], cqv[M * K], cfill[M][K];
  int32_t x[N], label, i;
  for (uint32_t e = 0; e < EX; e++) {
    rt_ar_example(2024, 0, e, &t, x, &label, &i);
    int32_t q = x[N - 1];
    cq[q]++, cv[label]++, ci[i]++, cqv[q * K + label]++;
    for (int p = 0; p < N - 1; p++)
      if (p != i && p != i + TAU) cfill[q][x[p]]++;
  }
  check_uniform(cq, M, "q");
  check_uniform(cv, K, "v");
  check_uniform(ci, N - TAU - 1, "i");
  check_uniform(cqv, M * K, "(q, v) pairs"); /* q and v independent */
  for (int q = 0; q < M; q++) {
    long other[K - 1];
    int k = 0;
    assert_int_equal(cfill[q][q], 0); /* fillers never equal q */
    for (int tok = 0; tok < K; tok++)
      if (tok != q) other[k++] = cfill[q][tok];
    check_uniform(other, K - 1, "filler tokens given q");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(validate_messages),
      cmocka_unit_test(structure_many_tasks),
      cmocka_unit_test(determinism),
      cmocka_unit_test(documented_draw_order),
      cmocka_unit_test(uniformity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
