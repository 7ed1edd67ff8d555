/* test_train.c — the training loop (stopping rules, rows, a non-finite
 * loss, identical results for 1 and 2 threads) and the length sweep. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_util.h"

enum { L = 8, MAX_ROWS = 64 };

typedef struct {
  rt_train_row rows[MAX_ROWS];
  int n_rows;
  double losses[512];
  long n_steps;
  rt_model *poison; /* set a param to NaN after this many steps */
  long poison_at;
} log_ctx;

static void on_step(void *p, long step, double loss, double acc, double el) {
  log_ctx *c = p;
  (void)acc, (void)el;
  assert_int_equal(step, c->n_steps + 1);
  if (c->n_steps < 512) c->losses[c->n_steps] = loss;
  c->n_steps++;
  if (c->poison && step == c->poison_at)
    rt_model_param_data(c->poison, "lm_head.bias")[0] = NAN;
}

static int on_eval(void *p, const rt_train_row *r, ir_error *err) {
  log_ctx *c = p;
  (void)err;
  if (c->n_rows < MAX_ROWS) c->rows[c->n_rows++] = *r;
  return 0;
}

static rt_model *small(spec_ctx *c, const char *spec, int threads) {
  const char *sets[] = {"K=16", "d=8", "L=8", "layers=1", NULL};
  return spec_model(c, spec, sets, L, RT_BACKEND_JIT, threads);
}

static void base_config(rt_train_config *tc) {
  rt_train_defaults(tc);
  tc->batch = 16;
  tc->test_size = 100;
  tc->eval_every = 10;
  tc->max_steps = 25;
  tc->seed = 11;
  tc->opt.lr = 3e-3;
}

static void test_defaults(void **state) {
  (void)state;
  rt_train_config tc;
  rt_train_defaults(&tc);
  assert_int_equal(tc.batch, 64);
  assert_int_equal(tc.max_steps, 3000);
  assert_int_equal(tc.eval_every, 100);
  assert_int_equal(tc.test_size, 1000);
  assert_int_equal(tc.patience, 2);
  assert_true(tc.target == 0.99 && tc.M == 1 && tc.tau == 1);
  assert_int_equal(tc.opt.kind, RT_OPT_ADAM);
  assert_true(tc.opt.lr == 1e-3);
}

static void test_max_steps_rows(void **state) {
  (void)state;
  spec_ctx c;
  rt_model *m = small(&c, "mamba.lua", 1);
  rt_train_config tc;
  base_config(&tc);
  tc.target = 1.0;
  log_ctx lg = {0};
  rt_train_hooks h = {on_step, on_eval, &lg};
  rt_train_result res;
  ir_error err;
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), 0);
  /* a perfect score after 25 steps would be a surprise */
  assert_int_equal(res.status, RT_TRAIN_MAX_STEPS);
  assert_int_equal(res.steps, 25);
  assert_int_equal(lg.n_steps, 25);
  assert_int_equal(lg.n_rows, 3); /* steps 10, 20 and the last, 25 */
  assert_int_equal(lg.rows[0].step, 10);
  assert_int_equal(lg.rows[1].step, 20);
  assert_int_equal(lg.rows[2].step, 25);
  /* train_loss: the mean of the batch losses since the previous row */
  double s = 0;
  for (int i = 20; i < 25; i++) s += lg.losses[i];
  assert_true(fabs(lg.rows[2].train_loss - s / 5) < 1e-12);
  s = 0;
  for (int i = 0; i < 10; i++) s += lg.losses[i];
  assert_true(fabs(lg.rows[0].train_loss - s / 10) < 1e-12);
  /* The test batch is the fixed one from RT_STREAM_TEST at length L. */
  int32_t tok[100 * L], lab[100];
  rt_ar_task task = {16, 1, 1, L};
  rt_ar_batch(11, RT_STREAM_TEST, 0, 100, &task, tok, lab);
  rt_batch_stats st;
  assert_int_equal(rt_model_eval_batch(m, L, 0, tok, lab, 100, NULL, &st, &err), 0);
  assert_true(st.acc == lg.rows[2].test_acc && st.loss == lg.rows[2].test_loss);
  assert_true(res.test_acc == st.acc);
  assert_non_null(strstr(res.message, "max steps 25"));
  rt_model_free(m);
}

static void test_stops_at_target(void **state) {
  (void)state;
  spec_ctx c;
  rt_model *m = small(&c, "transformer.lua", 1);
  rt_train_config tc;
  base_config(&tc);
  tc.max_steps = 100;
  tc.target = 0.0; /* every evaluation qualifies */
  tc.patience = 3;
  log_ctx lg = {0};
  rt_train_hooks h = {NULL, on_eval, &lg};
  rt_train_result res;
  ir_error err;
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), 0);
  assert_int_equal(res.status, RT_TRAIN_REACHED);
  assert_int_equal(res.reached_step, 10);
  assert_int_equal(res.steps, 30);
  assert_int_equal(lg.n_rows, 3);
  rt_model_free(m);
}

