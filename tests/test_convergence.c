/* test_convergence.c — end to end: the study's mamba and transformer-rope
 * learn associative recall (K 16, d 8, L 16, M 1, tau 1, Adam lr 3e-3,
 * batch 64) to >= 0.95 test accuracy at L within 2000 steps on the JIT.
 * An independent PyTorch implementation gets there in ~500 (mamba) and
 * ~1250 (transformer-rope) steps for one seed (shared/notes/training.md).
 * Mamba gets there at every seed tried (250-300 steps); the d 8
 * transformer is seed-sensitive (about half the seeds plateau near 0.7-0.93
 * at 2000 steps), so it passes when one of its first five seeds does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>

#include "model_util.h"

/* Trains spec at seed (data and initialisation); true if it reached 0.95. */
static bool converge(const char *spec, const char *const *sets, uint64_t seed) {
  spec_ctx c;
  rt_model *m = spec_model(&c, spec, sets, 16, RT_BACKEND_JIT, 2);
  spec_init_params(m, &c, seed);
  rt_train_config tc;
  rt_train_defaults(&tc);
  tc.opt.lr = 3e-3;
  tc.max_steps = 2000;
  tc.eval_every = 50;
  tc.target = 0.95;
  tc.patience = 1;
  tc.seed = seed;
  rt_train_result res;
  ir_error err;
  if (rt_train(m, &tc, NULL, &res, &err) < 0) fail_msg("%s: %s", spec, err.msg);
  printf("%s seed %llu: %s after %ld steps, %.1f s (%.0f steps/s)\n", spec,
         (unsigned long long)seed, res.message, res.steps, res.elapsed_s,
         (double)res.steps / res.elapsed_s);
  rt_model_free(m);
  return res.status == RT_TRAIN_REACHED;
}

static void test_mamba(void **state) {
  (void)state;
  const char *sets[] = {"K=16", "d=8", "L=16", NULL};
  if (!converge("mamba.lua", sets, 0))
    fail_msg("mamba did not reach 0.95 in 2000 steps");
}

static void test_transformer_rope(void **state) {
  (void)state;
  const char *sets[] = {"K=16", "d=8", "L=16", "pe=rope", NULL};
  for (uint64_t seed = 0; seed < 5; seed++)
    if (converge("transformer.lua", sets, seed)) return;
  fail_msg("transformer-rope reached 0.95 within 2000 steps at none of seeds 0-4");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mamba),
      cmocka_unit_test(test_transformer_rope),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
