/* test_buckets.c — evaluation on length buckets: for every model spec in
 * specs/models (the transformer with each positional encoding), a sequence
 * of length n run padded on its bucket's kernel gives the logits of a
 * kernel compiled for exactly n. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_util.h"

static void test_bucket_rule(void **state) {
  (void)state;
  spec_ctx c;
  const char *sets64[] = {"L=64", "layers=1", NULL};
  rt_model *m = spec_model(&c, "mamba.lua", sets64, 64, RT_BACKEND_JIT, 1);
  /* q = 16: 16 32 48 64, then steps of 32 up to 3L = 192 */
  const int n[] = {1, 3, 16, 17, 33, 48, 49, 64, 65, 96, 97, 129, 161, 191, 192, 193, 250};
  const int want[] = {16, 16, 16, 32, 48, 48, 64, 64, 96, 96, 128, 160, 192, 192, 192, 224, 256};
  for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
    if (rt_model_bucket(m, n[i]) != want[i])
      fail_msg("L 64: bucket(%d) = %d, want %d", n[i], rt_model_bucket(m, n[i]), want[i]);
  rt_model_free(m);
  /* L = 10: q = 3: 3 6 9 12, then 18 24; 30 = 3L caps the last bucket. */
  const char *sets10[] = {"L=10", "layers=1", NULL};
  m = spec_model(&c, "mamba.lua", sets10, 10, RT_BACKEND_JIT, 1);
  const int n10[] = {3, 4, 10, 13, 19, 25, 29, 30, 31};
  const int want10[] = {3, 6, 12, 18, 24, 30, 30, 30, 36};
  for (size_t i = 0; i < sizeof n10 / sizeof n10[0]; i++)
    if (rt_model_bucket(m, n10[i]) != want10[i])
      fail_msg("L 10: bucket(%d) = %d, want %d", n10[i], rt_model_bucket(m, n10[i]), want10[i]);
  rt_model_free(m);
}

/* Lengths whose buckets (L = 8: 2 4 6 8 12 16 20 24) are longer. */
static const int lengths[] = {5, 9, 21};
enum { L = 8, B = 12, K = 16 };

static void check_spec(const char *file, const char *pe) {
  spec_ctx c;
  char peset[32];
  const char *sets[6] = {"K=16", "d=8", "L=8", NULL, NULL, NULL};
  if (pe) {
    snprintf(peset, sizeof peset, "pe=%s", pe);
    sets[3] = peset;
  }
  rt_model *m = spec_model(&c, file, sets, L, RT_BACKEND_JIT, 2);
  for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
    int n = lengths[li];
    assert_true(rt_model_bucket(m, n) > n);
    rt_ar_task task = {K, 2, 1, n};
    int32_t tok[B * 24], lab[B];
    rt_ar_batch(5, RT_STREAM_SWEEP + (uint64_t)n, 0, B, &task, tok, lab);
    float padded[B * K], exact[B * K];
    rt_batch_stats sp, se;
    ir_error err;
    if (rt_model_eval_batch(m, n, 0, tok, lab, B, padded, &sp, &err) < 0 ||
        rt_model_eval_batch(m, n, n, tok, lab, B, exact, &se, &err) < 0)
      fail_msg("%s pe=%s n=%d: %s", file, pe ? pe : "-", n, err.msg);
    for (int b = 0; b < B; b++) {
      double scale = 0;
      for (int k = 0; k < K; k++) scale = fmax(scale, fabs(exact[b * K + k]));
      for (int k = 0; k < K; k++) {
        double d = fabs(padded[b * K + k] - exact[b * K + k]);
        if (!(d <= 1e-5 * fmax(scale, 1e-6)))
          fail_msg("%s pe=%s n=%d (bucket %d) sequence %d: logit %d = %.9g padded, "
                   "%.9g exact", file, pe ? pe : "-", n, rt_model_bucket(m, n), b, k,
                   padded[b * K + k], exact[b * K + k]);
      }
    }
    assert_true(fabs(sp.loss - se.loss) <= 1e-5 * fmax(1, se.loss));
  }
  rt_model_free(m);
  rt_jit_cache_trim();
}

static void test_bucket_equals_exact(void **state) {
  (void)state;
  char dir[600];
  snprintf(dir, sizeof dir, "%s/specs/models", test_root());
  DIR *d = opendir(dir);
  assert_non_null(d);
  int specs = 0;
  bool saw[3] = {false, false, false};
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".lua")) continue;
    specs++;
    if (!strcmp(e->d_name, "transformer.lua")) {
      check_spec(e->d_name, "learned");
      check_spec(e->d_name, "rope");
      check_spec(e->d_name, "nope");
    } else {
      check_spec(e->d_name, NULL);
    }
    saw[0] |= !strcmp(e->d_name, "transformer.lua");
    saw[1] |= !strcmp(e->d_name, "mamba.lua");
    saw[2] |= !strcmp(e->d_name, "hybrid.lua");
  }
  closedir(d);
  assert_true(saw[0] && saw[1] && saw[2]);
  assert_true(specs >= 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_rule),
      cmocka_unit_test(test_bucket_equals_exact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
