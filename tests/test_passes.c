/* test_passes.c — dce, cse, fold, simplify and the optimizer pipeline.
 *
 * Every rewrite is checked on a hand-built graph: the exact op sequence
 * (and wiring) after the pass, that the result verifies, that the input
 * function is untouched, that input/param/const leaves survive with their
 * names, types, data and order, and that the interpreter (F64) gives the
 * same outputs before and after on random leaf values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static ir_error err;

/* ---- building ---- */

static int ok(int id) {
  if (id < 0) fail_msg("build: %s", err.msg);
  return id;
}

static ir_type F(int rank, int d0, int d1, int d2, int d3) {
  int d[4] = {d0, d1, d2, d3};
  return ir_type_make(IR_F32, rank, d);
}
#define F0() F(0, 0, 0, 0, 0)
#define F1(a) F(1, a, 0, 0, 0)
#define F2(a, b) F(2, a, b, 0, 0)
#define F3(a, b, c) F(3, a, b, c, 0)
static ir_type I(int rank, int d0, int d1) {
  int d[4] = {d0, d1, 0, 0};
  return ir_type_make(IR_I32, rank, d);
}

static int in(ir_func *f, const char *name, ir_type t) {
  return ok(ir_leaf(f, IR_OP_INPUT, name, t, &err));
}
static int fill(ir_func *f, double v, ir_type t) { return ok(ir_fill(f, v, t, &err)); }
static int un(ir_func *f, ir_op op, int x) { return ok(ir_unary(f, op, x, &err)); }
static int bin(ir_func *f, ir_op op, int a, int b) { return ok(ir_binary(f, op, a, b, &err)); }
static int node(ir_func *f, ir_op op, const int *ins, int n, ir_attrs a,
                const ir_type *t) {
  return ok(ir_add(f, op, ins, n, &a, t, NULL, &err));
}
static int reshape(ir_func *f, int x, ir_type t) {
  return node(f, IR_OP_RESHAPE, &x, 1, (ir_attrs){0}, &t);
}
static int expand(ir_func *f, int x, ir_type t) {
  return node(f, IR_OP_EXPAND, &x, 1, (ir_attrs){0}, &t);
}
static int slice(ir_func *f, int x, int axis, int s, int e) {
  return node(f, IR_OP_SLICE, &x, 1, (ir_attrs){.axis = axis, .start = s, .end = e}, NULL);
}
static int permute(ir_func *f, int x, int p0, int p1, int p2) {
  return node(f, IR_OP_PERMUTE, &x, 1, (ir_attrs){.perm = {p0, p1, p2}}, NULL);
}
static int reduce(ir_func *f, ir_op op, int x, int axis) {
  return node(f, op, &x, 1, (ir_attrs){.axis = axis}, NULL);
}
static int concat(ir_func *f, int axis, int n, int a, int b, int c) {
  int ins[3] = {a, b, c};
  return node(f, IR_OP_CONCAT, ins, n, (ir_attrs){.axis = axis}, NULL);
}
static void out(ir_func *f, const char *name, int x) {
  ok(ir_add_output(f, name, x, &err));
}

/* ---- inspecting ---- */

/* "input fill add": the op names of g in order */
static void expect_ops(const ir_func *g, const char *want) {
  char got[4096] = "";
  size_t k = 0;
  for (int i = 0; i < g->n_nodes && k < sizeof got - 32; i++)
    k += (size_t)snprintf(got + k, sizeof got - k, i ? " %s" : "%s",
                          ir_op_name(g->nodes[i].op));
  assert_string_equal(got, want);
}

static const ir_node *out_node(const ir_func *g, int i) {
  assert_true(i < g->n_outs);
  return &g->nodes[g->outs[i].node];
}

/* Deep equality, every byte that a pass must not touch. */
static bool func_eq(const ir_func *a, const ir_func *b) {
  if (a->n_nodes != b->n_nodes || a->n_outs != b->n_outs) return false;
  for (int i = 0; i < a->n_nodes; i++) {
    const ir_node *x = &a->nodes[i], *y = &b->nodes[i];
    if (x->op != y->op || !ir_type_eq(&x->type, &y->type) || x->n_in != y->n_in ||
        memcmp(x->in, y->in, sizeof x->in) || memcmp(&x->attr, &y->attr, sizeof x->attr) ||
        !x->name != !y->name || (x->name && strcmp(x->name, y->name)) ||
        !x->data != !y->data ||
        (x->data && memcmp(x->data, y->data, sizeof(float) * (size_t)ir_numel(&x->type))))
      return false;
  }
  for (int i = 0; i < a->n_outs; i++)
    if (a->outs[i].node != b->outs[i].node || strcmp(a->outs[i].name, b->outs[i].name))
      return false;
  return true;
}

/* Text equality (for "a pass changes nothing" on its own output). */
static void expect_same_text(const ir_func *a, const ir_func *b) {
  char *sa = ir_print_str(a), *sb = ir_print_str(b);
  assert_string_equal(sa, sb);
  free(sa);
  free(sb);
}

/* ---- checking equivalence ---- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Random leaf values, a function of the leaf's name and the seed, so the
 * function before and after a pass see the same values. f32 in [-2, 2),
 * i32 in {0, 1} (valid indices for every table in these tests). */
static double **make_leaves(const ir_func *f, uint64_t seed) {
  double **L = calloc((size_t)f->n_nodes + 1, sizeof *L);
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *n = &f->nodes[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    uint64_t s = 1469598103934665603u ^ seed;
    for (const char *p = n->name; *p; p++) s = (s ^ (unsigned char)*p) * 1099511628211u;
    s |= 1;
    int64_t cnt = ir_numel(&n->type);
    L[i] = malloc(sizeof(double) * (size_t)(cnt + 1));
    for (int64_t j = 0; j < cnt; j++) {
      uint64_t r = rng_next(&s) >> 11;
      L[i][j] = n->type.dtype == IR_I32 ? (double)(r & 1)
                                        : (double)r / 9007199254740992.0 * 4 - 2;
    }
  }
  return L;
}

static void free_leaves(const ir_func *f, double **L) {
  for (int i = 0; i < f->n_nodes; i++) free(L[i]);
  free(L);
}

static bool close_rel(double a, double b) {
  if (a == b || (isnan(a) && isnan(b))) return true;
  return fabs(a - b) <= 1e-12 * fmax(fabs(a), fabs(b));
}

/* f and g compute the same outputs to 1e-12 (three random draws). */
static void expect_same_values(const ir_func *f, const ir_func *g, ir_precision prec) {
  for (uint64_t seed = 1; seed <= 3; seed++) {
    double **lf = make_leaves(f, seed), **lg = make_leaves(g, seed);
    double **vf = ir_interp(f, prec, (const double *const *)lf, &err);
    if (!vf) fail_msg("interp before: %s", err.msg);
    double **vg = ir_interp(g, prec, (const double *const *)lg, &err);
    if (!vg) fail_msg("interp after: %s", err.msg);
    for (int o = 0; o < f->n_outs; o++) {
      const ir_node *a = &f->nodes[f->outs[o].node];
      int64_t cnt = ir_numel(&a->type);
      const double *x = vf[f->outs[o].node], *y = vg[g->outs[o].node];
      for (int64_t j = 0; j < cnt; j++)
        if (!close_rel(x[j], y[j]))
          fail_msg("output \"%s\"[%lld]: %.17g before, %.17g after",
                   f->outs[o].name, (long long)j, x[j], y[j]);
    }
    ir_values_free(f, vf);
    ir_values_free(g, vg);
    free_leaves(f, lf);
    free_leaves(g, lg);
  }
}

/* The contract of every pass: g verifies; same outputs (names, order,
 * types); every input/param/const leaf kept with name, type and data, in
 * the same relative order. */
static void expect_contract(const ir_func *f, const ir_func *g) {
  if (ir_verify(g, &err)) fail_msg("result does not verify: %s", err.msg);
  assert_int_equal(g->n_outs, f->n_outs);
  for (int o = 0; o < f->n_outs; o++) {
    assert_string_equal(g->outs[o].name, f->outs[o].name);
    assert_true(ir_type_eq(&f->nodes[f->outs[o].node].type,
                           &g->nodes[g->outs[o].node].type));
  }
  int j = 0;
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *a = &f->nodes[i];
    if (a->op != IR_OP_INPUT && a->op != IR_OP_PARAM && a->op != IR_OP_CONST)
      continue;
    while (j < g->n_nodes && !g->nodes[j].name) j++;
    assert_true(j < g->n_nodes);
    const ir_node *b = &g->nodes[j++];
    assert_int_equal(b->op, a->op);
    assert_string_equal(b->name, a->name);
    assert_true(ir_type_eq(&a->type, &b->type));
    assert_true(!a->data == !b->data);
    if (a->data)
      assert_memory_equal(a->data, b->data, sizeof(float) * (size_t)ir_numel(&a->type));
  }
  while (j < g->n_nodes && !g->nodes[j].name) j++;
  assert_int_equal(j, g->n_nodes); /* no new named leaf */
}

/* Runs a pass, checks the contract, that f was not modified and that the
 * values agree under prec. */
