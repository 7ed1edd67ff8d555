/* test_probe.c — probes in the frontend: probe(name, x) and x:probe(name)
 * record the scoped name and the node and return x; the graph (and so
 * every kernel compiled from it) is identical with and without probes;
 * fe_probe_function adds them as outputs the interpreter fills; nn.lua
 * probes attention weights [H, n, n] and Mamba's dt [n, E] under the
 * layers' names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "ir.h"
#include "runtime.h"

static const char *root(void) {
  const char *r = getenv("RECALL_ROOT");
  return r && *r ? r : ".";
}

/* The spec's source: `prelude` followed by root/path (or code itself when
 * path is NULL), run with "k=v" sets (NULL-terminated). NULL on error with
 * the message in err. */
static fe_model *load(const char *prelude, const char *path, const char *code,
                      fe_error *err, ...) {
  static char buf[16][64];
  const char *keys[16], *vals[16];
  int n = 0;
  va_list ap;
  va_start(ap, err);
  for (const char *kv; (kv = va_arg(ap, const char *)) && n < 16; n++) {
    snprintf(buf[n], sizeof buf[n], "%s", kv);
    char *eq = strchr(buf[n], '=');
    assert_non_null(eq);
    *eq = '\0';
    keys[n] = buf[n], vals[n] = eq + 1;
  }
  va_end(ap);
  rt_buf src = {0}, full = {0};
  rt_buf_printf(&src, "%s", prelude ? prelude : "");
  if (path) {
    rt_buf_printf(&full, "%s/%s", root(), path);
    FILE *f = fopen(full.s, "rb");
    assert_non_null(f);
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) rt_buf_printf(&src, "%.*s", (int)k, chunk);
    fclose(f);
  } else {
    rt_buf_printf(&src, "%s", code);
  }
  fe_options o = {.root = root(), .keys = keys, .values = vals, .n_sets = n};
  fe_model *m = NULL;
  int rc = fe_load_string(src.s, path ? full.s : "probe_test.lua", &o, &m, err);
  assert_true((rc == 0) == (m != NULL));
  rt_buf_free(&src), rt_buf_free(&full);
  return m;
}

static void check_type(const ir_type *t, int rank, int d0, int d1, int d2) {
  int d[3] = {d0, d1, d2};
  assert_int_equal(t->dtype, IR_F32);
  assert_int_equal(t->rank, rank);
  for (int i = 0; i < rank; i++) assert_int_equal(t->dim[i], d[i]);
}

static const char *SPEC =
    "local x = input('x', 'f32', {4, 3})\n"
    "local e = %s\n"                             /* exp(x), probed or not */
    "local m = scope('blk', function() return %s end)\n" /* e * 2 */
    "output('out', sum(m, 0))\n";

static void test_recorded(void **state) {
  (void)state;
  char code[512], plain[512];
  snprintf(code, sizeof code, SPEC, "probe('a', exp(x))", "(e * 2):probe('b')");
  snprintf(plain, sizeof plain, SPEC, "exp(x)", "e * 2");
  fe_error err;
  fe_model *m = load(NULL, NULL, code, &err, NULL);
  if (!m) fail_msg("%s", err.msg);
  fe_model *p = load(NULL, NULL, plain, &err, NULL);
  if (!p) fail_msg("%s", err.msg);
  assert_int_equal(m->n_probes, 2);
  assert_int_equal(p->n_probes, 0);
  assert_string_equal(m->probes[0].name, "a");
  assert_string_equal(m->probes[1].name, "blk.b");
  const ir_node *a = &m->f->nodes[m->probes[0].node], *b = &m->f->nodes[m->probes[1].node];
  assert_int_equal(a->op, IR_OP_EXP);
  assert_int_equal(b->op, IR_OP_MUL);
  assert_int_equal(b->in[0], m->probes[0].node); /* probe returned x itself */
  check_type(&a->type, 2, 4, 3, 0);
  assert_ptr_equal(fe_find_probe(m, "blk.b"), &m->probes[1]);
  assert_null(fe_find_probe(m, "b"));
  /* no node, no output: the same graph as without the probes */
  char *s1 = ir_print_str(m->f), *s2 = ir_print_str(p->f);
  assert_string_equal(s1, s2);
  assert_int_equal(m->f->n_outs, 1);
  free(s1), free(s2);

  /* fe_probe_function: the probes as outputs after the function's own,
   * computed by the interpreter: probe.a = exp(x), probe.blk.b = 2 exp(x) */
  ir_error ie;
  ir_func *f = fe_probe_function(m, &ie);
  if (!f) fail_msg("%s", ie.msg);
  assert_int_equal(f->n_outs, 3);
  assert_string_equal(f->outs[0].name, "out");
  assert_string_equal(f->outs[1].name, "probe.a");
  assert_string_equal(f->outs[2].name, "probe.blk.b");
  assert_int_equal(m->f->n_outs, 1); /* the model's own function unchanged */
  double x[12];
  const double *leaves[64] = {0};
  for (int i = 0; i < 12; i++) x[i] = 0.1 * i - 0.5;
  assert_true(f->n_nodes <= 64);
  leaves[ir_find_leaf(f, "x")] = x;
  double **v = ir_interp(f, IR_PREC_F64, leaves, &ie);
  if (!v) fail_msg("%s", ie.msg);
  for (int i = 0; i < 12; i++) {
    assert_true(fabs(v[f->outs[1].node][i] - exp(x[i])) < 1e-12);
    assert_true(fabs(v[f->outs[2].node][i] - 2 * exp(x[i])) < 1e-12);
  }
  ir_values_free(f, v);
  ir_func_free(f);
  fe_model_free(m), fe_model_free(p);
}

