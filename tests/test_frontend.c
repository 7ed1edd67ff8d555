/* test_frontend.c — the Lua frontend: every IR op reachable from Lua,
 * attributes and shapes of the tensor API, errors at the user's line,
 * scopes, options, initialisers, the study's model specs against the
 * golden files (names, shapes, then logits, loss and every gradient through
 * the interpreter and autodiff) and finite-difference gradient checks of
 * every model spec, including the worked example of docs/models.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend.h"
#include "ir.h"
#include "runtime.h"

/* ---- helpers ---- */

static const char *root(void) {
  const char *r = getenv("RECALL_ROOT");
  return r && *r ? r : ".";
}

enum { MAXSET = 16 };

/* Builds from code (path NULL) or the spec root/path, with "k=v" sets
 * (NULL-terminated); NULL on error with the message in err. */
static fe_model *build_v(const char *code, const char *path, fe_error *err, va_list ap) {
  static char buf[MAXSET][128];
  const char *keys[MAXSET], *vals[MAXSET];
  int n = 0;
  for (const char *kv; (kv = va_arg(ap, const char *)) && n < MAXSET; n++) {
    snprintf(buf[n], sizeof buf[n], "%s", kv);
    char *eq = strchr(buf[n], '=');
    assert_non_null(eq);
    *eq = '\0';
    keys[n] = buf[n], vals[n] = eq + 1;
  }
  fe_options o = {.root = root(), .keys = keys, .values = vals, .n_sets = n};
  fe_model *m = NULL;
  int rc;
  if (code) {
    rc = fe_load_string(code, path ? path : "test.lua", &o, &m, err);
  } else {
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", root(), path);
    rc = fe_load_model(full, &o, &m, err);
  }
  assert_true((rc == 0) == (m != NULL));
  return m;
}

/* Must build; fails the test with the frontend's message otherwise. */
static fe_model *ok_code(const char *code, ...) {
  fe_error err;
  va_list ap;
  va_start(ap, code);
  fe_model *m = build_v(code, NULL, &err, ap);
  va_end(ap);
  if (!m) fail_msg("spec failed:\n%s\n---\n%s", code, err.msg);
  return m;
}

static fe_model *ok_spec(const char *path, ...) {
  fe_error err;
  va_list ap;
  va_start(ap, path);
  fe_model *m = build_v(NULL, path, &err, ap);
  va_end(ap);
  if (!m) fail_msg("%s failed:\n%s", path, err.msg);
  return m;
}

/* Must fail; returns the message (static). */
static const char *fail_code(const char *name, const char *code, ...) {
  static fe_error err;
  va_list ap;
  va_start(ap, code);
  fe_model *m = build_v(code, name, &err, ap);
  va_end(ap);
  if (m) fail_msg("spec built but should fail:\n%s", code);
  return err.msg;
}

static const char *fail_spec(const char *path, ...) {
  static fe_error err;
  va_list ap;
  va_start(ap, path);
  fe_model *m = build_v(NULL, path, &err, ap);
  va_end(ap);
  if (m) fail_msg("%s built but should fail", path);
  return err.msg;
}

static void expect_has(const char *msg, const char *part) {
  if (!strstr(msg, part)) fail_msg("expected \"%s\" in:\n%s", part, msg);
}

static void expect_prefix(const char *msg, const char *prefix) {
  if (strncmp(msg, prefix, strlen(prefix)))
    fail_msg("expected the message to start with \"%s\":\n%s", prefix, msg);
}

static int count_op(const ir_func *f, ir_op op) {
  int n = 0;
  for (int i = 0; i < f->n_nodes; i++) n += f->nodes[i].op == op;
  return n;
}

static const ir_node *out_node(const fe_model *m, const char *name) {
  int o = ir_find_output(m->f, name);
  if (o < 0) fail_msg("no output %s", name);
  return &m->f->nodes[m->f->outs[o].node];
}

static const ir_node *leaf_node(const fe_model *m, const char *name) {
  int id = ir_find_leaf(m->f, name);
  if (id < 0) fail_msg("no leaf %s", name);
  return &m->f->nodes[id];
}

static void expect_type(const ir_type *t, const char *want) {
  char s[64];
  ir_type_str(t, s, sizeof s);
  if (strcmp(s, want)) fail_msg("type %s, expected %s", s, want);
}

/* ---- every op of IR_OP_LIST is reachable ---- */

/* Run after PRELUDE (x f32[2,3]); each must create a node of its op.
 * Unary and binary ops are reached by their IR name (exp(x), max(x, x)). */
#define PRELUDE "local x = input('x0', 'f32', {2, 3})\n"
static const char *const op_cases[IR_OP_COUNT] = {
    [IR_OP_INPUT] = "input('i', 'i32', {4})",
    [IR_OP_PARAM] = "param('p', {2}, init.normal(0, 1))",
    [IR_OP_CONST] = "const('c', {2}, {1, 2})",
    [IR_OP_FILL] = "fill(1.5, {2})",
    [IR_OP_MATMUL] = "x:matmul(input('w', 'f32', {3, 4}))",
    [IR_OP_PERMUTE] = "x:permute{1, 0}",
    [IR_OP_RESHAPE] = "x:reshape{3, -1}",
    [IR_OP_EXPAND] = "x:reshape{1, 2, 3}:expand{4, 2, 3}",
    [IR_OP_SLICE] = "x:slice(1, 0, 2)",
    [IR_OP_PAD] = "x:pad(0, 1, 2)",
    [IR_OP_CONCAT] = "concat({x, x}, 0)",
    [IR_OP_SUM] = "x:sum(1)",
    [IR_OP_AMAX] = "x:amax(1)",
    [IR_OP_MEAN] = "x:mean(1)",
    [IR_OP_SOFTMAX] = "x:softmax{causal = true}",
    [IR_OP_GATHER] = "gather(x, input('i', 'i32', {5}))",
    [IR_OP_SCATTER_ADD] = "scatter_add(x, input('i', 'i32', {2}), 7)",
    [IR_OP_SELECT_ROW] = "x:select_row(input('p', 'i32', {}))",
    [IR_OP_ONEHOT] = "onehot(input('i', 'i32', {4}), 6)",
    [IR_OP_CROSS_ENTROPY] = "cross_entropy(x, input('l', 'i32', {2}))",
    [IR_OP_CONV1D] = "conv1d(x, input('w', 'f32', {3, 4}))",
    [IR_OP_CONV1D_BWD_X] = "conv1d_bwd_x(x, input('w', 'f32', {3, 4}))",
    [IR_OP_CONV1D_BWD_W] = "conv1d_bwd_w(x, x, 4)",
    [IR_OP_SCAN] = "scan(x, x, input('A', 'f32', {3, 5}), input('B', 'f32', {2, 5}),"
                   " input('C', 'f32', {2, 5}))",
    [IR_OP_ROPE] = "rope(input('q', 'f32', {2, 1, 4}), input('c', 'f32', {2, 2}),"
                   " input('s', 'f32', {2, 2}))",
    [IR_OP_SCAN_BWD] = "scan_bwd(input('ud', 'f32', {2, 6}), input('A', 'f32', {3, 5}),"
                       " input('bc', 'f32', {2, 10}), x)",
};