static ir_func *run_prec(ir_pass_fn pass, const ir_func *f, ir_precision prec) {
  if (ir_verify(f, &err)) fail_msg("test graph does not verify: %s", err.msg);
  ir_func *before = ir_func_clone(f);
  ir_func *g = pass(f, &err);
  if (!g) fail_msg("pass failed: %s", err.msg);
  assert_true(func_eq(f, before));
  ir_func_free(before);
  expect_contract(f, g);
  expect_same_values(f, g, prec);
  return g;
}

static ir_func *run(ir_pass_fn pass, const ir_func *f) {
  return run_prec(pass, f, IR_PREC_F64);
}

/* ---- dce ---- */

static void dce_drops_dead_keeps_leaves(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(3));
  int w = ok(ir_leaf(f, IR_OP_PARAM, "w", F1(3), &err)); /* unused */
  int c = ok(ir_leaf(f, IR_OP_CONST, "c", F1(3), &err));
  ok(ir_set_const_data(f, c, (float[]){1, 2, 3}, &err));
  int z = fill(f, 7, F1(3));            /* dead fill */
  int d = un(f, IR_OP_EXP, x);          /* dead */
  bin(f, IR_OP_ADD, d, z);              /* dead */
  int y = bin(f, IR_OP_MUL, x, c);
  int e = un(f, IR_OP_NEG, y);
  out(f, "b", e);
  out(f, "a", y);
  (void)w;
  ir_func *g = run(ir_pass_dce, f);
  expect_ops(g, "input param const mul neg");
  assert_int_equal(g->outs[0].node, 4);
  assert_int_equal(g->outs[1].node, 3);
  assert_int_equal(g->nodes[3].in[0], 0);
  assert_int_equal(g->nodes[3].in[1], 2);
  assert_int_equal(g->nodes[4].in[0], 3);
  ir_func_free(g);
  ir_func_free(f);
}

static void dce_keeps_output_leaf_and_shared(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(2));
  int a = un(f, IR_OP_EXP, x);
  int b = un(f, IR_OP_LOG, a); /* live through c */
  int c = bin(f, IR_OP_ADD, a, b);
  un(f, IR_OP_TANH, c);        /* dead */
  out(f, "x", x);
  out(f, "c", c);
  ir_func *g = run(ir_pass_dce, f);
  expect_ops(g, "input exp log add");
  assert_int_equal(g->outs[0].node, 0);
  ir_func_free(g);
  ir_func_free(f);
}

/* ---- cse ---- */

static void cse_merges_chains_and_fills(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int y = in(f, "y", F1(3));
  int a1 = bin(f, IR_OP_ADD, x, y);
  int a2 = bin(f, IR_OP_ADD, x, y);
  int e1 = un(f, IR_OP_EXP, a1);
  int e2 = un(f, IR_OP_EXP, a2); /* equal once a2 is merged into a1 */
  int z1 = fill(f, 2, F1(3));
  int z2 = fill(f, 2, F1(3));
  int z3 = fill(f, 2, F2(1, 3));  /* other type */
  int z4 = fill(f, 3, F1(3));     /* other value */
  int m1 = bin(f, IR_OP_MUL, e1, z1);
  int m2 = bin(f, IR_OP_MUL, e2, z2);
  int m3 = bin(f, IR_OP_MUL, e2, z3);
  int m4 = bin(f, IR_OP_MUL, e2, z4);
  int sw = bin(f, IR_OP_ADD, y, x); /* operand order matters */
  out(f, "m1", m1);
  out(f, "m2", m2);
  out(f, "m3", m3);
  out(f, "m4", m4);
  out(f, "sw", sw);
  ir_func *g = run(ir_pass_cse, f);
  expect_ops(g, "input input add exp fill fill fill mul mul mul add");
  assert_int_equal(g->outs[0].node, g->outs[1].node);
  assert_int_not_equal(g->outs[0].node, g->outs[2].node);
  assert_int_not_equal(g->outs[0].node, g->outs[3].node);
  ir_func_free(g);
  ir_func_free(f);
}

static void cse_compares_used_attrs_only(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(4, 3));
  int y = in(f, "y", F2(4, 4));
  /* add uses no attribute: junk in the record must not keep them apart */
  int a1 = node(f, IR_OP_ADD, (int[]){x, x}, 2, (ir_attrs){.axis = 1, .n = 5}, NULL);
  int a2 = node(f, IR_OP_ADD, (int[]){x, x}, 2, (ir_attrs){.axis = 0, .value = 9}, NULL);
  int s1 = slice(f, x, 0, 0, 2);
  int s2 = slice(f, x, 0, 1, 3); /* same type, other range */
  int s3 = slice(f, x, 0, 0, 2);
  int p1 = node(f, IR_OP_PERMUTE, &x, 1, (ir_attrs){.perm = {1, 0}}, NULL);
  int p2 = node(f, IR_OP_PERMUTE, &x, 1, (ir_attrs){.perm = {1, 0, 3, 2}}, NULL);
  int q = node(f, IR_OP_MATMUL, (int[]){y, y}, 2, (ir_attrs){.tb = true}, NULL);
  int q2 = node(f, IR_OP_MATMUL, (int[]){y, y}, 2, (ir_attrs){.ta = true}, NULL);
  int z0 = fill(f, 0.0, F1(3));
  int zn = fill(f, -0.0, F1(3)); /* bitwise different */
  int sm1 = node(f, IR_OP_SOFTMAX, &y, 1, (ir_attrs){.axis = 1}, NULL);
  int sm2 = node(f, IR_OP_SOFTMAX, &y, 1, (ir_attrs){.causal = true}, NULL);
  out(f, "a1", a1);
  out(f, "a2", a2);
  out(f, "s1", s1);
  out(f, "s2", s2);
  out(f, "s3", s3);
  out(f, "p1", p1);
  out(f, "p2", p2);
  out(f, "q", q);
  out(f, "q2", q2);
  out(f, "z0", z0);
  out(f, "zn", zn);
  out(f, "sm1", sm1);
  out(f, "sm2", sm2);
  ir_func *g = run(ir_pass_cse, f);
  expect_ops(g, "input input add slice slice permute matmul matmul fill fill "
                "softmax softmax");
  assert_int_equal(g->outs[0].node, g->outs[1].node);
  assert_int_equal(g->outs[2].node, g->outs[4].node);
  assert_int_not_equal(g->outs[2].node, g->outs[3].node);
  assert_int_equal(g->outs[5].node, g->outs[6].node); /* perm beyond rank unused */
  ir_func_free(g);
  ir_func_free(f);
}

static void cse_never_merges_named_leaves(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int a = in(f, "a", F1(3));
  int b = in(f, "b", F1(3));
  int p = ok(ir_leaf(f, IR_OP_PARAM, "p", F1(3), &err));
  int q = ok(ir_leaf(f, IR_OP_PARAM, "q", F1(3), &err));
  out(f, "s", bin(f, IR_OP_ADD, bin(f, IR_OP_ADD, a, b), bin(f, IR_OP_ADD, p, q)));
  ir_func *g = run(ir_pass_cse, f);
  expect_ops(g, "input input param param add add add");
  ir_func_free(g);
  ir_func_free(f);
}

/* Two identical chains of 5000 adds: 10001 nodes, the second chain merges
 * link by link into the first. */
static void cse_ten_thousand_nodes(void **s) {
  (void)s;
  enum { N = 5000 };
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(4));
  int a = x, b = x;
  for (int i = 0; i < N; i++) {
    a = bin(f, IR_OP_ADD, a, x);
    b = bin(f, IR_OP_ADD, b, x);
  }
  out(f, "a", a);
  out(f, "b", b);
  assert_int_equal(f->n_nodes, 2 * N + 1);
  ir_func *g = run(ir_pass_cse, f);
  assert_int_equal(g->n_nodes, N + 1);
  assert_int_equal(g->outs[0].node, N);
  assert_int_equal(g->outs[1].node, N);
  ir_func_free(g);
  ir_func_free(f);
}

/* ---- fold: one case (or more) per op ---- */

typedef struct {
  ir_op op;
  const char *what;
  bool folds; /* else the op stays; "error" in what: the interpreter fails */
  double value; /* hand-computed; rounded to float for an f32 result */
  int (*build)(ir_func *f);
} fold_case;