static void expect_error(const char *code, const char *want) {
  fe_error err;
  fe_model *m = load(NULL, NULL, code, &err, NULL);
  if (m) fail_msg("built, expected \"%s\"", want);
  if (!strstr(err.msg, want)) fail_msg("\"%s\" not in:\n%s", want, err.msg);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("local x = input('x', 'f32', {2})\nprobe('a', x)\nprobe('a', exp(x))\n",
               "probe_test.lua:3: probe \"a\": a probe of that name exists already");
  expect_error("local x = input('x', 'f32', {2})\nscope('s', function()\n"
               "  probe('a', x) probe('a', x) end)\n",
               "probe \"s.a\": a probe of that name exists already");
  expect_error("local x = input('x', 'f32', {2})\nx:probe('')\n",
               "probe_test.lua:2: probe: the name is empty");
  expect_error("probe('a', 3)\n", "probe_test.lua:1:");
}

/* The probes nn.lua makes, by name and shape, on the study's models. */
static void test_nn_probes(void **state) {
  (void)state;
  fe_error err;
  fe_model *h = load(NULL, "specs/models/hybrid.lua", NULL, &err, "K=8", "d=8", "L=8", NULL);
  if (!h) fail_msg("%s", err.msg);
  assert_int_equal(h->n_probes, 2);
  const fe_probe *dt = fe_find_probe(h, "layers.0.mixer.dt");
  const fe_probe *at = fe_find_probe(h, "layers.1.mixer.attn");
  assert_non_null(dt), assert_non_null(at);
  check_type(&h->f->nodes[dt->node].type, 2, 8, 16, 0); /* [n, E], E = 2d */
  assert_int_equal(h->f->nodes[dt->node].op, IR_OP_SOFTPLUS);
  check_type(&h->f->nodes[at->node].type, 3, 1, 8, 8); /* [H, n, n] */
  assert_int_equal(h->f->nodes[at->node].op, IR_OP_SOFTMAX);
  assert_true(h->f->nodes[at->node].attr.causal);
  fe_model_free(h);

  fe_model *t = load(NULL, "specs/models/transformer.lua", NULL, &err, "K=8", "d=8",
                     "L=8", "n=12", "heads=2", NULL);
  if (!t) fail_msg("%s", err.msg);
  assert_int_equal(t->n_probes, 2);
  assert_string_equal(t->probes[0].name, "layers.0.mixer.attn");
  assert_string_equal(t->probes[1].name, "layers.1.mixer.attn");
  for (int i = 0; i < 2; i++) check_type(&t->f->nodes[t->probes[i].node].type, 3, 2, 12, 12);
  fe_model_free(t);

  fe_model *m = load(NULL, "specs/models/mamba.lua", NULL, &err, "K=8", "d=4", "L=8",
                     "layers=3", "expand=3", NULL);
  if (!m) fail_msg("%s", err.msg);
  assert_int_equal(m->n_probes, 3);
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "layers.%d.mixer.dt", i);
    assert_string_equal(m->probes[i].name, name);
    check_type(&m->f->nodes[m->probes[i].node].type, 2, 8, 12, 0);
  }
  fe_model_free(m);
}

/* nn.lua with probe() made the identity: no probes, and the same graph,
 * training kernel and forward kernel as with them. */
static void test_kernels_unchanged(void **state) {
  (void)state;
  static const char *const specs[] = {"specs/models/hybrid.lua", "specs/models/transformer.lua",
                                      "specs/models/mamba.lua"};
  for (int s = 0; s < 3; s++) {
    fe_error err;
    fe_model *with = load(NULL, specs[s], NULL, &err, "K=8", "d=8", "L=8", NULL);
    if (!with) fail_msg("%s", err.msg);
    fe_model *without = load("probe = function(name, x) return x end\n", specs[s], NULL, &err,
                             "K=8", "d=8", "L=8", NULL);
    if (!without) fail_msg("%s", err.msg);
    assert_true(with->n_probes >= 2);
    assert_int_equal(without->n_probes, 0);
    char *a = ir_print_str(with->f), *b = ir_print_str(without->f);
    assert_string_equal(a, b);
    free(a), free(b);
    assert_int_equal(with->f->n_outs, 2); /* logits, loss */
    for (int train = 0; train < 2; train++) {
      ir_error ie;
      ir_func *ka = rt_model_kernel_function(with->f, train, &ie);
      if (!ka) fail_msg("%s", ie.msg);
      ir_func *kb = rt_model_kernel_function(without->f, train, &ie);
      if (!kb) fail_msg("%s", ie.msg);
      a = ir_print_str(ka), b = ir_print_str(kb);
      assert_string_equal(a, b);
      free(a), free(b);
      ir_func_free(ka), ir_func_free(kb);
    }
    fe_model_free(with), fe_model_free(without);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recorded),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_nn_probes),
      cmocka_unit_test(test_kernels_unchanged),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