static void every_op_reachable(void **s) {
  (void)s;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    char code[512];
    if (op_cases[op])
      snprintf(code, sizeof code, PRELUDE "local y = %s", op_cases[op]);
    else if (ir_op_is_unary(op))
      snprintf(code, sizeof code, PRELUDE "local y = %s(x)", ir_op_name(op));
    else if (ir_op_is_binary(op))
      snprintf(code, sizeof code, PRELUDE "local y = %s(x, x)", ir_op_name(op));
    else
      fail_msg("op %s has no Lua case in test_frontend.c", ir_op_name(op));
    fe_model *m = ok_code(code, NULL);
    if (count_op(m->f, op) == 0) fail_msg("%s did not make a %s node", code, ir_op_name(op));
    fe_model_free(m);
    if (ir_op_is_unary(op) || ir_op_is_binary(op)) { /* the method form too */
      snprintf(code, sizeof code, PRELUDE "local y = x:%s(%s)", ir_op_name(op),
               ir_op_is_binary(op) ? "x" : "");
      m = ok_code(code, NULL);
      if (count_op(m->f, op) == 0) fail_msg("%s did not make a %s node", code, ir_op_name(op));
      fe_model_free(m);
    }
  }
}

/* Method and global forms are the same function; metamethods map to ops. */
static void methods_and_metamethods(void **s) {
  (void)s;
  fe_model *m = ok_code(PRELUDE
                        "output('m', x:exp())\n"
                        "output('g', exp(x))\n"
                        "output('add', x + x) output('sub', x - 2) output('mul', 3 * x)\n"
                        "output('div', x / x) output('neg', -x) output('mx', x:max(0))\n",
                        NULL);
  assert_int_equal(out_node(m, "m")->op, IR_OP_EXP);
  assert_int_equal(out_node(m, "g")->op, IR_OP_EXP);
  assert_int_equal(out_node(m, "add")->op, IR_OP_ADD);
  assert_int_equal(out_node(m, "neg")->op, IR_OP_NEG);
  assert_int_equal(out_node(m, "div")->op, IR_OP_DIV);
  assert_int_equal(out_node(m, "mx")->op, IR_OP_MAX);
  /* numbers become f32[] fills on the side they were written */
  const ir_node *sub = out_node(m, "sub"), *mul = out_node(m, "mul");
  assert_int_equal(sub->op, IR_OP_SUB);
  const ir_node *two = &m->f->nodes[sub->in[1]], *three = &m->f->nodes[mul->in[0]];
  assert_int_equal(two->op, IR_OP_FILL);
  assert_true(two->attr.value == 2.0);
  expect_type(&two->type, "f32[]");
  assert_int_equal(three->op, IR_OP_FILL);
  assert_true(three->attr.value == 3.0);
  assert_int_equal(m->f->nodes[mul->in[1]].op, IR_OP_INPUT);
  fe_model_free(m);
}

/* ---- attributes and shapes as documented in docs/models.md ---- */

static void layout_attributes(void **s) {
  (void)s;
  fe_model *m = ok_code(
      "local x = input('x', 'f32', {2, 3, 4})\n"
      "output('T', x:T())\n"
      "output('perm', x:permute{2, 0, 1})\n"
      "output('sl_last', x:slice(-1, 1))\n"
      "output('sl_neg', x:slice(1, -2, -1))\n"
      "output('mm_tb', x:matmul(x, {tb = true}))\n"
      "output('mm_ta', x:matmul(x, {ta = true}))\n"
      "output('sum', x:sum())\n"
      "output('mean0', x:mean(0))\n"
      "output('cat6', concat({x, x, x, x, x, x}, -1))\n"
      "output('rs', x:reshape{-1, 4})\n"
      "output('pad', x:pad(1, 2))\n"
      "output('sm', x:softmax())\n"
      "output('ex', x:sum(0):expand{5, 2, 3, 4})\n",
      NULL);
  const ir_node *n = out_node(m, "T");
  expect_type(&n->type, "f32[2,4,3]");
  assert_int_equal(n->attr.perm[0], 0);
  assert_int_equal(n->attr.perm[1], 2);
  assert_int_equal(n->attr.perm[2], 1);
  expect_type(&out_node(m, "perm")->type, "f32[4,2,3]");
  n = out_node(m, "sl_last"); /* axis -1 = 2, end defaults to the size */
  assert_int_equal(n->attr.axis, 2);
  assert_int_equal(n->attr.start, 1);
  assert_int_equal(n->attr.end, 4);
  n = out_node(m, "sl_neg"); /* Python-style: [-2, -1) of 3 = [1, 2) */
  assert_int_equal(n->attr.axis, 1);
  assert_int_equal(n->attr.start, 1);
  assert_int_equal(n->attr.end, 2);
  n = out_node(m, "mm_tb");
  assert_true(n->attr.tb && !n->attr.ta);
  expect_type(&n->type, "f32[2,3,3]");
  n = out_node(m, "mm_ta");
  assert_true(n->attr.ta && !n->attr.tb);
  expect_type(&n->type, "f32[2,4,4]");
  n = out_node(m, "sum"); /* default axis is the last; it is kept */
  assert_int_equal(n->attr.axis, 2);
  expect_type(&n->type, "f32[2,3,1]");
  expect_type(&out_node(m, "mean0")->type, "f32[1,3,4]");
  expect_type(&out_node(m, "cat6")->type, "f32[2,3,24]");
  assert_int_equal(count_op(m->f, IR_OP_CONCAT), 2); /* 4 parts, then 3 */
  expect_type(&out_node(m, "rs")->type, "f32[6,4]");
  n = out_node(m, "pad");
  assert_int_equal(n->attr.start, 2);
  assert_int_equal(n->attr.end, 0);
  expect_type(&n->type, "f32[2,5,4]");
  assert_false(out_node(m, "sm")->attr.causal);
  expect_type(&out_node(m, "ex")->type, "f32[5,2,3,4]");
  fe_model_free(m);
}