#define FC(name) static int name(ir_func *f)
FC(b_input) { return in(f, "x", F1(2)); }
FC(b_param) { return ok(ir_leaf(f, IR_OP_PARAM, "p", F1(2), &err)); }
FC(b_const) {
  int c = ok(ir_leaf(f, IR_OP_CONST, "c", F1(2), &err));
  ok(ir_set_const_data(f, c, (float[]){4, 5}, &err));
  return c;
}
FC(b_fill) { return fill(f, 3, F1(2)); }
FC(b_neg) { return un(f, IR_OP_NEG, fill(f, 2, F1(2))); }
FC(b_exp) { return un(f, IR_OP_EXP, fill(f, 0, F2(2, 3))); }
FC(b_log) { return un(f, IR_OP_LOG, fill(f, 1, F1(2))); }
FC(b_sqrt) { return un(f, IR_OP_SQRT, fill(f, 4, F1(2))); }
FC(b_rsqrt) { return un(f, IR_OP_RSQRT, fill(f, 4, F1(2))); }
FC(b_recip) { return un(f, IR_OP_RECIP, fill(f, 4, F1(2))); }
FC(b_sigmoid) { return un(f, IR_OP_SIGMOID, fill(f, 0, F1(2))); }
FC(b_silu) { return un(f, IR_OP_SILU, fill(f, 0, F1(2))); }
FC(b_softplus) { return un(f, IR_OP_SOFTPLUS, fill(f, 0, F1(2))); }
FC(b_tanh) { return un(f, IR_OP_TANH, fill(f, 0, F1(2))); }
FC(b_relu) { return un(f, IR_OP_RELU, fill(f, -2, F1(2))); }
FC(b_relu_pos) { return un(f, IR_OP_RELU, fill(f, 1.5, F1(2))); }
FC(b_add) { return bin(f, IR_OP_ADD, fill(f, 2, F1(3)), fill(f, 3, F2(2, 3))); }
FC(b_sub) { return bin(f, IR_OP_SUB, fill(f, 2, F1(3)), fill(f, 3, F1(3))); }
FC(b_mul) { return bin(f, IR_OP_MUL, fill(f, 2, F1(3)), fill(f, 3, F1(3))); }
FC(b_div) { return bin(f, IR_OP_DIV, fill(f, 3, F1(3)), fill(f, 2, F1(3))); }
FC(b_max) { return bin(f, IR_OP_MAX, fill(f, 2, F1(3)), fill(f, 3, F1(3))); }
FC(b_gt) { return bin(f, IR_OP_GT, fill(f, 3, F1(3)), fill(f, 2, F1(3))); }
FC(b_gt_eq) { return bin(f, IR_OP_GT, fill(f, 2, F1(3)), fill(f, 2, F1(3))); }
FC(b_matmul) { return bin(f, IR_OP_MATMUL, fill(f, 2, F2(2, 3)), fill(f, 0.5, F2(3, 4))); }
FC(b_matmul_ta) {
  return node(f, IR_OP_MATMUL, (int[]){fill(f, 2, F2(5, 2)), fill(f, 0.5, F2(5, 4))}, 2,
              (ir_attrs){.ta = true}, NULL);
}
FC(b_permute) { return permute(f, fill(f, 2, F3(2, 3, 4)), 2, 0, 1); }
FC(b_reshape) { return reshape(f, fill(f, 2, F2(2, 3)), F1(6)); }
FC(b_expand) { return expand(f, fill(f, 2, F1(3)), F2(4, 3)); }
FC(b_slice) { return slice(f, fill(f, 2, F2(4, 3)), 0, 1, 3); }
FC(b_pad_zero) {
  return node(f, IR_OP_PAD, (int[]){fill(f, 0, F1(3))}, 1,
              (ir_attrs){.axis = 0, .start = 1, .end = 2}, NULL);
}
FC(b_pad_nonzero) {
  return node(f, IR_OP_PAD, (int[]){fill(f, 2, F1(3))}, 1,
              (ir_attrs){.axis = 0, .start = 1, .end = 2}, NULL);
}
FC(b_concat) { return concat(f, 1, 3, fill(f, 2, F2(2, 1)), fill(f, 2, F2(2, 3)), fill(f, 2, F2(2, 1))); }
FC(b_concat_diff) { return concat(f, 0, 2, fill(f, 2, F1(2)), fill(f, 3, F1(2)), 0); }
FC(b_sum) { return reduce(f, IR_OP_SUM, fill(f, 2, F2(3, 4)), 1); }
FC(b_amax) { return reduce(f, IR_OP_AMAX, fill(f, 2, F2(3, 4)), 1); }
FC(b_mean) { return reduce(f, IR_OP_MEAN, fill(f, 2.5, F2(3, 4)), 0); }
FC(b_softmax) { return node(f, IR_OP_SOFTMAX, (int[]){fill(f, 7, F2(3, 4))}, 1, (ir_attrs){0}, NULL); }
FC(b_softmax_causal) {
  return node(f, IR_OP_SOFTMAX, (int[]){fill(f, 7, F2(3, 4))}, 1, (ir_attrs){.causal = true}, NULL);
}
FC(b_softmax_causal1) {
  return node(f, IR_OP_SOFTMAX, (int[]){fill(f, 7, F2(1, 4))}, 1, (ir_attrs){.causal = true}, NULL);
}
FC(b_gather) { return bin(f, IR_OP_GATHER, fill(f, 2, F2(5, 3)), fill(f, 4, I(1, 2, 0))); }
FC(b_gather_oob) { return bin(f, IR_OP_GATHER, fill(f, 2, F2(5, 3)), fill(f, 5, I(1, 2, 0))); }
FC(b_scatter1) {
  return node(f, IR_OP_SCATTER_ADD, (int[]){fill(f, 2, F2(3, 2)), fill(f, 0, I(1, 3, 0))}, 2,
              (ir_attrs){.n = 1}, NULL);
}
FC(b_scatter4) {
  return node(f, IR_OP_SCATTER_ADD, (int[]){fill(f, 2, F2(3, 2)), fill(f, 1, I(1, 3, 0))}, 2,
              (ir_attrs){.n = 4}, NULL);
}
FC(b_select_row) { return bin(f, IR_OP_SELECT_ROW, fill(f, 2, F2(4, 3)), fill(f, 3, I(0, 0, 0))); }
FC(b_onehot1) { return node(f, IR_OP_ONEHOT, (int[]){fill(f, 0, I(1, 3, 0))}, 1, (ir_attrs){.n = 1}, NULL); }
FC(b_onehot3) { return node(f, IR_OP_ONEHOT, (int[]){fill(f, 1, I(1, 3, 0))}, 1, (ir_attrs){.n = 3}, NULL); }
FC(b_xent) { return bin(f, IR_OP_CROSS_ENTROPY, fill(f, 5, F2(2, 4)), fill(f, 1, I(1, 2, 0))); }
FC(b_conv_w1) { return bin(f, IR_OP_CONV1D, fill(f, 2, F2(4, 3)), fill(f, 3, F2(3, 1))); }
FC(b_conv_w2) { return bin(f, IR_OP_CONV1D, fill(f, 2, F2(4, 3)), fill(f, 3, F2(3, 2))); }
FC(b_conv_zero) { return bin(f, IR_OP_CONV1D, fill(f, 0, F2(4, 3)), fill(f, 3, F2(3, 2))); }
FC(b_convx_w1) { return bin(f, IR_OP_CONV1D_BWD_X, fill(f, 2, F2(4, 3)), fill(f, 3, F2(3, 1))); }
FC(b_convx_w2) { return bin(f, IR_OP_CONV1D_BWD_X, fill(f, 2, F2(4, 3)), fill(f, 3, F2(3, 2))); }
FC(b_convw_n1) {
  return node(f, IR_OP_CONV1D_BWD_W, (int[]){fill(f, 2, F2(4, 3)), fill(f, 3, F2(4, 3))}, 2,
              (ir_attrs){.n = 1}, NULL);
}
FC(b_convw_n2) {
  return node(f, IR_OP_CONV1D_BWD_W, (int[]){fill(f, 2, F2(4, 3)), fill(f, 3, F2(4, 3))}, 2,
              (ir_attrs){.n = 2}, NULL);
}
static int scan_case(ir_func *f, double u, int bwd) {
  int L = 3, E = 2, N = 2;
  int ins[4] = {fill(f, u, F2(L, bwd ? 2 * E : E)), 0, 0, 0};
  if (bwd) {
    ins[1] = fill(f, -1, F2(E, N));
    ins[2] = fill(f, 1, F2(L, 2 * N));
    ins[3] = fill(f, bwd == 2 ? 0 : 1, F2(L, E));
  } else {
    ins[1] = fill(f, 0.5, F2(L, E));
    ins[2] = fill(f, -1, F2(E, N));
    ins[3] = fill(f, 1, F2(L, 2 * N));
  }
  return node(f, bwd ? IR_OP_SCAN_BWD : IR_OP_SCAN, ins, 4, (ir_attrs){0}, NULL);
}
static int rope_case(ir_func *f, double sin) {
  int ins[3] = {fill(f, 2, F3(4, 1, 6)), fill(f, 3, F2(4, 3)), fill(f, sin, F2(4, 3))};
  return node(f, IR_OP_ROPE, ins, 3, (ir_attrs){0}, NULL);
}
FC(b_rope_sin0) { return rope_case(f, 0); }
FC(b_rope) { return rope_case(f, 1); }
FC(b_scan_zero) { return scan_case(f, 0, 0); }
FC(b_scan) { return scan_case(f, 1, 0); }
FC(b_scan_bwd_zero) { return scan_case(f, 1, 2); }
FC(b_scan_bwd) { return scan_case(f, 1, 1); }
FC(b_reshape_i32) { return reshape(f, fill(f, 3, I(2, 2, 3)), I(1, 6, 0)); }
#undef FC

