/* test_optim.c — optimiser steps against values worked out by hand from
 * torch.optim's update rules, schedules, clipping and config checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Relative closeness for float32 results against double hand values. */
static void near(double got, double want, double rel) {
  double tol = rel * fmax(fabs(want), 1e-3);
  if (!(fabs(got - want) <= tol))
    fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

/* Runs updates with gradients g[0..steps) on one parameter starting at p0;
 * returns the parameter after each update in out. */
static void run1(const rt_optim_config *c, float p0, const float *g, int steps,
                 double *out) {
  rt_optim *o = rt_optim_new(c, 1);
  float p = p0;
  for (int t = 0; t < steps; t++) {
    float gt = g[t];
    rt_optim_step(o, &p, &gt);
    out[t] = p;
  }
  assert_int_equal(rt_optim_steps(o), steps);
  rt_optim_free(o);
}

static void test_sgd_plain(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_SGD);
  c.lr = 0.1;
  float g[] = {1.0f, 0.5f, -2.0f};
  double p[3];
  run1(&c, 1.0f, g, 3, p);
  near(p[0], 1.0 - 0.1 * 1.0, 1e-6);   /* 0.9 */
  near(p[1], 0.9 - 0.1 * 0.5, 1e-6);   /* 0.85 */
  near(p[2], 0.85 + 0.1 * 2.0, 1e-6);  /* 1.05 */
}

static void test_sgd_momentum(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_SGD);
  c.lr = 0.1;
  c.momentum = 0.9;
  float g[] = {1.0f, 0.5f, -1.0f};
  double p[3];
  run1(&c, 1.0f, g, 3, p);
  /* buf = 1; p = 1 - 0.1 = 0.9
   * buf = 0.9*1 + 0.5 = 1.4; p = 0.9 - 0.14 = 0.76
   * buf = 0.9*1.4 - 1 = 0.26; p = 0.76 - 0.026 = 0.734 */
  near(p[0], 0.9, 1e-6);
  near(p[1], 0.76, 1e-6);
  near(p[2], 0.734, 1e-6);

  c.nesterov = true;
  run1(&c, 1.0f, g, 2, p);
  /* buf = 1, d = 1 + 0.9*1 = 1.9, p = 1 - 0.19 = 0.81
   * buf = 0.9 + 0.5 = 1.4, d = 0.5 + 0.9*1.4 = 1.76, p = 0.81 - 0.176 = 0.634 */
  near(p[0], 0.81, 1e-6);
  near(p[1], 0.634, 1e-6);

  c.nesterov = false;
  c.dampening = 0.5;
  run1(&c, 1.0f, g, 2, p);
  /* first buf = g (no dampening): p = 0.9; buf = 0.9 + 0.5*0.5 = 1.15,
   * p = 0.9 - 0.115 = 0.785 */
  near(p[0], 0.9, 1e-6);
  near(p[1], 0.785, 1e-6);

  c.dampening = 0;
  c.momentum = 0;
  c.weight_decay = 0.1;
  run1(&c, 2.0f, g, 1, p);
  /* d = 1 + 0.1*2 = 1.2; p = 2 - 0.12 = 1.88 */
  near(p[0], 1.88, 1e-6);
}

static void test_adam(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_ADAM);
  c.lr = 0.1;
  float g[] = {0.5f, -1.0f, 2.0f};
  double p[3];
  run1(&c, 1.0f, g, 3, p);
  /* step 1: m = 0.05, v = 0.00025; mhat = 0.5, sqrt(vhat) = 0.5;
   * p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.90000000200 */
  near(p[0], 0.900000002, 1e-6);
  /* step 2: m = 0.045 - 0.1 = -0.055; v = 0.00024975 + 0.001 = 0.00124975;
   * bc1 = 0.19, bc2 = 0.001999; mhat = -0.289473684, vhat = 0.625187594,
   * sqrt(vhat) = 0.790688052; p = p1 + 0.1 * 0.289473684 / 0.790688052
   *   = 0.900000002 + 0.036610350 = 0.936610352 */
  near(p[1], 0.936610352, 2e-6);
  /* step 3: m = -0.0495 + 0.2 = 0.1505; v = 0.00124850025 + 0.004 =
   * 0.00524850025; bc1 = 0.271, bc2 = 0.002997001; mhat = 0.555350554,
   * vhat = 1.751250014, sqrt = 1.323348788; p = p2 - 0.1 * 0.419655... */
  double m3 = 0.1505, v3 = 0.00524850025;
  double step3 = 0.1 * (m3 / 0.271) / (sqrt(v3 / 0.002997001) + 1e-8);
  near(step3, 0.0419655, 1e-5); /* the hand value above */
  near(p[2], 0.936610352 - step3, 2e-6);
}

/* Adam over many parameters (whole blocks, then a tail) runs the
 * host's vector clone (optim.c: AVX-512, AVX2 or SSE): bit for bit the
 * same as the update worked element by element in float, for both of
 * torch's lerp formulas (beta1 0.9: near; 0.3: far). */