static void seq_ops_shapes(void **s) {
  (void)s;
  fe_model *m = ok_code(
      "local u = input('u', 'f32', {6, 4})\n"
      "local A = input('A', 'f32', {4, 3})\n"
      "local B, C = input('B', 'f32', {6, 3}), input('C', 'f32', {6, 3})\n"
      "output('y', scan(u, u, A, B, C))\n"
      "output('y4', scan(u, u, A, concat({B, C}, 1)))\n"
      "output('sm', (u:matmul(u, {tb = true})):softmax{causal = true})\n"
      "local t = input('t', 'i32', {6})\n"
      "output('g', gather(u, t))\n"
      "output('oh', onehot(t, 9))\n"
      "output('sr', select_row(u, input('p', 'i32', {})))\n"
      "output('sa', scatter_add(u, t, 11))\n"
      "output('ce', cross_entropy(u, t))\n"
      "output('cw', conv1d_bwd_w(u, u, 3))\n",
      NULL);
  const ir_node *y = out_node(m, "y");
  expect_type(&y->type, "f32[6,4]");
  const ir_node *bc = &m->f->nodes[y->in[3]];
  assert_int_equal(bc->op, IR_OP_CONCAT); /* bc = [B | C] */
  assert_int_equal(bc->attr.axis, 1);
  assert_string_equal(m->f->nodes[bc->in[0]].name, "B");
  assert_string_equal(m->f->nodes[bc->in[1]].name, "C");
  assert_true(out_node(m, "sm")->attr.causal);
  expect_type(&out_node(m, "g")->type, "f32[6,4]");
  expect_type(&out_node(m, "oh")->type, "f32[6,9]");
  expect_type(&out_node(m, "sr")->type, "f32[4]");
  expect_type(&out_node(m, "sa")->type, "f32[11,4]");
  expect_type(&out_node(m, "ce")->type, "f32[6]");
  expect_type(&out_node(m, "cw")->type, "f32[4,3]");
  fe_model_free(m);
}

/* Tensors show their shape to Lua; nodes record the spec line. */
static void tensor_properties_and_lines(void **s) {
  (void)s;
  fe_model *m = ok_code("local x = input('x', 'f32', {2, 3, 4})\n"
                        "assert(x.shape[1] == 2 and x.shape[3] == 4 and #x.shape == 3)\n"
                        "assert(x.rank == 3 and x.dtype == 'f32' and x:size(-1) == 4)\n"
                        "assert(tostring(x):find('f32[2,3,4]', 1, true), tostring(x))\n"
                        "assert(tostring(x):find('input \"x\"', 1, true), tostring(x))\n"
                        "local y = x:exp()\n"
                        "assert(leaf('x').id == x.id and leaf('nope') == nil)\n"
                        "assert(input('i', 'i32', {}).dtype == 'i32')\n",
                        NULL);
  int id = ir_find_leaf(m->f, "x");
  assert_int_equal(m->f->nodes[id].line, 1);
  for (int i = 0; i < m->f->n_nodes; i++)
    if (m->f->nodes[i].op == IR_OP_EXP) assert_int_equal(m->f->nodes[i].line, 6);
  assert_int_equal(count_op(m->f, IR_OP_EXP), 1);
  fe_model_free(m);
}

/* ---- errors point at the user's line ---- */

static void shape_error_names_line_and_sizes(void **s) {
  (void)s;
  const char *msg = fail_code("specs/models/foo.lua",
                              "local x = input('x', 'f32', {4, 8})\n"
                              "local w = param('w', {16, 4}, init.constant(0))\n"
                              "\n"
                              "local y = x:matmul(w)\n",
                              NULL);
  expect_prefix(msg, "specs/models/foo.lua:4: matmul: inner sizes differ, 8 vs 16");
  expect_has(msg, "stack traceback:");
  /* inside the library the error is still reported at the user's call */
  msg = fail_code("user.lua",
                  "local nn = require 'nn'\n"
                  "local q = input('q', 'f32', {4, 1, 8})\n"
                  "local c, s = input('c', 'f32', {3, 4}), input('s', 'f32', {3, 4})\n"
                  "local y = nn.rope(q, c, s)\n",
                  NULL);
  expect_prefix(msg, "user.lua:4: rope: lengths of input and tables differ, 4 vs 3");
  expect_has(msg, "nn.lua:"); /* the traceback shows the library frames */
  msg = fail_code("user.lua",
                  "local nn = require 'nn'\n"
                  "local x = input('x', 'f32', {4, 8})\n"
                  "nn.block(x, 0, nn.layernorm, nn.attention, {heads = 3})\n",
                  NULL);
  expect_prefix(msg, "user.lua:3: attention: d 8 is not a multiple of heads 3");
  /* a Lua error inside the library is located at the user's line too */
  msg = fail_code("user.lua",
                  "local nn = require 'nn'\n"
                  "local x = input('x', 'f32', {4, 8})\n"
                  "local y = nn.mamba(x, {d_state = 4})\n",
                  NULL);
  expect_prefix(msg, "user.lua:3: ");
  expect_has(msg, "specs/lib/nn.lua:");
  expect_has(msg, "attempt to perform arithmetic on a nil value (field 'expand')");
  /* plain Lua errors keep Lua's own location */
  msg = fail_code("user.lua", "local x = 1\nlocal y = x.z.w\n", NULL);
  expect_prefix(msg, "user.lua:2: attempt to index");
  msg = fail_code("user.lua", "local x = input('x', 'f32', {2})\nlocal y = x:slice(3, 0, 1)\n",
                  NULL);
  expect_prefix(msg, "user.lua:2: slice: axis 3 out of range for rank 1");
  msg = fail_code("user.lua", "local x = input('x', 'f32', {2, 3})\nx:reshape{4, -1}\n", NULL);
  expect_prefix(msg, "user.lua:2: reshape: cannot infer the -1: f32[2,3] has 6 elements, "
                     "not a multiple of 4");
  msg = fail_code("user.lua", "local x = input('x', 'f32', {2, 3})\nx:reshape{5}\n", NULL);
  expect_prefix(msg, "user.lua:2: reshape: element counts differ, f32[2,3] has 6, f32[5] has 5");
  msg = fail_code("user.lua", "param('w', {2})\n", NULL);
  expect_prefix(msg, "user.lua:1: param \"w\": needs an initialiser");
  msg = fail_code("user.lua", "const('c', {3}, {1, 2})\n", NULL);
  expect_prefix(msg, "user.lua:1: const \"c\": 2 values for 3 elements");
  msg = fail_code("user.lua", "input('x', 'f16', {3})\n", NULL);
  expect_prefix(msg, "user.lua:1: input: dtype must be");
  msg = fail_code("user.lua", "local x = input('x', 'f32', {3})\nx = input('x', 'f32', {3})\n",
                  NULL);
  expect_prefix(msg, "user.lua:2: input: name \"x\" is already used");
  msg = fail_code("user.lua", "local x = \n", NULL);
  expect_prefix(msg, "user.lua:");
  expect_has(msg, "unexpected symbol");
  fe_error err;
  fe_model *m = NULL;
  fe_options o = {.root = root()};
  assert_int_equal(fe_load_model("/nonexistent/spec.lua", &o, &m, &err), -1);
  assert_null(m);
  expect_has(err.msg, "/nonexistent/spec.lua");
}