static const fold_case fold_cases[] = {
    {IR_OP_INPUT, "input stays", false, 0, b_input},
    {IR_OP_PARAM, "param stays", false, 0, b_param},
    {IR_OP_CONST, "const stays", false, 0, b_const},
    {IR_OP_FILL, "fill stays", true, 3, b_fill},
    {IR_OP_NEG, "neg 2", true, -2, b_neg},
    {IR_OP_EXP, "exp 0", true, 1, b_exp},
    {IR_OP_LOG, "log 1", true, 0, b_log},
    {IR_OP_SQRT, "sqrt 4", true, 2, b_sqrt},
    {IR_OP_RSQRT, "rsqrt 4", true, 0.5, b_rsqrt},
    {IR_OP_RECIP, "recip 4", true, 0.25, b_recip},
    {IR_OP_SIGMOID, "sigmoid 0", true, 0.5, b_sigmoid},
    {IR_OP_SILU, "silu 0", true, 0, b_silu},
    {IR_OP_SOFTPLUS, "softplus 0 = log 2", true, 0.69314718055994531, b_softplus},
    {IR_OP_TANH, "tanh 0", true, 0, b_tanh},
    {IR_OP_RELU, "relu -2", true, 0, b_relu},
    {IR_OP_RELU, "relu 1.5", true, 1.5, b_relu_pos},
    {IR_OP_ADD, "2 + 3, broadcast", true, 5, b_add},
    {IR_OP_SUB, "2 - 3", true, -1, b_sub},
    {IR_OP_MUL, "2 * 3", true, 6, b_mul},
    {IR_OP_DIV, "3 / 2", true, 1.5, b_div},
    {IR_OP_MAX, "max(2, 3)", true, 3, b_max},
    {IR_OP_GT, "3 > 2", true, 1, b_gt},
    {IR_OP_GT, "2 > 2", true, 0, b_gt_eq},
    {IR_OP_MATMUL, "k=3 of 2*0.5", true, 3, b_matmul},
    {IR_OP_MATMUL, "ta, k=5 of 2*0.5", true, 5, b_matmul_ta},
    {IR_OP_PERMUTE, "permute", true, 2, b_permute},
    {IR_OP_RESHAPE, "reshape", true, 2, b_reshape},
    {IR_OP_RESHAPE, "reshape i32", true, 3, b_reshape_i32},
    {IR_OP_EXPAND, "expand", true, 2, b_expand},
    {IR_OP_SLICE, "slice", true, 2, b_slice},
    {IR_OP_PAD, "pad of 0", true, 0, b_pad_zero},
    {IR_OP_PAD, "pad of 2 is not uniform", false, 0, b_pad_nonzero},
    {IR_OP_CONCAT, "concat of equal fills", true, 2, b_concat},
    {IR_OP_CONCAT, "concat of 2 and 3", false, 0, b_concat_diff},
    {IR_OP_SUM, "sum of 4 twos", true, 8, b_sum},
    {IR_OP_AMAX, "amax", true, 2, b_amax},
    {IR_OP_MEAN, "mean", true, 2.5, b_mean},
    {IR_OP_SOFTMAX, "softmax over 4", true, 0.25, b_softmax},
    {IR_OP_SOFTMAX, "causal, 3 rows", false, 0, b_softmax_causal},
    {IR_OP_SOFTMAX, "causal, 1 row", true, 0.25, b_softmax_causal1},
    {IR_OP_GATHER, "gather row 4 of 5", true, 2, b_gather},
    {IR_OP_GATHER, "gather row 5 of 5: the error stays", false, 0, b_gather_oob},
    {IR_OP_SCATTER_ADD, "3 rows of 2 into 1 row", true, 6, b_scatter1},
    {IR_OP_SCATTER_ADD, "into 4 rows", false, 0, b_scatter4},
    {IR_OP_SELECT_ROW, "row 3 of 4", true, 2, b_select_row},
    {IR_OP_ONEHOT, "one class", true, 1, b_onehot1},
    {IR_OP_ONEHOT, "three classes", false, 0, b_onehot3},
    {IR_OP_CROSS_ENTROPY, "4 equal logits: log 4", true, 1.3862943611198906, b_xent},
    {IR_OP_CONV1D, "width 1: 2*3", true, 6, b_conv_w1},
    {IR_OP_CONV1D, "width 2: edge differs", false, 0, b_conv_w2},
    {IR_OP_CONV1D, "zero input", true, 0, b_conv_zero},
    {IR_OP_CONV1D_BWD_X, "width 1", true, 6, b_convx_w1},
    {IR_OP_CONV1D_BWD_X, "width 2", false, 0, b_convx_w2},
    {IR_OP_CONV1D_BWD_W, "width 1: 4 steps of 2*3", true, 24, b_convw_n1},
    {IR_OP_CONV1D_BWD_W, "width 2", false, 0, b_convw_n2},
    {IR_OP_SCAN, "u = 0", true, 0, b_scan_zero},
    {IR_OP_SCAN, "u = 1", false, 0, b_scan},
    {IR_OP_ROPE, "sin 0: x cos", true, 6, b_rope_sin0},
    {IR_OP_ROPE, "sin 1: pairs differ", false, 0, b_rope},
    {IR_OP_SCAN_BWD, "dy = 0", true, 0, b_scan_bwd_zero},
    {IR_OP_SCAN_BWD, "dy = 1", false, 0, b_scan_bwd},
};
enum { N_FOLD_CASES = sizeof fold_cases / sizeof fold_cases[0] };

static void fold_every_op_has_a_case(void **s) {
  (void)s;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    bool found = false;
    for (int i = 0; i < N_FOLD_CASES; i++) found |= (int)fold_cases[i].op == op;
    if (!found) fail_msg("no fold case for op %s", ir_op_name((ir_op)op));
  }
}

static void fold_table(void **s) {
  (void)s;
  for (int i = 0; i < N_FOLD_CASES; i++) {
    const fold_case *fc = &fold_cases[i];
    ir_func *f = ir_func_new();
    int r = fc->build(f);
    out(f, "r", r);
    assert_int_equal(f->nodes[r].op, fc->op);
    ir_func *g;
    if (strstr(fc->what, "error")) { /* folding must not hide it */
      g = ir_pass_fold(f, &err);
      assert_non_null(g);
      expect_contract(f, g);
      assert_null(ir_interp(g, IR_PREC_F64, NULL, &err));
      assert_non_null(strstr(err.msg, "out of range"));
    } else { /* exact under F32; under F64 too when the value is a float */
      g = run_prec(ir_pass_fold, f, IR_PREC_F32);
      if ((double)(float)fc->value == fc->value) expect_same_values(f, g, IR_PREC_F64);
    }
    const ir_node *o = out_node(g, 0);
    if (!fc->folds) {
      if (o->op != fc->op) fail_msg("%s: %s folded", ir_op_name(fc->op), fc->what);
    } else {
      if (o->op != IR_OP_FILL)
        fail_msg("%s: %s not folded", ir_op_name(fc->op), fc->what);
      double want = o->type.dtype == IR_F32 ? (double)(float)fc->value : fc->value;
      if (o->attr.value != want)
        fail_msg("%s: %s gave %.17g, want %.17g", ir_op_name(fc->op), fc->what,
                 o->attr.value, want);
    }
    ir_func_free(g);
    ir_func_free(f);
  }
}

/* A chain of folds collapses in one sweep; non-fill operands stop it. */
static void fold_chain_and_rounding(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(3));
  int a = bin(f, IR_OP_ADD, fill(f, 1, F1(3)), fill(f, -1, F1(3)));
  int e = un(f, IR_OP_EXP, a);                          /* exp 0 = 1 */
  int m = bin(f, IR_OP_MUL, x, e);                      /* x stops it */
  int t = bin(f, IR_OP_ADD, fill(f, 0.1, F0()), fill(f, 0.2, F0()));
  out(f, "m", m);
  out(f, "t", t);
  ir_func *g = run_prec(ir_pass_fold, f, IR_PREC_F32);
  expect_ops(g, "input fill fill fill fill mul fill fill fill");
  const ir_node *mm = out_node(g, 0);
  assert_int_equal(mm->op, IR_OP_MUL);
  assert_int_equal(g->nodes[mm->in[1]].op, IR_OP_FILL);
  assert_true(g->nodes[mm->in[1]].attr.value == 1);
  /* f32 fills and results are rounded to float: the F32 machine's sum */
  double want = (double)(float)((double)(float)0.1 + (double)(float)0.2);
  assert_true(out_node(g, 1)->attr.value == want);
  assert_true(out_node(g, 1)->attr.value != 0.1 + 0.2);
  ir_func_free(g);
  ir_func_free(f);
}

/* ---- simplify: one test per rule ---- */

static ir_func *simp(const ir_func *f) { return run(ir_pass_simplify, f); }

