/* model_util.h — for the runtime's test suites: a model built from a Lua
 * spec of specs/models (the glue the CLI does for real), parameters drawn
 * with the spec's initialisers. Include after cmocka.h. */
#ifndef RECALL_TEST_MODEL_UTIL_H
#define RECALL_TEST_MODEL_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "runtime.h"

enum { SPEC_MAX_SETS = 16 };

typedef struct {
  char path[512];
  const char *keys[SPEC_MAX_SETS + 1];
  const char *values[SPEC_MAX_SETS + 1];
  int n;
} spec_ctx;

static inline const char *test_root(void) {
  const char *r = getenv("RECALL_ROOT");
  return r ? r : ".";
}

/* spec: a file name in specs/models ("mamba.lua"); sets: "k=v" strings,
 * NULL-terminated (pointers kept). */
static inline void spec_init(spec_ctx *c, const char *spec, const char *const *sets) {
  memset(c, 0, sizeof *c);
  snprintf(c->path, sizeof c->path, "%s/specs/models/%s", test_root(), spec);
  static char store[64][64];
  static int used;
  for (; sets && sets[c->n]; c->n++) {
    char *s = store[used++ % 64];
    snprintf(s, 64, "%s", sets[c->n]);
    char *eq = strchr(s, '=');
    *eq = 0;
    c->keys[c->n] = s;
    c->values[c->n] = eq + 1;
  }
}

static inline ir_func *spec_build(void *ctx, int n, ir_error *err) {
  spec_ctx *c = ctx;
  const char *keys[SPEC_MAX_SETS + 1], *values[SPEC_MAX_SETS + 1];
  char nbuf[16];
  for (int i = 0; i < c->n; i++) keys[i] = c->keys[i], values[i] = c->values[i];
  snprintf(nbuf, sizeof nbuf, "%d", n);
  keys[c->n] = "n";
  values[c->n] = nbuf;
  fe_options o = {.root = test_root(), .keys = keys, .values = values, .n_sets = c->n + 1};
  fe_model *fm;
  fe_error fe;
  if (fe_load_model(c->path, &o, &fm, &fe) < 0) {
    ir_err(err, "%.480s", fe.msg);
    return NULL;
  }
  ir_func *f = fm->f;
  fm->f = NULL;
  fe_model_free(fm);
  return f;
}

static inline double u01_cb(void *g) { return rt_rng_uniform(g); }
static inline double normal_cb(void *g) { return rt_rng_normal(g); }

/* Draws every param with its spec initialiser (stream RT_STREAM_INIT + i). */
static inline void spec_init_params(rt_model *m, spec_ctx *c, uint64_t seed) {
  /* The initialisers come from the spec's fe_model. */
  const char *keys[SPEC_MAX_SETS + 1], *values[SPEC_MAX_SETS + 1];
  for (int i = 0; i < c->n; i++) keys[i] = c->keys[i], values[i] = c->values[i];
  fe_options o = {.root = test_root(), .keys = keys, .values = values, .n_sets = c->n};
  fe_model *fm;
  fe_error fe;
  if (fe_load_model(c->path, &o, &fm, &fe) < 0) fail_msg("%s", fe.msg);
  for (int i = 0; i < rt_model_n_params(m); i++) {
    const rt_param *p = rt_model_param(m, i);
    const fe_param *fp = fe_find_param(fm, p->name);
    assert_non_null(fp);
    rt_rng g;
    rt_rng_init(&g, seed, RT_STREAM_INIT + (uint64_t)i, 0);
    fe_init_apply(&fp->init, &p->type, rt_model_params(m) + p->offset, u01_cb,
                  normal_cb, &g);
  }
  fe_model_free(fm);
}

/* A model of spec with sets at training length L, parameters drawn. */
static inline rt_model *spec_model(spec_ctx *c, const char *spec,
                                   const char *const *sets, int L,
                                   rt_backend backend, int threads) {
  spec_init(c, spec, sets);
  rt_model_options o = {.build = spec_build, .ctx = c, .L = L,
                        .backend = backend, .threads = threads};
  ir_error err;
  rt_model *m = rt_model_new(&o, &err);
  if (!m) fail_msg("%s: %s", spec, err.msg);
  spec_init_params(m, c, 1);
  return m;
}

#endif