/* Consts: data from Lua, or bound later by the caller. */
static void consts_bound_or_later(void **s) {
  (void)s;
  fe_model *m = ok_code("const('a', {2, 2}, later)\n"
                        "const('b', {3})\n"
                        "const('c', {2}, {0.5, -1.25})\n",
                        NULL);
  assert_int_equal(m->n_consts, 3);
  assert_null(leaf_node(m, "a")->data);
  assert_null(leaf_node(m, "b")->data);
  const float *c = leaf_node(m, "c")->data;
  assert_true(c && c[0] == 0.5f && c[1] == -1.25f);
  fe_model_free(m);
  expect_has(fail_code("c.lua", "const('c', {2}, {1, 'x'})", NULL), "c.lua:1: const \"c\": value 2 is not a number");
}

/* Without a root, ROOT/specs/... in the spec's path gives it; modules
 * next to the spec are found by require. */
static void root_from_path_and_local_modules(void **s) {
  (void)s;
  char full[1024], *saved = strdup(root());
  snprintf(full, sizeof full, "%s/specs/models/mamba.lua", saved);
  unsetenv("RECALL_ROOT");
  fe_model *m = NULL;
  fe_error err;
  int rc = fe_load_model(full, NULL, &m, &err);
  if (rc) fail_msg("%s", err.msg);
  fe_model_free(m);
  char dir[] = "/tmp/recall_fe_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char mod[1100], spec[1100];
  snprintf(mod, sizeof mod, "%s/mylayers.lua", dir);
  snprintf(spec, sizeof spec, "%s/spec.lua", dir);
  FILE *f = fopen(mod, "w");
  fputs("return {double = function(x) return x + x end}\n", f);
  fclose(f);
  f = fopen(spec, "w");
  fputs("local my = require 'mylayers'\noutput('y', my.double(input('x', 'f32', {2})))\n", f);
  fclose(f);
  fe_options o = {.root = saved};
  rc = fe_load_model(spec, &o, &m, &err);
  remove(mod), remove(spec), rmdir(dir);
  setenv("RECALL_ROOT", saved, 1);
  free(saved);
  if (rc) fail_msg("%s", err.msg);
  assert_int_equal(out_node(m, "y")->op, IR_OP_ADD);
  fe_model_free(m);
}

/* ---- scopes ---- */

static void scoped_names(void **s) {
  (void)s;
  fe_model *m = ok_code(
      "local c = init.constant(0)\n"
      "local r1, r2 = scope('a', function(k)\n"
      "  param('w', {1}, c)\n"
      "  scope('b', function() param('w', {1}, c); const('k', {1}, {5}) end)\n"
      "  scope('', function() param('top', {1}, c) end)\n"
      "  param('v', {1}, c)\n"
      "  assert(not pcall(scope, 'c', function() error('boom') end))\n"
      "  param('u', {1}, c)\n"
      "  return k, 7\n"
      "end, 3)\n"
      "assert(r1 == 3 and r2 == 7)\n"
      "param('z', {1}, c)\n"
      "input('tokens', 'i32', {2})\n",
      NULL);
  const char *want[] = {"a.w", "a.b.w", "top", "a.v", "a.u", "z"};
  assert_int_equal(m->n_params, 6);
  for (int i = 0; i < 6; i++) {
    assert_string_equal(m->params[i].name, want[i]);
    assert_string_equal(m->f->nodes[m->params[i].node].name, want[i]);
  }
  assert_int_equal(m->n_consts, 1);
  assert_string_equal(m->f->nodes[m->consts[0]].name, "a.b.k");
  assert_true(m->f->nodes[m->consts[0]].data[0] == 5.0f);
  assert_int_equal(ir_find_leaf(m->f, "tokens"), m->f->n_nodes - 1); /* inputs unscoped */
  assert_non_null(fe_find_param(m, "a.b.w"));
  assert_null(fe_find_param(m, "w"));
  fe_model_free(m);
}

/* ---- options ---- */

static const char options_code[] =
    "local o = options{a = 1, s = 'x', b = false, r = 0.5,\n"
    "                  f = function(o) return o.a * 2 end}\n"
    "assert(math.type(o.a) == 'integer')\n"
    "output('dummy', fill(o.a, {1}))\n";

static void options_and_set(void **s) {
  (void)s;
  fe_model *m = ok_code(options_code, NULL);
  assert_true(fe_config_num(m, "a", -1) == 1);
  assert_true(fe_config_num(m, "f", -1) == 2);
  assert_string_equal(fe_config_str(m, "s", "?"), "x");
  assert_int_equal(fe_config(m, "b")->kind, FE_VAL_BOOL);
  assert_true(fe_config_num(m, "b", -1) == 0);
  assert_null(fe_config(m, "zz"));
  for (int i = 1; i < m->n_config; i++) /* sorted */
    assert_true(strcmp(m->config[i - 1].key, m->config[i].key) < 0);
  fe_model_free(m);
  m = ok_code(options_code, "a=5", "s=hello", "b=true", "r=1e-3", NULL);
  assert_true(fe_config_num(m, "a", -1) == 5);
  assert_true(fe_config_num(m, "f", -1) == 10); /* derived after --set */
  assert_string_equal(fe_config_str(m, "s", "?"), "hello");
  assert_true(fe_config_num(m, "b", -1) == 1);
  assert_true(fe_config_num(m, "r", -1) == 1e-3);
  fe_model_free(m);
  m = ok_code(options_code, "f=3", "a=4.0", NULL); /* a derived option can be set */
  assert_true(fe_config_num(m, "f", -1) == 3);
  assert_true(fe_config_num(m, "a", -1) == 4);
  fe_model_free(m);
  expect_has(fail_code("o.lua", options_code, "a=abc", NULL), "o.lua:1: --set a=abc: a takes a number");
  expect_has(fail_code("o.lua", options_code, "a=1.5", NULL), "a takes an integer");
  expect_has(fail_code("o.lua", options_code, "b=maybe", NULL), "b takes true or false");
  const char *msg = fail_code("o.lua", options_code, "zz=1", NULL);
  expect_has(msg, "--set zz: the spec has no option zz");
  expect_has(msg, "a, b, f, r, s");
}

/* ---- initialisers ---- */

static double fixed_u(void *r) { return *(double *)r; }
static double fixed_n(void *r) { return *(double *)r; }