static void simplify_add_zero(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int z = fill(f, 0, F2(2, 3));
  out(f, "a", bin(f, IR_OP_ADD, x, z));
  out(f, "b", bin(f, IR_OP_ADD, z, x));
  int y = in(f, "y", F1(3));
  out(f, "c", bin(f, IR_OP_ADD, y, fill(f, -0.0, F2(2, 3)))); /* broadcast */
  out(f, "d", bin(f, IR_OP_ADD, x, fill(f, 0.5, F1(3))));    /* not zero */
  ir_func *g = simp(f);
  expect_ops(g, "input fill input fill expand fill add");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 0);
  assert_int_equal(g->outs[2].node, 4);
  assert_int_equal(g->nodes[4].in[0], 2);
  assert_true(ir_type_eq(&g->nodes[4].type, &(ir_type){IR_F32, 2, {2, 3}}));
  assert_int_equal(out_node(g, 3)->op, IR_OP_ADD);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_sub_zero(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int z = fill(f, 0, F1(3));
  out(f, "a", bin(f, IR_OP_SUB, x, z));
  out(f, "b", bin(f, IR_OP_SUB, z, x)); /* -x: kept */
  ir_func *g = simp(f);
  expect_ops(g, "input fill sub");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 2);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_mul_one(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int one = fill(f, 1, F1(3));
  out(f, "a", bin(f, IR_OP_MUL, x, one));
  out(f, "b", bin(f, IR_OP_MUL, one, x));
  int y = in(f, "y", F1(3));
  out(f, "c", bin(f, IR_OP_MUL, fill(f, 1, F3(2, 2, 3)), y));
  ir_func *g = simp(f);
  expect_ops(g, "input fill input fill expand");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 0);
  assert_int_equal(g->outs[2].node, 4);
  assert_int_equal(g->nodes[4].in[0], 2);
  assert_int_equal(g->nodes[4].type.rank, 3);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_div_one(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int one = fill(f, 1, F0());
  out(f, "a", bin(f, IR_OP_DIV, x, one));
  out(f, "b", bin(f, IR_OP_DIV, one, x)); /* 1/x: kept */
  ir_func *g = simp(f);
  expect_ops(g, "input fill div");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 2);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_mul_zero(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int z = fill(f, 0, F1(3));
  out(f, "a", bin(f, IR_OP_MUL, x, z));
  int y = in(f, "y", F1(3));
  out(f, "b", bin(f, IR_OP_MUL, fill(f, 0, F2(4, 3)), y));
  ir_func *g = simp(f);
  expect_ops(g, "input fill fill input fill fill");
  const ir_node *a = out_node(g, 0), *b = out_node(g, 1);
  assert_int_equal(g->outs[0].node, 2);
  assert_int_equal(g->outs[1].node, 5);
  assert_true(a->op == IR_OP_FILL && a->attr.value == 0);
  assert_true(b->op == IR_OP_FILL && b->attr.value == 0);
  assert_true(ir_type_eq(&a->type, &(ir_type){IR_F32, 2, {2, 3}}));
  assert_true(ir_type_eq(&b->type, &(ir_type){IR_F32, 2, {4, 3}}));
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_neg_neg(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(3));
  int n1 = un(f, IR_OP_NEG, x);
  int n2 = un(f, IR_OP_NEG, n1);
  int n3 = un(f, IR_OP_NEG, n2);
  int n4 = un(f, IR_OP_NEG, n3);
  out(f, "two", n2);
  out(f, "three", n3);
  out(f, "four", n4);
  ir_func *g = simp(f);
  /* n1 stays (dead now), n3 becomes a fresh neg(x), n4 collapses too */
  expect_ops(g, "input neg neg");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 2);
  assert_int_equal(g->nodes[2].in[0], 0);
  assert_int_equal(g->outs[2].node, 0);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_same_type(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  out(f, "r", reshape(f, x, F2(2, 3)));
  out(f, "e", expand(f, x, F2(2, 3)));
  out(f, "r2", reshape(f, x, F2(3, 2))); /* a real reshape: kept */
  out(f, "e2", expand(f, x, F3(4, 2, 3)));
  ir_func *g = simp(f);
  expect_ops(g, "input reshape expand");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 0);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_collapse(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int r1 = reshape(f, x, F1(6));
  out(f, "a", reshape(f, r1, F2(3, 2)));
  out(f, "b", reshape(f, r1, F2(2, 3))); /* back to x's type: x */
  int y = in(f, "y", F1(3));
  int e1 = expand(f, y, F2(1, 3));
  out(f, "c", expand(f, e1, F3(2, 4, 3)));
  ir_func *g = simp(f);
  expect_ops(g, "input reshape reshape input expand expand");
  const ir_node *a = out_node(g, 0), *c = out_node(g, 2);
  assert_int_equal(g->outs[0].node, 2);
  assert_true(a->op == IR_OP_RESHAPE && a->in[0] == 0);
  assert_int_equal(g->outs[1].node, 0);
  assert_int_equal(g->outs[2].node, 5);
  assert_true(c->op == IR_OP_EXPAND && c->in[0] == 3);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_permute_identity(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F3(2, 3, 4));
  out(f, "a", permute(f, x, 0, 1, 2));
  out(f, "b", permute(f, x, 0, 2, 1));
  ir_func *g = simp(f);
  expect_ops(g, "input permute");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 1);
  ir_func_free(g);
  ir_func_free(f);
}

/* A permute that moves only axes of size 1 is a reshape (the same
 * elements in the same order); one that reorders longer axes stays. */
static void simplify_permute_reshape(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F3(64, 1, 8)), y = in(f, "y", F3(1, 5, 1));
  out(f, "a", permute(f, x, 1, 0, 2)); /* [1,64,8] */
  out(f, "b", permute(f, y, 2, 1, 0)); /* [1,5,1] */
  out(f, "c", permute(f, x, 2, 1, 0)); /* [8,1,64]: 64 and 8 swap */
  ir_func *g = simp(f);
  expect_ops(g, "input input reshape permute");
  const ir_node *a = out_node(g, 0), *c = out_node(g, 2);
  assert_true(a->op == IR_OP_RESHAPE && a->in[0] == 0);
  assert_int_equal(a->type.dim[0], 1);
  assert_int_equal(a->type.dim[1], 64);
  assert_int_equal(g->outs[1].node, 1); /* [1,5,1] to itself: y */
  assert_true(c->op == IR_OP_PERMUTE && c->attr.perm[0] == 2);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_permute_permute(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F3(2, 3, 4));
  /* [1,2,0] then [2,0,1] is the identity */
  out(f, "id", permute(f, permute(f, x, 1, 2, 0), 2, 0, 1));
  /* [1,0,2] then [0,2,1]: dims [3,2,4] then [3,4,2] = x permuted by [1,2,0] */
  out(f, "p", permute(f, permute(f, x, 1, 0, 2), 0, 2, 1));
  ir_func *g = simp(f);
  expect_ops(g, "input permute permute permute");
  assert_int_equal(g->outs[0].node, 0);
  const ir_node *p = out_node(g, 1);
  assert_int_equal(g->outs[1].node, 3);
  assert_int_equal(p->in[0], 0);
  assert_int_equal(p->attr.perm[0], 1);
  assert_int_equal(p->attr.perm[1], 2);
  assert_int_equal(p->attr.perm[2], 0);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_slice_whole(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  out(f, "a", slice(f, x, 1, 0, 3));
  out(f, "b", slice(f, x, 1, 0, 2));
  out(f, "c", slice(f, x, 0, 0, 2));
  ir_func *g = simp(f);
  expect_ops(g, "input slice");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 1);
  assert_int_equal(g->outs[2].node, 0);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_slice_slice(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(6, 4));
  out(f, "a", slice(f, slice(f, x, 0, 1, 5), 0, 2, 4)); /* rows 3..4 */
  out(f, "b", slice(f, slice(f, x, 0, 1, 5), 1, 1, 3)); /* other axis: kept */
  ir_func *g = simp(f);
  expect_ops(g, "input slice slice slice slice");
  const ir_node *a = out_node(g, 0), *b = out_node(g, 1);
  assert_int_equal(g->outs[0].node, 2);
  assert_true(a->in[0] == 0 && a->attr.axis == 0 && a->attr.start == 3 && a->attr.end == 5);
  assert_true(b->in[0] == 3 && b->attr.axis == 1);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_reduce_unit(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F3(2, 1, 3));
  out(f, "s", reduce(f, IR_OP_SUM, x, 1));
  out(f, "m", reduce(f, IR_OP_MEAN, x, 1));
  out(f, "a", reduce(f, IR_OP_AMAX, x, 1));
  out(f, "k", reduce(f, IR_OP_SUM, x, 2)); /* size 3: kept */
  ir_func *g = simp(f);
  expect_ops(g, "input sum");
  assert_int_equal(g->outs[0].node, 0);
  assert_int_equal(g->outs[1].node, 0);
  assert_int_equal(g->outs[2].node, 0);
  assert_int_equal(g->outs[3].node, 1);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_concat_one(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  out(f, "c", concat(f, 1, 1, x, 0, 0));
  ir_func *g = simp(f);
  expect_ops(g, "input");
  assert_int_equal(g->outs[0].node, 0);
  ir_func_free(g);
  ir_func_free(f);
}