static void test_adam_vector_same_bits(void **state) {
  (void)state;
  enum { N = 1000, STEPS = 3 };
  for (int form = 0; form < 2; form++) {
    rt_optim_config c;
    rt_optim_defaults(&c, RT_OPT_ADAM);
    c.lr = 0.01, c.clip = 0, c.beta1 = form ? 0.3 : 0.9;
    float *p = malloc(sizeof *p * N), *g = malloc(sizeof *g * N), *q = malloc(sizeof *q * N);
    float *m = calloc(N, sizeof *m), *v = calloc(N, sizeof *v);
    assert_non_null(p), assert_non_null(g), assert_non_null(q), assert_non_null(m), assert_non_null(v);
    for (int i = 0; i < N; i++) p[i] = q[i] = (float)sin(0.37 * i);
    rt_optim *o = rt_optim_new(&c, N);
    for (int t = 1; t <= STEPS; t++) {
      for (int i = 0; i < N; i++) g[i] = (float)cos(0.11 * i * t) * (float)(i % 7 + 1);
      double lr = rt_optim_lr(&c, t);
      float w1 = (float)(1 - c.beta1), b2 = (float)c.beta2, w2 = (float)(1 - c.beta2);
      float neg_step = (float)-(lr / (1 - pow(c.beta1, t)));
      float bc2_sqrt = (float)sqrt(1 - pow(c.beta2, t)), eps = (float)c.eps;
      for (int i = 0; i < N; i++) {
        float d = g[i];
        m[i] = form ? d - (d - m[i]) * (1.0f - w1) : m[i] + w1 * (d - m[i]);
        v[i] = v[i] * b2 + w2 * d * d;
        q[i] = q[i] + neg_step * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
      }
      rt_optim_step(o, p, g);
    }
    assert_memory_equal(p, q, sizeof *p * N);
    rt_optim_free(o);
    free(p), free(g), free(q), free(m), free(v);
  }
}

static void test_adam_weight_decay(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_ADAM);
  c.lr = 0.1;
  c.weight_decay = 0.1;
  float g[] = {0.5f, 0.5f};
  double p[2];
  run1(&c, 1.0f, g, 2, p);
  /* L2: d = 0.5 + 0.1*1 = 0.6; the first Adam step is lr * d/(|d|+eps):
   * p = 1 - 0.1 * 0.6/(0.6 + 1e-8) = 0.900000002 */
  near(p[0], 0.900000002, 1e-6);
  /* step 2: d = 0.5 + 0.09 = 0.59; m = 0.054 + 0.059 = 0.113;
   * v = 0.00035964 + 0.0003481 = 0.00070774; bc1 = 0.19, bc2 = 0.001999;
   * step = 0.1 * 0.594736842 / 0.595022... */
  double m2 = 0.9 * 0.06 + 0.1 * 0.59, v2 = 0.999 * 0.00036 + 0.001 * 0.59 * 0.59;
  near(m2, 0.113, 1e-9);
  near(v2, 0.00070774, 1e-9);
  near(p[1], p[0] - 0.1 * (m2 / 0.19) / (sqrt(v2 / 0.001999) + 1e-8), 2e-6);

  rt_optim_defaults(&c, RT_OPT_ADAMW);
  c.lr = 0.1;
  c.weight_decay = 0.1;
  run1(&c, 1.0f, g, 2, p);
  /* decoupled: p = 1*(1 - 0.01) = 0.99, then 0.99 - 0.1*0.5/(0.5+1e-8)
   * = 0.890000002; step 2: p = 0.890000002*0.99 = 0.881100002, then
   * m = 0.045+0.05 = 0.095, v = 0.00024975+0.00025 = 0.00049975,
   * mhat = 0.5, vhat = 0.25 exactly: p -= 0.1 */
  near(p[0], 0.890000002, 1e-6);
  near(p[1], 0.781100002, 2e-6);
}

static void test_schedules(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_ADAM);
  c.lr = 1.0;
  assert_true(rt_optim_lr(&c, 1) == 1.0 && rt_optim_lr(&c, 1000) == 1.0);
  c.schedule = RT_SCHED_WARMUP;
  c.warmup = 4;
  near(rt_optim_lr(&c, 1), 0.25, 1e-12);
  near(rt_optim_lr(&c, 2), 0.5, 1e-12);
  near(rt_optim_lr(&c, 4), 1.0, 1e-12);
  near(rt_optim_lr(&c, 50), 1.0, 1e-12);
  c.schedule = RT_SCHED_COSINE;
  c.warmup = 2;
  c.total = 6;
  c.min_lr = 0.1;
  near(rt_optim_lr(&c, 1), 0.5, 1e-12);
  near(rt_optim_lr(&c, 2), 1.0, 1e-12);
  near(rt_optim_lr(&c, 3), 0.1 + 0.45 * (1 + sqrt(0.5)), 1e-12); /* x = 1/4 */
  near(rt_optim_lr(&c, 4), 0.55, 1e-12);                           /* x = 1/2 */
  near(rt_optim_lr(&c, 6), 0.1, 1e-12);
  near(rt_optim_lr(&c, 9), 0.1, 1e-12);

  /* The schedule drives the update: SGD with warm-up 4 moves by lr/4. */
  rt_optim_defaults(&c, RT_OPT_SGD);
  c.lr = 0.4;
  c.schedule = RT_SCHED_WARMUP;
  c.warmup = 4;
  float g[] = {1, 1};
  double p[2];
  run1(&c, 0.0f, g, 2, p);
  near(p[0], -0.1, 1e-6);
  near(p[1], -0.3, 1e-6);
}