static void init_formulas(void **s) {
  (void)s;
  float out[12];
  double v = 0.25;
  ir_type t = {.dtype = IR_F32, .rank = 2, .dim = {3, 4}};
  fe_init in = {.kind = FE_INIT_A_LOG};
  fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
  for (int e = 0; e < 3; e++)
    for (int k = 0; k < 4; k++) assert_true(out[e * 4 + k] == (float)log(k + 1.0));
  in = (fe_init){.kind = FE_INIT_UNIFORM, .a = -2, .b = 6};
  fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
  assert_true(out[7] == 0.0f); /* -2 + 8 * 0.25 */
  v = 2;
  in = (fe_init){.kind = FE_INIT_NORMAL, .a = 1, .b = 0.5};
  fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
  assert_true(out[11] == 2.0f);
  in = (fe_init){.kind = FE_INIT_CONSTANT, .a = 3};
  fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
  assert_true(out[0] == 3.0f);
  /* dt_bias: softplus(result) = dt, dt log-uniform: u = 0 -> dt_min,
   * u = 0.5 -> geometric mean; below the floor -> floor */
  in = (fe_init){.kind = FE_INIT_DT_BIAS, .dt_min = 1e-3, .dt_max = 0.1, .dt_floor = 1e-4};
  for (int i = 0; i < 3; i++) {
    double u[] = {0, 0.5, 0.999}, dt[] = {1e-3, 1e-2, exp(log(1e-3) + 0.999 * log(100.0))};
    v = u[i];
    fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
    assert_float_equal(log1p(exp((double)out[5])), dt[i], dt[i] * 1e-5);
  }
  in.dt_min = in.dt_max = 1e-5;
  fe_init_apply(&in, &t, out, fixed_u, fixed_n, &v);
  assert_float_equal(out[0], log(expm1(1e-4)), 1e-5);
  char buf[64];
  assert_string_equal(fe_init_str(&in, buf, sizeof buf), "dt_bias(1e-05, 1e-05, floor 0.0001)");
  /* the Lua constructors make the same descriptors */
  fe_model *m = ok_code("param('u', {2}, init.uniform(-1, 2))\n"
                        "param('n', {2}, init.normal(0, 0.02))\n"
                        "param('c', {2}, init.constant(7))\n"
                        "param('a', {2, 3}, init.a_log())\n"
                        "param('d', {2}, init.dt_bias{dt_max = 0.2})\n",
                        NULL);
  const fe_init *u = &fe_find_param(m, "u")->init, *n = &fe_find_param(m, "n")->init;
  assert_true(u->kind == FE_INIT_UNIFORM && u->a == -1 && u->b == 2);
  assert_true(n->kind == FE_INIT_NORMAL && n->a == 0 && n->b == 0.02);
  assert_true(fe_find_param(m, "c")->init.kind == FE_INIT_CONSTANT && fe_find_param(m, "c")->init.a == 7);
  assert_int_equal(fe_find_param(m, "a")->init.kind, FE_INIT_A_LOG);
  const fe_init *d = &fe_find_param(m, "d")->init;
  assert_true(d->kind == FE_INIT_DT_BIAS && d->dt_min == 1e-3 && d->dt_max == 0.2 && d->dt_floor == 1e-4);
  fe_model_free(m);
  expect_has(fail_code("i.lua", "param('u', {2}, init.uniform(2, 1))", NULL), "i.lua:1: init.uniform: lo 2 > hi 1");
  expect_has(fail_code("i.lua", "param('u', {2}, {kind = 'bogus'})", NULL), "unknown kind bogus");
}

/* ---- the study's model specs ---- */

typedef struct {
  const char *golden, *spec, *pe;
} model_case;

static const model_case study[] = {
    {"transformer_learned", "specs/models/transformer.lua", "pe=learned"},
    {"transformer_rope", "specs/models/transformer.lua", "pe=rope"},
    {"transformer_nope", "specs/models/transformer.lua", "pe=nope"},
    {"mamba", "specs/models/mamba.lua", NULL},
    {"hybrid", "specs/models/hybrid.lua", NULL},
};
enum { N_STUDY = sizeof study / sizeof study[0] };

static rt_tensors *read_golden(const char *model) {
  char path[1024];
  snprintf(path, sizeof path, "%s/../shared/golden/%s_K16_d8_L16.safetensors", root(), model);
  ir_error e;
  rt_tensors *ts = rt_st_read(path, &e);
  if (!ts) fail_msg("%s", e.msg);
  return ts;
}

static bool is_data_name(const char *n) {
  return !strncmp(n, "grad.", 5) || !strcmp(n, "tokens") || !strcmp(n, "labels") ||
         !strcmp(n, "logits") || !strcmp(n, "loss");
}

static void expect_same_shape(const ir_node *n, const rt_tensor *t) {
  char s[64], g[64];
  ir_type_str(&n->type, s, sizeof s);
  rt_tensor_type_str(t, g, sizeof g);
  if (n->type.rank != t->rank) fail_msg("%s: %s vs golden %s", n->name, s, g);
  for (int i = 0; i < t->rank; i++)
    if (n->type.dim[i] != t->dim[i]) fail_msg("%s: %s vs golden %s", n->name, s, g);
}

/* Exactly the golden file's parameters (names and shapes), the frozen
 * embedding as an unbound const, and the per-example interface. */
static void study_names_shapes(void **s) {
  (void)s;
  for (int c = 0; c < N_STUDY; c++) {
    rt_tensors *ts = read_golden(study[c].golden);
    fe_model *m = ok_spec(study[c].spec, "K=16", "d=8", "L=16", study[c].pe, NULL);
    int n_golden = 0;
    for (int i = 0; i < ts->n; i++) {
      const char *name = ts->t[i]->name;
      if (is_data_name(name) || !strcmp(name, "embedding.weight")) continue;
      n_golden++;
      const fe_param *p = fe_find_param(m, name);
      if (!p) fail_msg("%s: no param %s", study[c].golden, name);
      expect_same_shape(&m->f->nodes[p->node], ts->t[i]);
    }
    for (int i = 0; i < m->n_params; i++) {
      char g[300];
      snprintf(g, sizeof g, "grad.%s", m->params[i].name);
      if (!rt_tensors_find(ts, m->params[i].name) || !rt_tensors_find(ts, g))
        fail_msg("%s: param %s is not in the golden file", study[c].golden, m->params[i].name);
    }
    assert_int_equal(m->n_params, n_golden);
    const ir_node *V = leaf_node(m, "embedding.weight");
    assert_int_equal(V->op, IR_OP_CONST);
    assert_null(V->data);
    expect_same_shape(V, rt_tensors_find(ts, "embedding.weight"));
    expect_type(&leaf_node(m, "tokens")->type, "i32[16]");
    expect_type(&leaf_node(m, "pos")->type, "i32[]");
    expect_type(&leaf_node(m, "label")->type, "i32[]");
    expect_type(&out_node(m, "logits")->type, "f32[16]");
    expect_type(&out_node(m, "loss")->type, "f32[]");
    ir_error e;
    assert_int_equal(ir_verify(m->f, &e), 0);
    assert_true(fe_config_num(m, "n", 0) == 16);
    fe_model_free(m);
    rt_tensors_free(ts);
  }
}