static void simplify_concat_slices(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 5));
  int y = in(f, "y", F2(2, 5));
  /* 0: whole axis -> x */
  out(f, "whole", concat(f, 1, 2, slice(f, x, 1, 0, 2), slice(f, x, 1, 2, 5), 0));
  /* 1: -> slice(x, 1, 4) */
  out(f, "part", concat(f, 1, 3, slice(f, x, 1, 1, 2), slice(f, x, 1, 2, 3), slice(f, x, 1, 3, 4)));
  /* 2: run then another value -> concat(slice(x, 0, 3), y) */
  out(f, "run", concat(f, 1, 3, slice(f, x, 1, 0, 2), slice(f, x, 1, 2, 3), y));
  /* 3..6: kept: a gap, the wrong order, two values, slices along another axis */
  out(f, "gap", concat(f, 1, 2, slice(f, x, 1, 0, 2), slice(f, x, 1, 3, 5), 0));
  out(f, "order", concat(f, 1, 2, slice(f, x, 1, 2, 5), slice(f, x, 1, 0, 2), 0));
  out(f, "two", concat(f, 1, 2, slice(f, x, 1, 0, 2), slice(f, y, 1, 2, 5), 0));
  out(f, "axis", concat(f, 1, 2, slice(f, x, 0, 0, 1), slice(f, x, 0, 1, 2), 0));
  ir_func *g = simp(f);
  expect_ops(g, "input input slice slice "              /* whole */
                "slice slice slice slice "              /* part */
                "slice slice slice concat "             /* run */
                "slice slice concat slice slice concat " /* gap, order */
                "slice slice concat slice slice concat"); /* two, axis */
  assert_int_equal(g->outs[0].node, 0);
  const ir_node *p = out_node(g, 1);
  assert_true(p->op == IR_OP_SLICE && p->in[0] == 0 && p->attr.start == 1 && p->attr.end == 4);
  const ir_node *r = out_node(g, 2);
  assert_int_equal(r->op, IR_OP_CONCAT);
  assert_int_equal(r->n_in, 2);
  assert_int_equal(r->in[1], 1);
  const ir_node *r0 = &g->nodes[r->in[0]];
  assert_true(r0->op == IR_OP_SLICE && r0->in[0] == 0 && r0->attr.start == 0 && r0->attr.end == 3);
  for (int o = 3; o <= 6; o++) {
    assert_int_equal(out_node(g, o)->op, IR_OP_CONCAT);
    assert_int_equal(out_node(g, o)->n_in, 2);
  }
  ir_func_free(g);
  ir_func_free(f);
}

static int pad(ir_func *f, int x, int axis, int s, int e) {
  return node(f, IR_OP_PAD, &x, 1, (ir_attrs){.axis = axis, .start = s, .end = e}, NULL);
}

/* add of two zero-padded values that meet -> their concat (padded by what
 * neither covers), in either order of the add's inputs. */
static void simplify_add_pads(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int y = in(f, "y", F2(2, 3));
  /* 0, 1: x then y, covering the axis, both orders of the add */
  out(f, "xy", bin(f, IR_OP_ADD, pad(f, x, 0, 0, 2), pad(f, y, 0, 2, 0)));
  out(f, "yx", bin(f, IR_OP_ADD, pad(f, y, 0, 2, 0), pad(f, x, 0, 0, 2)));
  /* 2: with zeros left before and after -> pad(concat(x, y)) */
  out(f, "inner", bin(f, IR_OP_ADD, pad(f, y, 0, 3, 1), pad(f, x, 0, 1, 3)));
  /* 3..5: kept: a gap, an overlap, different axes */
  out(f, "gap", bin(f, IR_OP_ADD, pad(f, x, 0, 0, 3), pad(f, y, 0, 3, 0)));
  out(f, "overlap", bin(f, IR_OP_ADD, pad(f, x, 0, 0, 1), pad(f, y, 0, 1, 0)));
  out(f, "axes", bin(f, IR_OP_ADD, pad(f, x, 1, 0, 3), pad(f, in(f, "z", F2(1, 6)), 0, 1, 0)));
  ir_func *g = simp(f);
  for (int o = 0; o < 2; o++) {
    const ir_node *c = out_node(g, o);
    assert_int_equal(c->op, IR_OP_CONCAT);
    assert_int_equal(c->attr.axis, 0);
    assert_int_equal(c->n_in, 2);
    assert_int_equal(c->in[0], x);
    assert_int_equal(c->in[1], y);
  }
  const ir_node *p = out_node(g, 2);
  assert_true(p->op == IR_OP_PAD && p->attr.axis == 0 && p->attr.start == 1 && p->attr.end == 1);
  const ir_node *c = &g->nodes[p->in[0]];
  assert_true(c->op == IR_OP_CONCAT && c->n_in == 2 && c->in[0] == x && c->in[1] == y);
  for (int o = 3; o <= 5; o++) assert_int_equal(out_node(g, o)->op, IR_OP_ADD);
  ir_func_free(g);
  ir_func_free(f);
}

static int mm(ir_func *f, int a, int b) {
  int ins[2] = {a, b};
  return node(f, IR_OP_MATMUL, ins, 2, (ir_attrs){0}, NULL);
}

/* A scaling by a uniform fill moves to the smaller side of a matmul: onto
 * an operand when the product has no other user (attention's scores /
 * sqrt(d)), onto the product when every user of the scaling is a matmul
 * (their gradient); kept otherwise. Powers of two: the values are exact. */
static void simplify_scalings(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int a = in(f, "a", F2(4, 2)), b = in(f, "b", F2(2, 6));
  out(f, "div", bin(f, IR_OP_DIV, mm(f, a, b), fill(f, 2, F2(4, 6))));
  out(f, "mul", bin(f, IR_OP_MUL, fill(f, 0.5, F2(3, 2)),
                   mm(f, in(f, "p", F2(3, 1)), in(f, "q", F2(1, 2)))));
  int m = mm(f, a, b); /* 2: the product is an output too */
  out(f, "shared", bin(f, IR_OP_DIV, m, fill(f, 2, F2(4, 6))));
  out(f, "m", m);
  int x = in(f, "x", F2(6, 6)), y = in(f, "y", F2(6, 2));
  int d = bin(f, IR_OP_DIV, x, fill(f, 4, F2(6, 6)));
  out(f, "r1", mm(f, d, y)); /* 4, 5: every user of d a matmul */
  out(f, "r2", mm(f, d, in(f, "y2", F2(6, 3))));
  int e = bin(f, IR_OP_MUL, x, fill(f, 0.25, F2(6, 6)));
  out(f, "kept", mm(f, e, y)); /* 6: e is also an exp's */
  out(f, "exp", un(f, IR_OP_EXP, e));
  ir_func *g = ir_optimize(f, NULL, &err);
  if (!g) fail_msg("%s", err.msg);
  expect_contract(f, g);
  expect_same_values(f, g, IR_PREC_F64);
  const ir_node *o = out_node(g, 0);
  assert_int_equal(o->op, IR_OP_MATMUL);
  assert_int_equal(g->nodes[o->in[0]].op, IR_OP_DIV); /* a (8) is smaller than b (12) */
  assert_int_equal(g->nodes[o->in[1]].op, IR_OP_INPUT);
  o = out_node(g, 1);
  assert_int_equal(o->op, IR_OP_MATMUL);
  assert_int_equal(g->nodes[o->in[1]].op, IR_OP_MUL); /* q (2) is smaller than p (3) */
  assert_int_equal(out_node(g, 2)->op, IR_OP_DIV);
  for (int k = 4; k <= 5; k++) {
    o = out_node(g, k);
    assert_int_equal(o->op, IR_OP_DIV);
    assert_int_equal(g->nodes[o->in[0]].op, IR_OP_MATMUL);
    assert_int_equal(g->nodes[g->nodes[o->in[0]].in[0]].op, IR_OP_INPUT);
  }
  o = out_node(g, 6);
  assert_int_equal(o->op, IR_OP_MATMUL);
  assert_int_equal(g->nodes[o->in[0]].op, IR_OP_MUL);
  ir_func_free(g);
  ir_func_free(f);
}

static int mmt(ir_func *f, int a, int b) { /* a^T b */
  int ins[2] = {a, b};
  return node(f, IR_OP_MATMUL, ins, 2, (ir_attrs){.ta = 1}, NULL);
}

/* matmul nodes of g with result type [r, k] */
static int matmuls(const ir_func *g, int r, int k) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const ir_node *x = &g->nodes[i];
    n += x->op == IR_OP_MATMUL && x->type.rank == 2 && x->type.dim[0] == r && x->type.dim[1] == k;
  }
  return n;
}

/* A first layer's norm gradient, as autodiff writes it for LayerNorm
 * (bias: ln) or RMSNorm (no bias) in front of `terms` projections, T rows,
 * I outputs, J inputs: P = sum_i A_i B_i; outputs dw = sum_rows(P C), db
 * = sum_rows(P) (ln), every A_i^T (C w [+ b]); `also`: P is an output
 * too. C is x x (any [T,J] node). */
static ir_func *norm_grad_graph(int T, int I, int J, int terms, bool ln, bool also) {
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(T, J));
  int w = ok(ir_leaf(f, IR_OP_PARAM, "w", F1(J), &err));
  int b = ln ? ok(ir_leaf(f, IR_OP_PARAM, "b", F1(J), &err)) : -1;
  int C = bin(f, IR_OP_MUL, x, x), X = bin(f, IR_OP_MUL, C, w);
  if (ln) X = bin(f, IR_OP_ADD, b, X);
  int P = -1, A[3];
  for (int i = 0; i < terms; i++) {
    char an[8], bn[8];
    snprintf(an, sizeof an, "a%d", i), snprintf(bn, sizeof bn, "b%d", i);
    A[i] = in(f, an, F2(T, I));
    int t = mm(f, A[i], ok(ir_leaf(f, IR_OP_PARAM, bn, F2(I, J), &err)));
    P = P < 0 ? t : bin(f, IR_OP_ADD, P, t);
  }
  out(f, "dw", reduce(f, IR_OP_SUM, bin(f, IR_OP_MUL, C, P), 0));
  if (ln) out(f, "db", reduce(f, IR_OP_SUM, P, 0));
  static const char *dW[] = {"dW0", "dW1", "dW2"};
  for (int i = 0; i < terms; i++) out(f, dW[i], mmt(f, A[i], X));
  if (also) out(f, "P", P);
  return f;
}