static void test_clipping(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_SGD);
  c.lr = 1.0;
  c.clip = 1.0;
  rt_optim *o = rt_optim_new(&c, 2);
  float p[2] = {0, 0}, g[2] = {3, 4};
  double norm = rt_optim_step(o, p, g);
  near(norm, 5.0, 1e-12);
  /* scaled by 1/(5 + 1e-6) */
  near(p[0], -3.0 / 5.000001, 1e-6);
  near(p[1], -4.0 / 5.000001, 1e-6);
  rt_optim_free(o);

  c.clip = 10.0; /* above the norm: untouched */
  o = rt_optim_new(&c, 2);
  p[0] = p[1] = 0, g[0] = 3, g[1] = 4;
  rt_optim_step(o, p, g);
  assert_true(p[0] == -3.0f && p[1] == -4.0f);
  rt_optim_free(o);
}

/* The norm over lengths around the 8-element blocks it is summed in
 * (every element counted once: a tail dropped or doubled fails), and
 * every element of a long vector counted, within double rounding. */
static void test_norm_lengths(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_SGD);
  enum { MAX = 1001 };
  float *p = calloc(MAX, sizeof *p), *g = calloc(MAX, sizeof *g);
  assert_non_null(p);
  assert_non_null(g);
  int lens[] = {1, 7, 8, 9, 15, 16, 17, 1000, MAX};
  for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
    int n = lens[k];
    double want = 0;
    for (int i = 0; i < n; i++) {
      g[i] = (float)(i % 13) - 6.25f;
      want += (double)g[i] * g[i];
    }
    rt_optim *o = rt_optim_new(&c, (size_t)n);
    near(rt_optim_step(o, p, g), sqrt(want), 1e-12);
    rt_optim_free(o);
  }
  free(p);
  free(g);
}

/* Elements are independent: a vector update equals scalar updates. */
static void test_vector_matches_scalar(void **state) {
  (void)state;
  rt_optim_config c;
  rt_optim_defaults(&c, RT_OPT_ADAMW);
  c.lr = 0.01;
  enum { N = 5 };
  float p[N] = {1, -2, 0.5f, 3, 0}, g[N];
  rt_optim *o = rt_optim_new(&c, N);
  double want[N][3];
  for (int i = 0; i < N; i++) {
    float gi[3] = {0.1f * (float)(i + 1), -0.2f, 0.3f * (float)i};
    run1(&c, p[i], gi, 3, want[i]);
  }
  for (int t = 0; t < 3; t++) {
    for (int i = 0; i < N; i++) g[i] = t == 0 ? 0.1f * (float)(i + 1) : t == 1 ? -0.2f : 0.3f * (float)i;
    rt_optim_step(o, p, g);
  }
  for (int i = 0; i < N; i++) assert_true(p[i] == (float)want[i][2]);
  rt_optim_free(o);
}

static void test_check(void **state) {
  (void)state;
  rt_optim_config c;
  ir_error e;
  rt_optim_defaults(&c, RT_OPT_ADAM);
  assert_int_equal(rt_optim_check(&c, &e), 0);
  c.lr = 0;
  assert_int_equal(rt_optim_check(&c, &e), -1);
  assert_non_null(strstr(e.msg, "learning rate"));
  rt_optim_defaults(&c, RT_OPT_ADAM);
  c.beta2 = 1.0;
  assert_int_equal(rt_optim_check(&c, &e), -1);
  assert_non_null(strstr(e.msg, "beta2"));
  rt_optim_defaults(&c, RT_OPT_SGD);
  c.nesterov = true;
  assert_int_equal(rt_optim_check(&c, &e), -1);
  assert_non_null(strstr(e.msg, "Nesterov"));
  rt_optim_defaults(&c, RT_OPT_ADAM);
  c.schedule = RT_SCHED_COSINE;
  c.warmup = 10;
  c.total = 10;
  assert_int_equal(rt_optim_check(&c, &e), -1);
  assert_non_null(strstr(e.msg, "cosine"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_plain),
      cmocka_unit_test(test_sgd_momentum),
      cmocka_unit_test(test_adam),
      cmocka_unit_test(test_adam_vector_same_bits),
      cmocka_unit_test(test_adam_weight_decay),
      cmocka_unit_test(test_schedules),
      cmocka_unit_test(test_clipping),
      cmocka_unit_test(test_norm_lengths),
      cmocka_unit_test(test_vector_matches_scalar),
      cmocka_unit_test(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