/* The initialisers of DESIGN.md section 1 at K 16, d 64 (E 128, R 4). */
static void study_initialisers(void **s) {
  (void)s;
  fe_model *m = ok_spec("specs/models/mamba.lua", "d=64", "L=16", "layers=3", NULL);
  struct {
    const char *name;
    fe_init_kind kind;
    double a, b;
  } want[] = {
      {"layers.2.norm.weight", FE_INIT_CONSTANT, 1, 0},
      {"layers.0.mixer.in_proj.weight", FE_INIT_UNIFORM, -1 / 8.0, 1 / 8.0},
      {"layers.0.mixer.conv1d.weight", FE_INIT_UNIFORM, -0.5, 0.5},
      {"layers.0.mixer.conv1d.bias", FE_INIT_UNIFORM, -0.5, 0.5},
      {"layers.0.mixer.x_proj.weight", FE_INIT_UNIFORM, -1 / sqrt(128), 1 / sqrt(128)},
      {"layers.0.mixer.dt_proj.weight", FE_INIT_UNIFORM, -0.5, 0.5},
      {"layers.0.mixer.D", FE_INIT_CONSTANT, 1, 0},
      {"layers.1.mixer.out_proj.weight", FE_INIT_UNIFORM, -1 / sqrt(128 * 3.0), 1 / sqrt(128 * 3.0)},
      {"norm_f.weight", FE_INIT_CONSTANT, 1, 0},
      {"lm_head.weight", FE_INIT_UNIFORM, -1 / 8.0, 1 / 8.0},
      {"lm_head.bias", FE_INIT_CONSTANT, 0, 0},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const fe_param *p = fe_find_param(m, want[i].name);
    if (!p) fail_msg("no param %s", want[i].name);
    assert_int_equal(p->init.kind, want[i].kind);
    assert_float_equal(p->init.a, want[i].a, 1e-12);
    if (want[i].kind == FE_INIT_UNIFORM) assert_float_equal(p->init.b, want[i].b, 1e-12);
  }
  const fe_param *p = fe_find_param(m, "layers.0.mixer.dt_proj.bias");
  assert_true(p->init.kind == FE_INIT_DT_BIAS && p->init.dt_min == 1e-3 && p->init.dt_max == 0.1 &&
              p->init.dt_floor == 1e-4);
  assert_int_equal(fe_find_param(m, "layers.0.mixer.A_log")->init.kind, FE_INIT_A_LOG);
  expect_type(&leaf_node(m, "layers.0.mixer.dt_proj.weight")->type, "f32[128,4]");
  expect_type(&leaf_node(m, "layers.0.mixer.x_proj.weight")->type, "f32[36,128]");
  fe_model_free(m);
  m = ok_spec("specs/models/transformer.lua", "pe=learned", "L=16", NULL);
  p = fe_find_param(m, "pos_emb.weight");
  assert_true(p->init.kind == FE_INIT_NORMAL && p->init.a == 0 && p->init.b == 0.02);
  expect_type(&m->f->nodes[p->node].type, "f32[48,8]");
  p = fe_find_param(m, "layers.1.norm.bias");
  assert_true(p->init.kind == FE_INIT_CONSTANT && p->init.a == 0);
  p = fe_find_param(m, "layers.0.mixer.wo.weight"); /* attention wo is not rescaled */
  assert_float_equal(p->init.b, 1 / sqrt(8.0), 1e-12);
  fe_model_free(m);
}

/* --set reaches the specs: sizes, heads, n, dt_rank's derived default. */
static void study_options(void **s) {
  (void)s;
  fe_model *m = ok_spec("specs/models/mamba.lua", "K=32", "d=40", "L=10", "n=30", NULL);
  expect_type(&leaf_node(m, "tokens")->type, "i32[30]");
  expect_type(&out_node(m, "logits")->type, "f32[32]");
  expect_type(&leaf_node(m, "layers.1.mixer.dt_proj.weight")->type, "f32[80,3]"); /* ceil(40/16) */
  expect_type(&leaf_node(m, "embedding.weight")->type, "f32[32,40]");
  assert_true(fe_config_num(m, "dt_rank", 0) == 3);
  fe_model_free(m);
  m = ok_spec("specs/models/mamba.lua", "dt_rank=2", "d_state=4", "expand=3", "d_conv=2", "layers=1", NULL);
  expect_type(&leaf_node(m, "layers.0.mixer.x_proj.weight")->type, "f32[10,24]");
  expect_type(&leaf_node(m, "layers.0.mixer.conv1d.weight")->type, "f32[24,2]");
  assert_int_equal(ir_find_leaf(m->f, "layers.1.norm.weight"), -1);
  expect_type(&leaf_node(m, "tokens")->type, "i32[64]"); /* n defaults to L = 64 */
  fe_model_free(m);
  m = ok_spec("specs/models/transformer.lua", "heads=2", "L=8", "n=24", "pe=learned", NULL);
  expect_type(&leaf_node(m, "pos_emb.weight")->type, "f32[24,8]");
  /* two heads: scores are [H, n, n] */
  bool found = false;
  for (int i = 0; i < m->f->n_nodes; i++)
    if (m->f->nodes[i].op == IR_OP_SOFTMAX) {
      expect_type(&m->f->nodes[i].type, "f32[2,24,24]");
      found = true;
    }
  assert_true(found);
  fe_model_free(m);
  m = ok_spec("specs/models/transformer.lua", "pe=nope", NULL);
  assert_int_equal(ir_find_leaf(m->f, "rope.cos"), -1);
  assert_int_equal(ir_find_leaf(m->f, "pos_emb.weight"), -1);
  fe_model_free(m);
  const char *msg = fail_spec("specs/models/transformer.lua", "pe=learned", "L=8", "n=25", NULL);
  expect_has(msg, "learned PE has 24 rows, the sequence 25 positions");
  expect_has(msg, "transformer.lua:");
  msg = fail_spec("specs/models/transformer.lua", "heads=3", NULL);
  expect_has(msg, "specs/models/transformer.lua:");
  expect_has(msg, "attention: d 8 is not a multiple of heads 3");
  expect_has(fail_spec("specs/models/transformer.lua", "pe=alibi", NULL), "pe must be rope, learned or nope");
  expect_has(fail_spec("specs/models/hybrid.lua", "d_model=3", NULL), "no option d_model");
}

/* RoPE tables: cos/sin of t * 10000^(-2i/dh), [n, dh/2], shared by layers. */
static void rope_tables(void **s) {
  (void)s;
  fe_model *m = ok_spec("specs/models/transformer.lua", "d=12", "heads=2", "n=7", NULL);
  const ir_node *c = leaf_node(m, "rope.cos"), *sn = leaf_node(m, "rope.sin");
  expect_type(&c->type, "f32[7,3]");
  assert_non_null(c->data);
  for (int t = 0; t < 7; t++)
    for (int i = 0; i < 3; i++) {
      double ang = t * pow(10000.0, -2.0 * i / 6);
      assert_true(c->data[t * 3 + i] == (float)cos(ang));
      assert_true(sn->data[t * 3 + i] == (float)sin(ang));
    }
  assert_int_equal(m->n_consts, 3); /* embedding.weight, rope.cos, rope.sin */
  fe_model_free(m);
}