/* factor: the products A_i B_i [T,J] are gone from the norm's gradients
 * (with and without a bias, one to three terms), the same values; kept
 * where P is read otherwise, where a term has no weight gradient from
 * the same C, and where the rewrite would cost more than it saves. */
static void factor_norm_gradient(void **s) {
  (void)s;
  static const struct {
    int T, I, J, terms;
    bool ln, also, fires;
  } cases[] = {
      {16, 6, 4, 2, false, false, true}, {16, 6, 4, 3, true, false, true},
      {16, 6, 4, 1, true, false, true},  {16, 6, 4, 2, true, true, false},
      {2, 8, 8, 2, true, false, false}, /* T 2: [I,J] work outweighs */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ir_func *f = norm_grad_graph(cases[k].T, cases[k].I, cases[k].J, cases[k].terms,
                                 cases[k].ln, cases[k].also);
    ir_func *g = ir_optimize(f, NULL, &err);
    if (!g) fail_msg("%s", err.msg);
    expect_contract(f, g);
    expect_same_values(f, g, IR_PREC_F64);
    int T = cases[k].T, I = cases[k].I, J = cases[k].J, n = cases[k].terms;
    if (cases[k].fires) {
      assert_int_equal(matmuls(g, T, J), 0);
      assert_int_equal(matmuls(g, I, J), n * (cases[k].ln ? 2 : 1)); /* A^T C, r^T b */
      assert_int_equal(matmuls(g, 1, J), cases[k].ln ? n : 0);      /* db: r_i B_i */
    } else { /* the products and the weight gradients as they were */
      assert_int_equal(matmuls(g, T, J), n);
      assert_int_equal(matmuls(g, I, J), n);
      assert_int_equal(matmuls(g, 1, J), 0);
    }
    ir_func_free(g);
    ir_func_free(f);
  }
  /* a term whose weight gradient reads another C: nothing to share */
  ir_func *f = norm_grad_graph(16, 6, 4, 2, false, false);
  f->nodes[f->outs[2].node].in[1] = 0; /* dW1 = A_1^T x */
  ir_func *g = ir_optimize(f, NULL, &err);
  if (!g) fail_msg("%s", err.msg);
  expect_contract(f, g);
  expect_same_values(f, g, IR_PREC_F64);
  assert_int_equal(matmuls(g, 16, 4), 2);
  ir_func_free(g);
  ir_func_free(f);
}

/* silu(x) becomes x sigmoid(x) where sigmoid(x) is taken too (as a
 * gradient does), so that one sigmoid serves both; a lone silu stays. */
static void silu_shares_the_sigmoid(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(3, 4)), y = in(f, "y", F2(3, 4));
  out(f, "sx", un(f, IR_OP_SILU, x));
  out(f, "sy", un(f, IR_OP_SILU, y)); /* no sigmoid(y): kept */
  out(f, "d", bin(f, IR_OP_MUL, un(f, IR_OP_SIGMOID, x), y));
  ir_func *g = ir_optimize(f, NULL, &err);
  if (!g) fail_msg("%s", err.msg);
  expect_contract(f, g);
  expect_same_values(f, g, IR_PREC_F64);
  const ir_node *sx = out_node(g, 0), *d = out_node(g, 2);
  assert_int_equal(sx->op, IR_OP_MUL);
  int sig = sx->in[0] == 0 ? sx->in[1] : sx->in[0];
  assert_true(sx->in[0] == 0 || sx->in[1] == 0);
  assert_int_equal(g->nodes[sig].op, IR_OP_SIGMOID);
  assert_int_equal(d->op, IR_OP_MUL);
  assert_int_equal(d->in[0], sig); /* the same node: one sigmoid of x */
  assert_int_equal(out_node(g, 1)->op, IR_OP_SILU);
  int n_sig = 0;
  for (int v = 0; v < g->n_nodes; v++) n_sig += g->nodes[v].op == IR_OP_SIGMOID;
  assert_int_equal(n_sig, 1);
  ir_func_free(g);
  ir_func_free(f);
}

/* sub(x, x) is not 0 when x is inf or NaN: no pass may fold it. */
static void sub_self_is_kept(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(3));
  out(f, "d", bin(f, IR_OP_SUB, x, x));
  ir_func *g = ir_optimize(f, NULL, &err);
  if (!g) fail_msg("%s", err.msg);
  expect_contract(f, g);
  expect_ops(g, "input sub");
  ir_func_free(g);
  ir_func_free(f);
}

/* ---- the pipeline ---- */

/* ---- sink ---- */

static int op2(ir_func *f, ir_op op, int a, int b, ir_attrs at) {
  int ins[2] = {a, b};
  return node(f, op, ins, 2, at, NULL);
}

/* A first layer on n_tok gathered rows of a table V [rows,6]: an RMS
 * norm, a projection y [n_tok,5], row-wise readers of y; and readers that
 * mix positions: a positional table added to x, causal attention scores,
 * a sum over positions, xn^T y. loss sums what the params reach. */
static ir_func *first_layer_graph(int rows, int n_tok) {
  ir_func *f = ir_func_new();
  int x = op2(f, IR_OP_GATHER, in(f, "V", F2(rows, 6)), in(f, "tok", I(1, n_tok, 0)),
              (ir_attrs){0});
  int ms = reduce(f, IR_OP_MEAN, bin(f, IR_OP_MUL, x, x), 1);
  int r = un(f, IR_OP_RSQRT, bin(f, IR_OP_ADD, ms, fill(f, 1e-5, F0())));
  int xn = bin(f, IR_OP_MUL, bin(f, IR_OP_MUL, x, r),
               ok(ir_leaf(f, IR_OP_PARAM, "w", F1(6), &err)));
  int y = op2(f, IR_OP_MATMUL, xn, ok(ir_leaf(f, IR_OP_PARAM, "W", F2(5, 6), &err)),
              (ir_attrs){.tb = 1});
  int z = un(f, IR_OP_SILU, slice(f, y, 1, 0, 3));
  out(f, "z", z);
  out(f, "sm", node(f, IR_OP_SOFTMAX, &y, 1, (ir_attrs){0}, NULL));
  out(f, "mx", reduce(f, IR_OP_AMAX, y, 1));
  out(f, "xp", bin(f, IR_OP_ADD, x, in(f, "pe", F2(n_tok, 6))));
  int sc = op2(f, IR_OP_MATMUL, xn, xn, (ir_attrs){.tb = 1});
  int cs = node(f, IR_OP_SOFTMAX, &sc, 1, (ir_attrs){.causal = 1}, NULL);
  out(f, "cs", cs);
  out(f, "col", reduce(f, IR_OP_SUM, y, 0));
  int yt = op2(f, IR_OP_MATMUL, xn, y, (ir_attrs){.ta = 1});
  out(f, "yt", yt);
  int l1 = reduce(f, IR_OP_SUM, reduce(f, IR_OP_SUM, bin(f, IR_OP_MUL, z, z), 1), 0);
  int l2 = reduce(f, IR_OP_SUM, reduce(f, IR_OP_SUM, bin(f, IR_OP_MUL, cs, sc), 1), 0);
  int l3 = reduce(f, IR_OP_SUM, reduce(f, IR_OP_SUM, yt, 1), 0);
  out(f, "loss", bin(f, IR_OP_ADD, bin(f, IR_OP_ADD, l1, l2), l3));
  return f;
}

static int output_of(const ir_func *g, const char *name) {
  int o = ir_find_output(g, name);
  assert_true(o >= 0);
  return g->outs[o].node;
}

/* g's node v is gather(T, i) with T of `rows` rows */
static bool gather_of(const ir_func *g, int v, int rows) {
  const ir_node *n = &g->nodes[v];
  return n->op == IR_OP_GATHER && g->nodes[n->in[0]].type.dim[0] == rows;
}

/* sink: the norm, the projection and its row-wise readers computed on
 * the table's 3 rows and gathered after (same values, and the same
 * gradients once autodiff runs on the result: the weight's through a
 * scatter_add of the table's rows); the positional sum, the causal
 * softmax, the sum over positions and xn^T y keep their 8 rows (their
 * operands gathered); nothing moves where the table has as many rows as
 * the gather makes. */