static void test_nan_stops(void **state) {
  (void)state;
  spec_ctx c;
  rt_model *m = small(&c, "transformer.lua", 1);
  rt_train_config tc;
  base_config(&tc);
  tc.eval_every = 2;
  log_ctx lg = {.poison = m, .poison_at = 5};
  rt_train_hooks h = {on_step, on_eval, &lg};
  rt_train_result res;
  ir_error err;
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), 0);
  assert_int_equal(res.status, RT_TRAIN_DIVERGED);
  assert_string_equal(res.message, "step 5: loss is NaN; stopping (lower the learning rate?)");
  assert_int_equal(res.steps, 5);
  assert_int_equal(lg.n_rows, 2); /* rows of steps 2 and 4 were delivered */
  assert_int_equal(lg.rows[1].step, 4);
  rt_model_free(m);
}

static void test_threads_identical(void **state) {
  (void)state;
  const char *specs[] = {"mamba.lua", "transformer.lua"};
  for (int s = 0; s < 2; s++) {
    spec_ctx c1, c2;
    rt_model *m1 = small(&c1, specs[s], 1), *m2 = small(&c2, specs[s], 2);
    rt_train_config tc;
    base_config(&tc);
    tc.batch = 20; /* not a multiple of the chunk count */
    log_ctx l1 = {0}, l2 = {0};
    rt_train_hooks h1 = {on_step, on_eval, &l1}, h2 = {on_step, on_eval, &l2};
    rt_train_result r1, r2;
    ir_error err;
    assert_int_equal(rt_train(m1, &tc, &h1, &r1, &err), 0);
    assert_int_equal(rt_train(m2, &tc, &h2, &r2, &err), 0);
    assert_int_equal(l1.n_rows, l2.n_rows);
    for (int i = 0; i < l1.n_rows; i++)
      assert_true(l1.rows[i].train_loss == l2.rows[i].train_loss &&
                  l1.rows[i].test_loss == l2.rows[i].test_loss &&
                  l1.rows[i].test_acc == l2.rows[i].test_acc);
    assert_memory_equal(l1.losses, l2.losses, sizeof(double) * 25);
    assert_memory_equal(rt_model_params(m1), rt_model_params(m2),
                        sizeof(float) * rt_model_size(m1));
    rt_model_free(m1);
    rt_model_free(m2);
  }
}

static void test_bad_config(void **state) {
  (void)state;
  spec_ctx c;
  rt_model *m = small(&c, "mamba.lua", 1);
  rt_train_config tc;
  base_config(&tc);
  rt_train_result res;
  ir_error err;
  tc.tau = 7; /* L = 8 needs tau <= 6 */
  assert_int_equal(rt_train(m, &tc, NULL, &res, &err), -1);
  assert_non_null(strstr(err.msg, "tau"));
  base_config(&tc);
  tc.M = 17;
  assert_int_equal(rt_train(m, &tc, NULL, &res, &err), -1);
  assert_non_null(strstr(err.msg, "M = 17"));
  base_config(&tc);
  tc.opt.lr = -1;
  assert_int_equal(rt_train(m, &tc, NULL, &res, &err), -1);
  assert_non_null(strstr(err.msg, "learning rate"));
  rt_model_free(m);
}

static void test_sweep(void **state) {
  (void)state;
  spec_ctx c;
  rt_model *m = small(&c, "mamba.lua", 2);
  rt_sweep_config sc = {.M = 2, .tau = 1, .seed = 4, .n_seq = 50};
  rt_sweep_row *rows;
  int n;
  ir_error err;
  assert_int_equal(rt_sweep(m, &sc, &rows, &n, NULL, NULL, &err), 0);
  assert_int_equal(n, 3 * L - 3 + 1); /* tau+2 = 3 .. 3L = 24 */
  for (int i = 0; i < n; i++) {
    assert_int_equal(rows[i].length, 3 + i);
    assert_int_equal(rows[i].n, 50);
    assert_true(rows[i].acc >= 0 && rows[i].acc <= 1);
  }
  /* Each length has its own stream, keyed by (seed, RT_STREAM_SWEEP + n). */
  int32_t tok[50 * 13], lab[50];
  rt_ar_task task = {16, 2, 1, 13};
  rt_ar_batch(4, RT_STREAM_SWEEP + 13, 0, 50, &task, tok, lab);
  rt_batch_stats st;
  assert_int_equal(rt_model_eval_batch(m, 13, 0, tok, lab, 50, NULL, &st, &err), 0);
  assert_true(fabs(st.acc - rows[13 - 3].acc) < 1e-12);
  free(rows);
  sc.lo = 5, sc.hi = 6;
  assert_int_equal(rt_sweep(m, &sc, &rows, &n, NULL, NULL, &err), 0);
  assert_int_equal(n, 2);
  assert_int_equal(rows[1].length, 6);
  free(rows);
  sc.lo = 2; /* shorter than tau + 2 */
  assert_int_equal(rt_sweep(m, &sc, &rows, &n, NULL, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "too short"));
  rt_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_max_steps_rows),
      cmocka_unit_test(test_stops_at_target),
      cmocka_unit_test(test_nan_stops),
      cmocka_unit_test(test_threads_identical),
      cmocka_unit_test(test_bad_config),
      cmocka_unit_test(test_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