/* ---- numerics: golden data and finite differences ---- */

/* Per-example leaf values for the interpreter: tokens, pos, label, and
 * every param / const from a lookup. */
typedef struct {
  ir_func *g;
  double **leaves;
} run_ctx;

static double *dup_f32(const float *x, int64_t n) {
  double *d = malloc(sizeof *d * (size_t)n);
  for (int64_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

static double rel_err(const double *a, const float *golden, int64_t n) {
  double md = 0, mg = 0;
  for (int64_t i = 0; i < n; i++) {
    md = fmax(md, fabs(a[i] - golden[i]));
    mg = fmax(mg, fabs(golden[i]));
  }
  return md / fmax(mg, 1e-6);
}

/* One golden file: forward + ad_grad through ir_interp (F32), each example
 * read at L-1, gradients averaged over the batch with grad.loss = 1/B. */
static void golden_case(const model_case *c) {
  rt_tensors *ts = read_golden(c->golden);
  fe_model *m = ok_spec(c->spec, "K=16", "d=8", "L=16", c->pe, NULL);
  ir_error e;
  ir_func *g = ad_grad(m->f, "loss", &e);
  if (!g) fail_msg("%s: ad_grad: %s", c->golden, e.msg);
  rt_tensor *tok = rt_tensors_find(ts, "tokens"), *lab = rt_tensors_find(ts, "labels");
  int B = (int)tok->dim[0], L = (int)tok->dim[1], K = 16;
  double **leaves = calloc((size_t)g->n_nodes, sizeof *leaves);
  double pos = L - 1, label = 0, gl = 1.0 / B, *tokens = malloc(sizeof *tokens * (size_t)L);
  for (int i = 0; i < g->n_nodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_PARAM && n->op != IR_OP_CONST) continue;
    rt_tensor *t = rt_tensors_find(ts, n->name);
    if (n->op == IR_OP_CONST && n->data) continue; /* RoPE tables */
    if (!t) fail_msg("%s: golden has no %s", c->golden, n->name);
    expect_same_shape(n, t);
    leaves[i] = dup_f32(t->data, t->numel);
  }
  leaves[ir_find_leaf(g, "tokens")] = tokens;
  leaves[ir_find_leaf(g, "pos")] = &pos;
  leaves[ir_find_leaf(g, "label")] = &label;
  leaves[ir_find_leaf(g, "grad.loss")] = &gl;
  double *logits = calloc((size_t)(B * K), sizeof *logits), loss = 0;
  double **grads = calloc((size_t)m->n_params, sizeof *grads);
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < L; t++) tokens[t] = ((int32_t *)tok->data)[b * L + t];
    label = ((int32_t *)lab->data)[b];
    double **v = ir_interp(g, IR_PREC_F32, (const double *const *)leaves, &e);
    if (!v) fail_msg("%s: interp: %s", c->golden, e.msg);
    memcpy(logits + b * K, v[g->outs[ir_find_output(g, "logits")].node], sizeof(double) * K);
    loss += v[g->outs[ir_find_output(g, "loss")].node][0] / B;
    for (int p = 0; p < m->n_params; p++) {
      char name[300];
      snprintf(name, sizeof name, "grad.%s", m->params[p].name);
      int o = ir_find_output(g, name);
      if (o < 0) fail_msg("%s: ad_grad made no output %s", c->golden, name);
      const ir_node *n = &g->nodes[g->outs[o].node];
      int64_t k = ir_numel(&n->type);
      if (!grads[p]) grads[p] = calloc((size_t)k, sizeof **grads);
      for (int64_t j = 0; j < k; j++) grads[p][j] += v[g->outs[o].node][j];
    }
    ir_values_free(g, v);
  }
  bool verbose = getenv("FE_VERBOSE") != NULL;
  double worst = rel_err(logits, rt_tensors_find(ts, "logits")->data, B * K);
  if (verbose) print_message("%s: logits %.3g loss %.3g\n", c->golden, worst,
                             fabs(loss - *(float *)rt_tensors_find(ts, "loss")->data));
  if (worst > 1e-4) fail_msg("%s: logits rel err %.3g", c->golden, worst);
  float gloss = *(float *)rt_tensors_find(ts, "loss")->data;
  if (fabs(loss - gloss) / fmax(fabs(gloss), 1e-6) > 1e-4)
    fail_msg("%s: loss %.8g vs golden %.8g", c->golden, loss, gloss);
  for (int p = 0; p < m->n_params; p++) {
    char name[300];
    snprintf(name, sizeof name, "grad.%s", m->params[p].name);
    rt_tensor *t = rt_tensors_find(ts, name);
    double r = rel_err(grads[p], t->data, t->numel);
    if (verbose) print_message("  %s %.3g\n", name, r);
    if (r > 1e-4) fail_msg("%s: %s rel err %.3g", c->golden, name, r);
    free(grads[p]);
  }
  free(grads);
  free(logits);
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == IR_OP_PARAM || g->nodes[i].op == IR_OP_CONST) free(leaves[i]);
  free(leaves);
  free(tokens);
  ir_func_free(g);
  fe_model_free(m);
  rt_tensors_free(ts);
}

static void golden_transformer_learned(void **s) { (void)s, golden_case(&study[0]); }
static void golden_transformer_rope(void **s) { (void)s, golden_case(&study[1]); }
static void golden_transformer_nope(void **s) { (void)s, golden_case(&study[2]); }
static void golden_mamba(void **s) { (void)s, golden_case(&study[3]); }
static void golden_hybrid(void **s) { (void)s, golden_case(&study[4]); }

/* splitmix64 in [0, 1) */
static uint64_t rng_state;
static double urand(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
}

/* ad_grad against central differences of the F64 interpreter, for a spec
 * at tiny sizes with random weights, tokens, read position and label. */