static void sink_first_layer(void **s) {
  (void)s;
  ir_func *f = first_layer_graph(3, 8);
  ir_func *g = run(ir_pass_sink, f);
  int n_mean = 0;
  for (int v = 0; v < g->n_nodes; v++) {
    const ir_node *n = &g->nodes[v];
    if (n->op == IR_OP_MEAN) assert_int_equal(n->type.dim[0], 3), n_mean++;
    if (n->op == IR_OP_MATMUL && n->in[1] == ir_find_leaf(g, "W")) {
      assert_int_equal(n->type.dim[0], 3);
      assert_int_equal(g->nodes[n->in[0]].op, IR_OP_MUL);
    }
  }
  assert_int_equal(n_mean, 1);
  const char *sunk[] = {"z", "sm", "mx"};
  for (int i = 0; i < 3; i++) assert_true(gather_of(g, output_of(g, sunk[i]), 3));
  const ir_node *xp = &g->nodes[output_of(g, "xp")], *cs = &g->nodes[output_of(g, "cs")],
                *col = &g->nodes[output_of(g, "col")], *yt = &g->nodes[output_of(g, "yt")];
  assert_int_equal(xp->op, IR_OP_ADD);
  assert_true(gather_of(g, xp->in[0], 3)); /* x itself */
  assert_int_equal(cs->op, IR_OP_SOFTMAX);
  assert_true(gather_of(g, cs->in[0], 3)); /* the scores' rows: [3,8] */
  assert_int_equal(g->nodes[g->nodes[cs->in[0]].in[0]].type.dim[1], 8);
  assert_int_equal(col->op, IR_OP_SUM);
  assert_true(gather_of(g, col->in[0], 3));
  assert_int_equal(yt->op, IR_OP_MATMUL);
  assert_true(gather_of(g, yt->in[0], 3) && gather_of(g, yt->in[1], 3));
  ir_func *g2 = ir_pass_sink(g, &err);
  if (!g2) fail_msg("%s", err.msg);
  expect_same_text(g, g2); /* a fixed point */
  ir_func_free(g2);
  /* the gradient of the sunk function: the same values */
  ir_func *da = ad_grad(f, "loss", &err), *db = ad_grad(g, "loss", &err);
  if (!da || !db) fail_msg("%s", err.msg);
  expect_same_values(da, db, IR_PREC_F64);
  int scatters = 0;
  for (int v = 0; v < db->n_nodes; v++) scatters += db->nodes[v].op == IR_OP_SCATTER_ADD;
  assert_true(scatters >= 1);
  ir_func_free(da), ir_func_free(db), ir_func_free(g), ir_func_free(f);
  /* as many table rows as gathered ones: nothing to gain */
  f = first_layer_graph(8, 8);
  g = run(ir_pass_sink, f);
  expect_same_text(f, g);
  ir_func_free(g), ir_func_free(f);
}

static void passes_list(void **s) {
  (void)s;
  int n = 0;
  const ir_pass *p = ir_passes(&n);
  assert_int_equal(n, 5);
  assert_string_equal(p[0].name, "simplify");
  assert_string_equal(p[1].name, "factor");
  assert_string_equal(p[2].name, "fold");
  assert_string_equal(p[3].name, "cse");
  assert_string_equal(p[4].name, "dce");
  assert_ptr_equal(p[0].run, ir_pass_simplify);
  assert_ptr_equal(p[1].run, ir_pass_factor);
  assert_ptr_equal(p[2].run, ir_pass_fold);
  assert_ptr_equal(p[3].run, ir_pass_cse);
  assert_ptr_equal(p[4].run, ir_pass_dce);
}

/* Every kind of rewrite in one graph; needs two rounds (fold makes the 1
 * that simplify then removes). */
static ir_func *mixed_graph(void) {
  ir_func *f = ir_func_new();
  int x = in(f, "x", F2(2, 3));
  int w = ok(ir_leaf(f, IR_OP_PARAM, "w", F1(3), &err));
  int one = un(f, IR_OP_EXP, fill(f, 0, F2(2, 3)));       /* fold -> 1 */
  int m = bin(f, IR_OP_MUL, x, one);                      /* then -> x */
  int d1 = bin(f, IR_OP_ADD, x, w);
  int d2 = bin(f, IR_OP_ADD, x, w);                       /* cse */
  int e = bin(f, IR_OP_SUB, d1, d2);                      /* kept */
  int t = node(f, IR_OP_PERMUTE, &x, 1, (ir_attrs){.perm = {1, 0}}, NULL);
  int p = node(f, IR_OP_PERMUTE, &t, 1, (ir_attrs){.perm = {1, 0}}, NULL); /* x */
  un(f, IR_OP_TANH, x);                                   /* dead */
  int c = concat(f, 1, 2, slice(f, m, 1, 0, 1), slice(f, m, 1, 1, 3), 0); /* -> m */
  out(f, "e", e);
  out(f, "s", bin(f, IR_OP_ADD, c, p));
  return f;
}

static void optimize_fixed_point(void **s) {
  (void)s;
  ir_func *f = mixed_graph();
  if (ir_verify(f, &err)) fail_msg("%s", err.msg);
  ir_func *before = ir_func_clone(f);
  ir_func *g = ir_optimize(f, NULL, &err);
  if (!g) fail_msg("%s", err.msg);
  assert_true(func_eq(f, before));
  expect_contract(f, g);
  expect_same_values(f, g, IR_PREC_F64);
  expect_ops(g, "input param add sub add");
  assert_int_equal(g->nodes[3].in[0], 2);
  assert_int_equal(g->nodes[3].in[1], 2);
  assert_int_equal(g->nodes[4].in[0], 0);
  assert_int_equal(g->nodes[4].in[1], 0);
  /* a fixed point: no pass changes it, and optimizing again is the identity */
  int n;
  const ir_pass *ps = ir_passes(&n);
  for (int i = 0; i < n; i++) {
    ir_func *h = ps[i].run(g, &err);
    if (!h) fail_msg("%s", err.msg);
    expect_same_text(g, h);
    assert_true(func_eq(g, h));
    ir_func_free(h);
  }
  ir_func *h = ir_optimize(g, NULL, &err);
  assert_non_null(h);
  assert_true(func_eq(g, h));
  ir_func_free(h);
  ir_func_free(g);
  ir_func_free(before);
  ir_func_free(f);
}

/* The caller owns *text (open_memstream writes it on fclose). */
static void trace_of(const ir_func *f, ir_func **g, char **text) {
  size_t len = 0;
  *text = NULL;
  FILE *m = open_memstream(text, &len);
  assert_non_null(m);
  *g = ir_optimize(f, m, &err);
  fclose(m);
  if (!*g) fail_msg("%s", err.msg);
}

static void optimize_trace(void **s) {
  (void)s;
  ir_func *f = mixed_graph(), *g, *h;
  char *t;
  trace_of(f, &g, &t);
  const char *names[] = {"simplify", "fold", "cse", "dce"};
  for (int i = 0; i < 4; i++) {
    char hdr[64];
    snprintf(hdr, sizeof hdr, "# after %s\n", names[i]);
    if (!strstr(t, hdr)) fail_msg("trace lacks \"%s\":\n%s", hdr, t);
  }
  assert_true(strncmp(t, "# after simplify\n", 17) == 0);
  /* the last dump is the result */
  char *last = strrchr(t, '#'), *text = ir_print_str(g);
  assert_non_null(last);
  last = strchr(last, '\n') + 1;
  assert_string_equal(last, text);
  free(text);
  free(t);
  /* nothing changes the second time: nothing is traced */
  trace_of(g, &h, &t);
  assert_string_equal(t, "");
  free(t);
  ir_func_free(h);
  ir_func_free(g);
  ir_func_free(f);
}

static void passes_report_errors(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = in(f, "x", F1(3));
  int a = un(f, IR_OP_EXP, x);
  out(f, "a", a);
  f->nodes[a].in[0] = 5; /* refers forward: broken */
  err.msg[0] = 0;
  assert_null(ir_optimize(f, NULL, &err));
  assert_true(strstr(err.msg, "%1") != NULL);
  ir_pass_fn fns[] = {ir_pass_dce, ir_pass_cse, ir_pass_fold, ir_pass_simplify};
  const char *names[] = {"dce", "cse", "fold", "simplify"};
  for (int i = 0; i < 4; i++) {
    err.msg[0] = 0;
    assert_null(fns[i](f, &err));
    if (strncmp(err.msg, names[i], strlen(names[i])) != 0)
      fail_msg("%s: message \"%s\"", names[i], err.msg);
    assert_null(fns[i](f, NULL)); /* err may be NULL */
  }
  ir_func_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(dce_drops_dead_keeps_leaves),
      cmocka_unit_test(dce_keeps_output_leaf_and_shared),
      cmocka_unit_test(cse_merges_chains_and_fills),
      cmocka_unit_test(cse_compares_used_attrs_only),
      cmocka_unit_test(cse_never_merges_named_leaves),
      cmocka_unit_test(cse_ten_thousand_nodes),
      cmocka_unit_test(fold_every_op_has_a_case),
      cmocka_unit_test(fold_table),
      cmocka_unit_test(fold_chain_and_rounding),
      cmocka_unit_test(simplify_add_zero),
      cmocka_unit_test(simplify_sub_zero),
      cmocka_unit_test(simplify_mul_one),
      cmocka_unit_test(simplify_div_one),
      cmocka_unit_test(simplify_mul_zero),
      cmocka_unit_test(simplify_neg_neg),
      cmocka_unit_test(simplify_same_type),
      cmocka_unit_test(simplify_collapse),
      cmocka_unit_test(simplify_permute_identity),
      cmocka_unit_test(simplify_permute_permute),
      cmocka_unit_test(simplify_permute_reshape),
      cmocka_unit_test(simplify_slice_whole),
      cmocka_unit_test(simplify_slice_slice),
      cmocka_unit_test(simplify_reduce_unit),
      cmocka_unit_test(simplify_concat_one),
      cmocka_unit_test(silu_shares_the_sigmoid),
      cmocka_unit_test(factor_norm_gradient),
      cmocka_unit_test(simplify_concat_slices),
      cmocka_unit_test(simplify_add_pads),
      cmocka_unit_test(simplify_scalings),
      cmocka_unit_test(sub_self_is_kept),
      cmocka_unit_test(sink_first_layer),
      cmocka_unit_test(passes_list),
      cmocka_unit_test(optimize_fixed_point),
      cmocka_unit_test(optimize_trace),
      cmocka_unit_test(passes_report_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
