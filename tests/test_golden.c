/* test_golden.c — `recall exec` against the independent PyTorch reference
 * in ../shared/golden, through both backends: logits, loss and every
 * gradient within the README's tolerance
 *   max |recall - golden| / max(max |golden|, 1e-6) <= 1e-4.
 * The same for tests/data/reference: files of the same format at L 64 >
 * K 16, where the kernels sink the first layer onto the embedding's rows
 * (ir/sink.c), from bench/pytorch/make_reference.py (our PyTorch models,
 * which pass the golden files themselves), and Mamba at d 64. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime.h"

static const char *const models[] = {"transformer_learned", "transformer_rope",
                                     "transformer_nope", "mamba", "hybrid"};
enum { N_MODELS = sizeof models / sizeof models[0] };

typedef struct {
  const char *dir; /* from the repository's root */
  int d, L;
} ref_set;
static const ref_set golden = {"../shared/golden", 8, 16},
                     reference = {"tests/data/reference", 8, 64},
                     wide = {"tests/data/reference", 64, 32}; /* mamba only */

static void ref_path(char *buf, size_t n, const ref_set *r, const char *model) {
  const char *root = getenv("RECALL_ROOT");
  snprintf(buf, n, "%s/%s/%s_K16_d%d_L%d.safetensors", root ? root : ".", r->dir, model, r->d,
           r->L);
}

/* Max relative error per the golden README. */
static double rel_err(const rt_tensor *got, const rt_tensor *want) {
  const float *g = got->data, *w = want->data;
  double md = 0, mw = 0;
  for (int64_t i = 0; i < want->numel; i++) {
    md = fmax(md, fabs((double)g[i] - w[i]));
    mw = fmax(mw, fabs((double)w[i]));
  }
  return md / fmax(mw, 1e-6);
}

static void check_model(const ref_set *r, const char *model, const char *backend) {
  char gpath[1024], opath[256], cmd[4096];
  ref_path(gpath, sizeof gpath, r, model);
  ir_error err;
  rt_tensors *gold = rt_st_read(gpath, &err);
  if (!gold) fail_msg("golden file missing or unreadable: %s", err.msg);
  const char *spec = strncmp(model, "transformer_", 12) ? model : "transformer";
  char extra[64] = "";
  if (spec != model) snprintf(extra, sizeof extra, "--set pe=%s", model + 12);
  snprintf(opath, sizeof opath, "/tmp/recall_golden_%d_%s_%s.safetensors",
           (int)getpid(), model, backend);
  const char *keys[] = {"K", "d", "L", "layers", "d_state", "expand", "d_conv",
                        "dt_rank"};
  char sets[512] = "";
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    const char *v = rt_meta_get(gold, keys[i]);
    assert_non_null(v);
    if (!strcmp(spec, "transformer") &&
        (!strcmp(keys[i], "d_state") || !strcmp(keys[i], "expand") ||
         !strcmp(keys[i], "d_conv") || !strcmp(keys[i], "dt_rank")))
      continue; /* mamba options; the transformer spec has none */
    size_t k = strlen(sets);
    snprintf(sets + k, sizeof sets - k, " --set %s=%s", keys[i], v);
  }
  snprintf(cmd, sizeof cmd,
           "%s exec specs/models/%s.lua%s %s --weights %s --tokens %s "
           "--backend %s -o %s",
           getenv("RECALL_BIN"), spec, sets, extra, gpath, gpath, backend,
           opath);
  int st = system(cmd);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("failed: %s", cmd);
  rt_tensors *got = rt_st_read(opath, &err);
  if (!got) fail_msg("%s", err.msg);
  unlink(opath);

  int checked = 0;
  for (int i = 0; i < gold->n; i++) {
    const rt_tensor *w = gold->t[i];
    if (strcmp(w->name, "logits") && strcmp(w->name, "loss") &&
        strncmp(w->name, "grad.", 5))
      continue;
    rt_tensor *wt = rt_tensors_expect(gold, w->name, RT_F32, w->rank, w->dim,
                                      &err);
    assert_non_null(wt);
    rt_tensor *g = rt_tensors_expect(got, w->name, RT_F32, w->rank, w->dim,
                                     &err);
    if (!g) fail_msg("%s %s: %s", model, backend, err.msg);
    double e = rel_err(g, wt);
    if (!(e <= 1e-4))
      fail_msg("%s (%s): %s differs from %s, relative error %.3g", model,
               backend, w->name, gpath, e);
    checked++;
  }
  /* every gradient the reference has, plus logits and loss */
  int grads = 0;
  for (int i = 0; i < got->n; i++) grads += !strncmp(got->t[i]->name, "grad.", 5);
  assert_int_equal(checked, grads + 2);
  assert_true(grads >= 10);
  rt_tensors_free(got);
  rt_tensors_free(gold);
}

static void every_model(const ref_set *r, const char *backend) {
  for (int i = 0; i < N_MODELS; i++) check_model(r, models[i], backend);
}

static void golden_interp(void **state) { (void)state, every_model(&golden, "interp"); }
static void golden_jit(void **state) { (void)state, every_model(&golden, "jit"); }
static void reference_interp(void **state) { (void)state, every_model(&reference, "interp"); }
static void reference_jit(void **state) { (void)state, every_model(&reference, "jit"); }

/* Problem 3's Mamba (d 64: E 128, the kernels' widest vector paths) */
static void reference_d64(void **state) {
  (void)state;
  check_model(&wide, "mamba", "jit");
  check_model(&wide, "mamba", "interp");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(golden_interp),
      cmocka_unit_test(golden_jit),
      cmocka_unit_test(reference_interp),
      cmocka_unit_test(reference_jit),
      cmocka_unit_test(reference_d64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