static void fd_check(const char *spec, ...) {
  va_list ap;
  va_start(ap, spec);
  fe_error ferr;
  fe_model *m = build_v(NULL, spec, &ferr, ap);
  va_end(ap);
  if (!m) fail_msg("%s: %s", spec, ferr.msg);
  ir_error e;
  ir_func *g = ad_grad(m->f, "loss", &e);
  if (!g) fail_msg("%s: ad_grad: %s", spec, e.msg);
  rng_state = 42;
  double **leaves = calloc((size_t)g->n_nodes, sizeof *leaves);
  int K = (int)fe_config_num(m, "K", 0), n = (int)fe_config_num(m, "n", 0);
  for (int i = 0; i < g->n_nodes; i++) {
    const ir_node *nd = &g->nodes[i];
    if (!nd->name || (nd->op == IR_OP_CONST && nd->data)) continue;
    int64_t k = ir_numel(&nd->type);
    double *v = calloc((size_t)k, sizeof *v);
    for (int64_t j = 0; j < k; j++) v[j] = 2 * urand() - 1;
    if (!strcmp(nd->name, "tokens"))
      for (int j = 0; j < n; j++) v[j] = (int)(urand() * K);
    if (!strcmp(nd->name, "pos")) v[0] = n - 1 - (int)(urand() * 2);
    if (!strcmp(nd->name, "label")) v[0] = (int)(urand() * K);
    if (!strcmp(nd->name, "grad.loss")) v[0] = 1;
    leaves[i] = v;
  }
  double **v = ir_interp(g, IR_PREC_F64, (const double *const *)leaves, &e);
  if (!v) fail_msg("%s: interp: %s", spec, e.msg);
  int loss_node = m->f->outs[ir_find_output(m->f, "loss")].node;
  for (int p = 0; p < m->n_params; p++) {
    char name[300];
    snprintf(name, sizeof name, "grad.%s", m->params[p].name);
    const double *ad = v[g->outs[ir_find_output(g, name)].node];
    double *w = leaves[m->params[p].node];
    int64_t k = ir_numel(&m->f->nodes[m->params[p].node].type);
    double md = 0, ma = 0;
    for (int64_t j = 0; j < k; j++) {
      double keep = w[j], h = 1e-5, lp, lm;
      w[j] = keep + h;
      double **vp = ir_interp(m->f, IR_PREC_F64, (const double *const *)leaves, &e);
      w[j] = keep - h;
      double **vm = ir_interp(m->f, IR_PREC_F64, (const double *const *)leaves, &e);
      w[j] = keep;
      if (!vp || !vm) fail_msg("%s: interp: %s", spec, e.msg);
      lp = vp[loss_node][0], lm = vm[loss_node][0];
      ir_values_free(m->f, vp);
      ir_values_free(m->f, vm);
      md = fmax(md, fabs((lp - lm) / (2 * h) - ad[j]));
      ma = fmax(ma, fabs(ad[j]));
    }
    if (md / fmax(ma, 1e-6) > 1e-5)
      fail_msg("%s: %s: ad vs finite differences rel err %.3g (max |grad| %.3g)", spec, name,
               md / fmax(ma, 1e-6), ma);
  }
  ir_values_free(g, v);
  for (int i = 0; i < g->n_nodes; i++) free(leaves[i]);
  free(leaves);
  ir_func_free(g);
  fe_model_free(m);
}

static void fd_linear_attention(void **s) {
  (void)s;
  fd_check("specs/models/linear_attention.lua", "K=5", "d=4", "L=6", "heads=2", NULL);
}
static void fd_transformer(void **s) {
  (void)s;
  fd_check("specs/models/transformer.lua", "K=5", "d=4", "L=5", "pe=rope", "heads=2", NULL);
  fd_check("specs/models/transformer.lua", "K=5", "d=4", "L=3", "n=7", "pe=learned", NULL);
}
static void fd_mamba(void **s) {
  (void)s;
  fd_check("specs/models/mamba.lua", "K=5", "d=4", "L=5", "d_state=3", "layers=1", NULL);
}
static void fd_hybrid(void **s) {
  (void)s;
  fd_check("specs/models/hybrid.lua", "K=5", "d=4", "L=5", "d_state=2", "expand=1", NULL);
}

/* The worked example computes what its comment says: y_t for one layer
 * against a naive sum over s <= t (F64 interpreter). */
static void linear_attention_semantics(void **s) {
  (void)s;
  fe_model *m = ok_code(
      "local nn = require 'nn'\n"
      "local q, k = input('q', 'f32', {1, 5, 2}), input('k', 'f32', {1, 5, 2})\n"
      "local v = input('v', 'f32', {1, 5, 3})\n"
      "local mask = {}\n"
      "for t = 0, 4 do for s = 0, 4 do mask[#mask + 1] = s <= t and 1 or 0 end end\n"
      "local function phi(x) return relu(x) + exp(-relu(-x)) end\n"
      "local sc = phi(q):matmul(phi(k), {tb = true}) * const('m', {5, 5}, mask)\n"
      "output('y', sc:matmul(v) / (sc:sum(-1) + 1e-6))\n",
      NULL);
  double q[10], k[10], v[15];
  rng_state = 7;
  for (int i = 0; i < 10; i++) q[i] = 4 * urand() - 2, k[i] = 4 * urand() - 2;
  for (int i = 0; i < 15; i++) v[i] = 2 * urand() - 1;
  const double **leaves = calloc((size_t)m->f->n_nodes, sizeof *leaves);
  leaves[ir_find_leaf(m->f, "q")] = q;
  leaves[ir_find_leaf(m->f, "k")] = k;
  leaves[ir_find_leaf(m->f, "v")] = v;
  ir_error e;
  double **out = ir_interp(m->f, IR_PREC_F64, leaves, &e);
  free(leaves);
  if (!out) fail_msg("%s", e.msg);
  const double *y = out[m->f->outs[0].node];
  for (int t = 0; t < 5; t++) {
    double num[3] = {0}, den = 0;
    for (int s2 = 0; s2 <= t; s2++) {
      double w = 0;
      for (int j = 0; j < 2; j++) {
        double a = q[t * 2 + j], b = k[s2 * 2 + j];
        w += (a > 0 ? a + 1 : exp(a)) * (b > 0 ? b + 1 : exp(b)); /* elu + 1 */
      }
      den += w;
      for (int c = 0; c < 3; c++) num[c] += w * v[s2 * 3 + c];
    }
    for (int c = 0; c < 3; c++) assert_float_equal(y[t * 3 + c], num[c] / (den + 1e-6), 1e-12);
  }
  ir_values_free(m->f, out);
  fe_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_op_reachable),
      cmocka_unit_test(methods_and_metamethods),
      cmocka_unit_test(layout_attributes),
      cmocka_unit_test(seq_ops_shapes),
      cmocka_unit_test(tensor_properties_and_lines),
      cmocka_unit_test(shape_error_names_line_and_sizes),
      cmocka_unit_test(consts_bound_or_later),
      cmocka_unit_test(root_from_path_and_local_modules),
      cmocka_unit_test(scoped_names),
      cmocka_unit_test(options_and_set),
      cmocka_unit_test(init_formulas),
      cmocka_unit_test(study_names_shapes),
      cmocka_unit_test(study_initialisers),
      cmocka_unit_test(study_options),
      cmocka_unit_test(rope_tables),
      cmocka_unit_test(linear_attention_semantics),
      cmocka_unit_test(golden_transformer_learned),
      cmocka_unit_test(golden_transformer_rope),
      cmocka_unit_test(golden_transformer_nope),
      cmocka_unit_test(golden_mamba),
      cmocka_unit_test(golden_hybrid),
      cmocka_unit_test(fd_linear_attention),
      cmocka_unit_test(fd_transformer),
      cmocka_unit_test(fd_mamba),
      cmocka_unit_test(fd_hybrid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
