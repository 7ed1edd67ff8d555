/* test_demand.c — ir_pass_demand and ir_bind_scalar (ir/demand.c), and
 * the training kernels built with them (rt_model_kernel_function).
 *
 * Per op (a table with an entry for every op of IR_OP_LIST): a small
 * graph whose output is a slice of the op's result, along each axis, at
 * both ends; the demand pass must give exactly the interpreter's values
 * (F64) of the original, and for the ops that have a rule it must cut
 * the work (fewer elements computed). Per model spec: the function read
 * at pos = L-1 and its gradient, before and after binding pos and the
 * pass, agree to rounding; the last layer really shrinks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "model_util.h"

static ir_error E;

static uint64_t rng = 0x243F6A8885A308D3ull;
static double urand(double lo, double hi) {
  uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double)(z >> 11) * 0x1p-53;
}

static int ok_(int v, const char *what, int line) {
  if (v < 0) fail_msg("line %d: %s: %s", line, what, E.msg);
  return v;
}
#define OK(x) ok_((x), #x, __LINE__)

static ir_type T(int rank, const int *dim, ir_dtype dt) {
  return ir_type_make(dt, rank, dim);
}
#define F(...) T(sizeof((int[]){__VA_ARGS__}) / sizeof(int), (int[]){__VA_ARGS__}, IR_F32)
#define I(...) T(sizeof((int[]){__VA_ARGS__}) / sizeof(int), (int[]){__VA_ARGS__}, IR_I32)

static int leaf(ir_func *f, const char *name, ir_type t) {
  return OK(ir_leaf(f, IR_OP_INPUT, name, t, &E));
}
static int op1(ir_func *f, ir_op op, int x, ir_attrs a) {
  return OK(ir_add(f, op, &x, 1, &a, NULL, NULL, &E));
}
static int op2(ir_func *f, ir_op op, int x, int y, ir_attrs a) {
  int in[2] = {x, y};
  return OK(ir_add(f, op, in, 2, &a, NULL, NULL, &E));
}
static int typed(ir_func *f, ir_op op, int x, ir_type t) {
  return OK(ir_add(f, op, &x, 1, NULL, &t, NULL, &E));
}

/* Random leaves for the interpreter: f32 in [0.1, 2] (log, sqrt and div
 * stay defined), i32 in [0, imax); a const with data uses its own. */
static double **make_leaves(const ir_func *f, int imax) {
  double **dl = calloc((size_t)f->n_nodes + 1, sizeof *dl);
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    if (!ir_op_is_leaf(n->op) || n->op == IR_OP_FILL || n->data) continue;
    int64_t cnt = ir_numel(&n->type);
    dl[v] = malloc(sizeof(double) * (size_t)(cnt + 1));
    for (int64_t i = 0; i < cnt; i++)
      dl[v][i] = n->type.dtype == IR_I32 ? floor(urand(0, imax)) : urand(0.1, 2);
  }
  return dl;
}

/* The leaves of g bound by name (and node order for unnamed ones) to
 * those made for f. */
static double **same_leaves(const ir_func *g, const ir_func *f, double **dl) {
  double **gl = calloc((size_t)g->n_nodes + 1, sizeof *gl);
  for (int v = 0; v < g->n_nodes; v++) {
    const ir_node *n = &g->nodes[v];
    if (!ir_op_is_leaf(n->op) || n->op == IR_OP_FILL || n->data) continue;
    int u = ir_find_leaf(f, n->name);
    assert_true(u >= 0);
    gl[v] = dl[u];
  }
  return gl;
}

static double max_rel(const double *a, const double *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs(a[i] - b[i]));
    s = fmax(s, fabs(b[i]));
  }
  return d / fmax(s, 1e-300);
}

/* Elements computed by the non-leaf nodes (what the demand pass cuts). */
static int64_t work(const ir_func *f) {
  int64_t w = 0;
  for (int v = 0; v < f->n_nodes; v++)
    if ((!ir_op_is_leaf(f->nodes[v].op) || f->nodes[v].op == IR_OP_FILL) &&
        f->nodes[v].op != IR_OP_SLICE && f->nodes[v].op != IR_OP_RESHAPE)
      w += ir_numel(&f->nodes[v].type);
  return w;
}

/* f and ir_pass_demand(f) on the same leaves: every output equal. */
static void check_same(const ir_func *f, int imax, const char *label) {
  ir_func *g = ir_pass_demand(f, &E);
  if (!g) fail_msg("%s: demand: %s", label, E.msg);
  if (ir_verify(g, &E)) fail_msg("%s: demand result: %s", label, E.msg);
  assert_int_equal(g->n_outs, f->n_outs);
  double **dl = make_leaves(f, imax), **gl = same_leaves(g, f, dl);
  double **a = ir_interp(f, IR_PREC_F64, (const double *const *)dl, &E);
  if (!a) fail_msg("%s: interp: %s", label, E.msg);
  double **b = ir_interp(g, IR_PREC_F64, (const double *const *)gl, &E);
  if (!b) fail_msg("%s: interp after demand: %s", label, E.msg);
  for (int j = 0; j < f->n_outs; j++) {
    int u = f->outs[j].node, w = g->outs[j].node;
    assert_true(ir_type_eq(&f->nodes[u].type, &g->nodes[w].type));
    double e = max_rel(b[w], a[u], ir_numel(&f->nodes[u].type));
    if (!(e <= 1e-12)) fail_msg("%s: output %s differs by %.3g", label, f->outs[j].name, e);
  }
  ir_values_free(f, a);
  ir_values_free(g, b);
  for (int v = 0; v < f->n_nodes; v++) free(dl[v]);
  free(dl);
  free(gl);
  ir_func_free(g);
}

/* ---- one entry per op: build the op, return the node to demand ---- */

typedef int (*build_fn)(ir_func *f, ir_op op);
typedef struct {
  build_fn build; /* NULL: a leaf, tested by b_leaf */
  bool cut;       /* the pass has a rule: some demand must shrink the work */
  int imax;
} op_case;

static int b_leaf(ir_func *f, ir_op op) {
  if (op == IR_OP_FILL) return OK(ir_fill(f, 1.5, F(4, 3), &E));
  int x = OK(ir_leaf(f, op, "x", F(4, 3), &E));
  if (op == IR_OP_CONST) {
    float d[12];
    for (int i = 0; i < 12; i++) d[i] = (float)i / 4;
    OK(ir_set_const_data(f, x, d, &E));
  }
  return x;
}
static int b_unary(ir_func *f, ir_op op) {
  return op1(f, op, leaf(f, "x", F(4, 3)), (ir_attrs){0});
}
static int b_binary(ir_func *f, ir_op op) { /* both broadcasts */
  int x = leaf(f, "x", F(4, 3)), y = leaf(f, "y", F(3)), z = leaf(f, "z", F(4, 1));
  return op2(f, op, op2(f, op, x, y, (ir_attrs){0}), z, (ir_attrs){0});
}
static int b_matmul(ir_func *f, ir_op op) {
  (void)op;
  int a = leaf(f, "a", F(2, 4, 3)), b = leaf(f, "b", F(2, 3, 5));
  int at = leaf(f, "at", F(2, 3, 4)), bt = leaf(f, "bt", F(2, 5, 3));
  int m1 = op2(f, IR_OP_MATMUL, a, b, (ir_attrs){0});
  int m2 = op2(f, IR_OP_MATMUL, at, bt, (ir_attrs){.ta = true, .tb = true});
  return op2(f, IR_OP_ADD, m1, m2, (ir_attrs){0});
}
static int b_permute(ir_func *f, ir_op op) {
  return op1(f, op, leaf(f, "x", F(4, 3, 5)), (ir_attrs){.perm = {2, 0, 1}});
}
static int b_reshape(ir_func *f, ir_op op) {
  int x = op1(f, IR_OP_NEG, leaf(f, "x", F(4, 6)), (ir_attrs){0});
  return typed(f, op, x, F(4, 2, 3));
}
static int b_expand(ir_func *f, ir_op op) {
  return typed(f, op, leaf(f, "x", F(4, 1)), F(2, 4, 3));
}
static int b_slice(ir_func *f, ir_op op) {
  int x = op1(f, IR_OP_NEG, leaf(f, "x", F(5, 6)), (ir_attrs){0});
  return op1(f, op, x, (ir_attrs){.axis = 1, .start = 1, .end = 4});
}
static int b_pad(ir_func *f, ir_op op) {
  return op1(f, op, leaf(f, "x", F(4, 3)), (ir_attrs){.axis = 1, .start = 1, .end = 2});
}
static int b_concat(ir_func *f, ir_op op) {
  return op2(f, op, leaf(f, "x", F(4, 3)), leaf(f, "y", F(4, 2)), (ir_attrs){.axis = 1});
}
static int b_reduce(ir_func *f, ir_op op) {
  return op1(f, op, leaf(f, "x", F(4, 5, 3)), (ir_attrs){.axis = 1});
}
static int b_softmax(ir_func *f, ir_op op) {
  int x = leaf(f, "x", F(3, 4, 5));
  int p = op1(f, op, x, (ir_attrs){0}), q = op1(f, op, x, (ir_attrs){.causal = true});
  return op2(f, IR_OP_ADD, p, q, (ir_attrs){0});
}
static int b_gather(ir_func *f, ir_op op) {
  return op2(f, op, leaf(f, "t", F(6, 3)), leaf(f, "i", I(4, 2)), (ir_attrs){0});
}
static int b_scatter(ir_func *f, ir_op op) {
  return op2(f, op, leaf(f, "s", F(4, 3)), leaf(f, "i", I(4)), (ir_attrs){.n = 6});
}
static int b_select_row(ir_func *f, ir_op op) { /* a position known and not */
  int x = leaf(f, "x", F(5, 3)), p = leaf(f, "p", I());
  int c = OK(ir_fill(f, 3, I(), &E));
  int r1 = op2(f, op, op1(f, IR_OP_EXP, x, (ir_attrs){0}), c, (ir_attrs){0});
  return op2(f, IR_OP_ADD, r1, op2(f, op, x, p, (ir_attrs){0}), (ir_attrs){0});
}
static int b_onehot(ir_func *f, ir_op op) {
  return op1(f, op, leaf(f, "i", I(4)), (ir_attrs){.n = 5});
}
static int b_xent(ir_func *f, ir_op op) {
  return op2(f, op, leaf(f, "x", F(4, 5)), leaf(f, "l", I(4)), (ir_attrs){0});
}
static int b_conv(ir_func *f, ir_op op) {
  int g = leaf(f, "g", F(6, 4));
  if (op == IR_OP_CONV1D_BWD_W)
    return op2(f, op, g, leaf(f, "x", F(6, 4)), (ir_attrs){.n = 3});
  return op2(f, op, g, leaf(f, "w", F(4, 3)), (ir_attrs){0});
}
static int b_scan(ir_func *f, ir_op op) {
  int u = leaf(f, "u", F(5, 4)), d = leaf(f, "d", F(5, 4));
  int A = op1(f, IR_OP_NEG, leaf(f, "A", F(4, 3)), (ir_attrs){0});
  int bc = leaf(f, "bc", F(5, 6));
  if (op == IR_OP_SCAN) {
    int in[4] = {u, d, A, bc};
    return OK(ir_add(f, op, in, 4, NULL, NULL, NULL, &E));
  }
  int in[4] = {op2(f, IR_OP_CONCAT, u, d, (ir_attrs){.axis = 1}), A, bc,
               leaf(f, "dy", F(5, 4))};
  return OK(ir_add(f, op, in, 4, NULL, NULL, NULL, &E));
}

static int b_rope(ir_func *f, ir_op op) {
  int in[3] = {leaf(f, "x", F(5, 2, 6)), leaf(f, "c", F(5, 3)), leaf(f, "s", F(5, 3))};
  return OK(ir_add(f, op, in, 3, NULL, NULL, NULL, &E));
}

static const op_case cases[IR_OP_COUNT] = {
    [IR_OP_INPUT] = {b_leaf, false, 0},
    [IR_OP_PARAM] = {b_leaf, false, 0},
    [IR_OP_CONST] = {b_leaf, false, 0},
    [IR_OP_FILL] = {b_leaf, true, 0},
    [IR_OP_NEG] = {b_unary, true, 0},
    [IR_OP_EXP] = {b_unary, true, 0},
    [IR_OP_LOG] = {b_unary, true, 0},
    [IR_OP_SQRT] = {b_unary, true, 0},
    [IR_OP_RSQRT] = {b_unary, true, 0},
    [IR_OP_RECIP] = {b_unary, true, 0},
    [IR_OP_SIGMOID] = {b_unary, true, 0},
    [IR_OP_SILU] = {b_unary, true, 0},
    [IR_OP_SOFTPLUS] = {b_unary, true, 0},
    [IR_OP_TANH] = {b_unary, true, 0},
    [IR_OP_RELU] = {b_unary, true, 0},
    [IR_OP_ADD] = {b_binary, true, 0},
    [IR_OP_SUB] = {b_binary, true, 0},
    [IR_OP_MUL] = {b_binary, true, 0},
    [IR_OP_DIV] = {b_binary, true, 0},
    [IR_OP_MAX] = {b_binary, true, 0},
    [IR_OP_GT] = {b_binary, true, 0},
    [IR_OP_MATMUL] = {b_matmul, true, 0},
    [IR_OP_PERMUTE] = {b_permute, true, 0},
    [IR_OP_RESHAPE] = {b_reshape, true, 0},
    [IR_OP_EXPAND] = {b_expand, true, 0},
    [IR_OP_SLICE] = {b_slice, true, 0},
    [IR_OP_PAD] = {b_pad, true, 0},
    [IR_OP_CONCAT] = {b_concat, true, 0},
    [IR_OP_SUM] = {b_reduce, true, 0},
    [IR_OP_AMAX] = {b_reduce, true, 0},
    [IR_OP_MEAN] = {b_reduce, true, 0},
    [IR_OP_SOFTMAX] = {b_softmax, true, 0},
    [IR_OP_GATHER] = {b_gather, true, 6},
    [IR_OP_SCATTER_ADD] = {b_scatter, false, 6},
    [IR_OP_SELECT_ROW] = {b_select_row, true, 5},
    [IR_OP_ONEHOT] = {b_onehot, true, 5},
    [IR_OP_CROSS_ENTROPY] = {b_xent, true, 5},
    [IR_OP_CONV1D] = {b_conv, true, 0},
    [IR_OP_CONV1D_BWD_X] = {b_conv, false, 0},
    [IR_OP_CONV1D_BWD_W] = {b_conv, false, 0},
    [IR_OP_ROPE] = {b_rope, true, 0},
    [IR_OP_SCAN] = {b_scan, true, 0},
    [IR_OP_SCAN_BWD] = {b_scan, false, 0},
};

static void every_op_has_a_case(void **state) {
  (void)state;
  for (int op = 0; op < IR_OP_COUNT; op++)
    if (!cases[op].build)
      fail_msg("op %s has no demand test case", ir_op_name((ir_op)op));
}

/* For each axis of the op's result and both ends of it: the slice as the
 * only output. */
static void every_op_matches(void **state) {
  (void)state;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    const op_case *c = &cases[op];
    if (!c->build) continue;
    ir_func *probe = ir_func_new();
    int v = c->build(probe, (ir_op)op);
    ir_type t = probe->nodes[v].type;
    ir_func_free(probe);
    bool shrank = false;
    for (int a = 0; a < t.rank; a++) {
      for (int end = 0; end < 2 && t.dim[a] > 1; end++) {
        ir_func *f = ir_func_new();
        v = c->build(f, (ir_op)op);
        int lo = end ? t.dim[a] - 1 : 0;
        int s = op1(f, IR_OP_SLICE, v, (ir_attrs){.axis = a, .start = lo, .end = lo + 1});
        OK(ir_add_output(f, "y", s, &E));
        char label[96];
        snprintf(label, sizeof label, "%s, axis %d, [%d,%d)", ir_op_name((ir_op)op), a, lo, lo + 1);
        check_same(f, c->imax, label);
        ir_func *g = ir_pass_demand(f, &E);
        assert_non_null(g);
        shrank |= work(g) < work(f);
        if (!c->cut && work(g) < work(f))
          fail_msg("%s: cut although %s has no rule", label, ir_op_name((ir_op)op));
        ir_func_free(g);
        ir_func_free(f);
      }
    }
    if (c->cut && !shrank)
      fail_msg("%s: no demand cut any work", ir_op_name((ir_op)op));
  }
}

/* A causal softmax keeps its mask only for a suffix of its rows: the
 * last row is cut down, the first is not (the whole is computed). */
static void causal_suffix_only(void **state) {
  (void)state;
  for (int last = 0; last < 2; last++) {
    ir_func *f = ir_func_new();
    int x = leaf(f, "x", F(5, 5));
    int p = op1(f, IR_OP_SOFTMAX, x, (ir_attrs){.causal = true});
    int r = last ? 4 : 0;
    OK(ir_add_output(f, "y", op1(f, IR_OP_SLICE, p, (ir_attrs){.axis = 0, .start = r, .end = r + 1}), &E));
    ir_func *g = ir_pass_demand(f, &E);
    assert_non_null(g);
    int sm = -1;
    for (int v = 0; v < g->n_nodes; v++)
      if (g->nodes[v].op == IR_OP_SOFTMAX) sm = v;
    assert_true(sm >= 0);
    assert_int_equal(g->nodes[sm].type.dim[0], last ? 1 : 5);
    check_same(f, 0, last ? "causal, last row" : "causal, first row");
    ir_func_free(g);
    ir_func_free(f);
  }
}

/* A causal softmax row at a run-time position p: every p gives the
 * causal row's values, keys after p exactly zero. */
static void causal_row_at_runtime(void **state) {
  (void)state;
  enum { Lq = 4, Lk = 6 };
  ir_func *f = ir_func_new();
  int x = leaf(f, "x", F(2, Lq, Lk)), p = leaf(f, "p", I());
  int s = op1(f, IR_OP_SOFTMAX, op1(f, IR_OP_EXP, x, (ir_attrs){0}), (ir_attrs){.causal = true});
  int t = op1(f, IR_OP_PERMUTE, s, (ir_attrs){.perm = {1, 0, 2}}); /* [Lq, 2, Lk] */
  OK(ir_add_output(f, "y", op2(f, IR_OP_SELECT_ROW, t, p, (ir_attrs){0}), &E));
  ir_func *g = ir_pass_demand(f, &E);
  if (!g) fail_msg("%s", E.msg);
  int sm = -1;
  for (int v = 0; v < g->n_nodes; v++)
    if (g->nodes[v].op == IR_OP_SOFTMAX) sm = v;
  assert_true(sm >= 0);
  assert_false(g->nodes[sm].attr.causal);
  assert_int_equal(g->nodes[sm].type.dim[1], 1);
  double **dl = make_leaves(f, 1), **gl = same_leaves(g, f, dl);
  for (int pos = 0; pos < Lq; pos++) {
    dl[p][0] = pos;
    double **a = ir_interp(f, IR_PREC_F64, (const double *const *)dl, &E);
    double **b = ir_interp(g, IR_PREC_F64, (const double *const *)gl, &E);
    if (!a || !b) fail_msg("%s", E.msg);
    int u = f->outs[0].node, w = g->outs[0].node;
    for (int k = 0; k < 2 * Lk; k++) {
      if (a[u][k] != b[w][k]) fail_msg("p %d, element %d: %.17g vs %.17g", pos, k, b[w][k], a[u][k]);
      if (k % Lk > pos + Lk - Lq) assert_true(b[w][k] == 0);
    }
    ir_values_free(f, a);
    ir_values_free(g, b);
  }
  for (int v = 0; v < f->n_nodes; v++) free(dl[v]);
  free(dl), free(gl);
  ir_func_free(g);
  ir_func_free(f);
}

/* A scan read at some rows with bc = x W: C is made at those rows only
 * (ir/demand.c splits_c), B at all; the same values. For W transposed
 * or not, the first and the last row; not when bc has another reader. */
static void scan_c_at_rows_read(void **state) {
  (void)state;
  enum { L = 6, C = 4, N = 3, K = 5 };
  for (int k = 0; k < 6; k++) {
    bool tb = k & 1, last = k & 2, shared = k & 4;
    ir_func *f = ir_func_new();
    int u = leaf(f, "u", F(L, C)), d = leaf(f, "d", F(L, C));
    int A = op1(f, IR_OP_NEG, leaf(f, "A", F(C, N)), (ir_attrs){0});
    int x = leaf(f, "x", F(L, K));
    int W = tb ? leaf(f, "W", F(2 * N, K)) : leaf(f, "W", F(K, 2 * N));
    int bc = op2(f, IR_OP_MATMUL, x, W, (ir_attrs){.tb = tb});
    int in[4] = {u, d, A, bc};
    int y = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
    int r = last ? L - 1 : 0;
    OK(ir_add_output(f, "y", op1(f, IR_OP_SLICE, y, (ir_attrs){.axis = 0, .start = r, .end = r + 1}), &E));
    if (shared) OK(ir_add_output(f, "bc", bc, &E));
    char label[64];
    snprintf(label, sizeof label, "scan C, tb %d, row %d%s", tb, r, shared ? ", bc shared" : "");
    check_same(f, 0, label);
    ir_func *g = ir_pass_demand(f, &E);
    assert_non_null(g);
    int rows_of_c = 0, pads = 0;
    for (int v = 0; v < g->n_nodes; v++) {
      const ir_node *n = &g->nodes[v];
      if (n->op == IR_OP_MATMUL && n->type.dim[0] == 1 && n->type.dim[1] == N) rows_of_c++;
      if (n->op == IR_OP_PAD) {
        pads++;
        assert_int_equal(n->attr.start, r);
        assert_int_equal(n->attr.end, L - 1 - r);
      }
    }
    if (rows_of_c != !shared || pads != !shared)
      fail_msg("%s: %d one-row C products, %d pads", label, rows_of_c, pads);
    if (!shared) assert_true(cg_flops(g) < cg_flops(f));
    ir_func_free(g);
    ir_func_free(f);
  }
}

static void bind_scalar(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = leaf(f, "x", F(4, 3)), p = leaf(f, "pos", I());
  OK(ir_add_output(f, "y", op2(f, IR_OP_SELECT_ROW, x, p, (ir_attrs){0}), &E));
  ir_func *g = ir_bind_scalar(f, "pos", 2, &E);
  assert_non_null(g);
  assert_int_equal(ir_find_leaf(g, "pos"), -1);
  assert_int_equal(g->nodes[p].op, IR_OP_FILL);
  assert_int_equal(ir_verify(g, &E), 0);
  assert_null(ir_bind_scalar(f, "x", 1, &E)); /* not a scalar */
  assert_null(ir_bind_scalar(f, "nope", 1, &E));
  ir_func *h = ir_pass_demand(g, &E);
  assert_non_null(h);
  for (int v = 0; v < h->n_nodes; v++) assert_int_not_equal(h->nodes[v].op, IR_OP_SELECT_ROW);
  ir_func_free(h);
  ir_func_free(g);
  ir_func_free(f);
}

/* ---- the model specs: read at the last position, before and after ---- */

typedef struct {
  const char *spec;
  const char *sets[8];
} model_case;

static const model_case models[] = {
    {"transformer.lua", {"K=16", "d=8", "L=8", "pe=rope", NULL}},
    {"transformer.lua", {"K=16", "d=8", "L=8", "pe=learned", "heads=2", NULL}},
    {"transformer.lua", {"K=16", "d=8", "L=8", "pe=nope", NULL}},
    {"mamba.lua", {"K=16", "d=8", "L=8", NULL}},
    {"hybrid.lua", {"K=16", "d=8", "L=8", NULL}},
};

static void model_functions_match(void **state) {
  (void)state;
  for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
    spec_ctx c;
    spec_init(&c, models[m].spec, models[m].sets);
    enum { L = 8 };
    ir_func *f = spec_build(&c, L, &E);
    if (!f) fail_msg("%s: %s", models[m].spec, E.msg);
    ir_func *b = ir_bind_scalar(f, "pos", L - 1, &E);
    ir_func *d = b ? ir_pass_demand(b, &E) : NULL;
    if (!d) fail_msg("%s: %s", models[m].spec, E.msg);
    /* the whole model: forward and gradient */
    ir_func *gf = ad_grad(f, "loss", &E), *gd = ad_grad(d, "loss", &E);
    assert_non_null(gf);
    assert_non_null(gd);
    double **dl = make_leaves(gf, 16);
    int pos = ir_find_leaf(gf, "pos");
    dl[pos][0] = L - 1;
    dl[ir_find_leaf(gf, "grad.loss")][0] = 1;
    for (int v = 0; v < gf->n_nodes; v++) /* weights at their usual scale */
      if (gf->nodes[v].op == IR_OP_PARAM || gf->nodes[v].op == IR_OP_CONST)
        for (int64_t i = 0; dl[v] && i < ir_numel(&gf->nodes[v].type); i++)
          dl[v][i] = urand(-0.5, 0.5);
    double **gl = same_leaves(gd, gf, dl);
    double **a = ir_interp(gf, IR_PREC_F64, (const double *const *)dl, &E);
    double **r = ir_interp(gd, IR_PREC_F64, (const double *const *)gl, &E);
    if (!a || !r) fail_msg("%s: interp: %s", models[m].spec, E.msg);
    for (int j = 0; j < gf->n_outs; j++) {
      int k = ir_find_output(gd, gf->outs[j].name);
      assert_true(k >= 0);
      int u = gf->outs[j].node, w = gd->outs[k].node;
      double e = max_rel(r[w], a[u], ir_numel(&gf->nodes[u].type));
      if (!(e <= 1e-10))
        fail_msg("%s %s: %s differs by %.3g", models[m].spec, models[m].sets[3] ? models[m].sets[3] : "",
                 gf->outs[j].name, e);
    }
    /* and it is less work: the FLOPs of the gradient function */
    double before = cg_flops(gf), after = cg_flops(gd);
    print_message("%s %s: training FLOPs %.0f -> %.0f (%.0f%%)\n", models[m].spec,
                  models[m].sets[3] ? models[m].sets[3] : "", before, after, 100 * after / before);
    assert_true(after < before);
    ir_values_free(gf, a);
    ir_values_free(gd, r);
    for (int v = 0; v < gf->n_nodes; v++) free(dl[v]);
    free(dl);
    free(gl);
    ir_func_free(gf);
    ir_func_free(gd);
    ir_func_free(d);
    ir_func_free(b);
    ir_func_free(f);
  }
}

/* Read at a run-time position (the forward kernels of evaluation): the
 * demand pass alone, every position of the sequence. */
static void model_functions_runtime_pos(void **state) {
  (void)state;
  for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
    spec_ctx c;
    spec_init(&c, models[m].spec, models[m].sets);
    enum { L = 8 };
    ir_func *f = spec_build(&c, L, &E);
    if (!f) fail_msg("%s: %s", models[m].spec, E.msg);
    ir_func *d = ir_pass_demand(f, &E);
    if (!d) fail_msg("%s: %s", models[m].spec, E.msg);
    double **dl = make_leaves(f, 16), **gl = same_leaves(d, f, dl);
    int pos = ir_find_leaf(f, "pos");
    for (int v = 0; v < f->n_nodes; v++)
      if (f->nodes[v].op == IR_OP_PARAM || f->nodes[v].op == IR_OP_CONST)
        for (int64_t i = 0; dl[v] && i < ir_numel(&f->nodes[v].type); i++)
          dl[v][i] = urand(-0.5, 0.5);
    for (int p = 0; p < L; p++) {
      dl[pos][0] = p;
      double **a = ir_interp(f, IR_PREC_F64, (const double *const *)dl, &E);
      double **r = ir_interp(d, IR_PREC_F64, (const double *const *)gl, &E);
      if (!a || !r) fail_msg("%s: interp: %s", models[m].spec, E.msg);
      for (int j = 0; j < f->n_outs; j++) {
        int u = f->outs[j].node, w = d->outs[j].node;
        double e = max_rel(r[w], a[u], ir_numel(&f->nodes[u].type));
        if (!(e <= 1e-12))
          fail_msg("%s %s pos %d: %s differs by %.3g", models[m].spec,
                   models[m].sets[3] ? models[m].sets[3] : "", p, f->outs[j].name, e);
      }
      ir_values_free(f, a);
      ir_values_free(d, r);
    }
    double before = cg_flops(f), after = cg_flops(d);
    print_message("%s %s: forward FLOPs %.0f -> %.0f (%.0f%%)\n", models[m].spec,
                  models[m].sets[3] ? models[m].sets[3] : "", before, after, 100 * after / before);
    assert_true(after <= before);
    for (int v = 0; v < f->n_nodes; v++) free(dl[v]);
    free(dl), free(gl);
    ir_func_free(d);
    ir_func_free(f);
  }
}

/* The transformer's last attention layer reads one query row. */
static void last_layer_one_row(void **state) {
  (void)state;
  spec_ctx c;
  const char *sets[] = {"K=16", "d=8", "L=8", NULL};
  spec_init(&c, "transformer.lua", sets);
  ir_func *f = spec_build(&c, 8, &E);
  assert_non_null(f);
  ir_func *k = rt_model_kernel_function(f, true, &E);
  if (!k) fail_msg("%s", E.msg);
  int rows[2] = {0, 0}, n = 0;
  for (int v = 0; v < k->n_nodes && n < 2; v++)
    if (k->nodes[v].op == IR_OP_SOFTMAX) rows[n++] = k->nodes[v].type.dim[1];
  assert_int_equal(n, 2);
  assert_int_equal(rows[0], 8); /* layer 0: every query */
  assert_int_equal(rows[1], 1); /* layer 1: the last one */
  assert_int_equal(ir_find_leaf(k, "pos"), -1);
  ir_func_free(k);
  ir_func_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_op_has_a_case),
      cmocka_unit_test(every_op_matches),
      cmocka_unit_test(causal_suffix_only),
      cmocka_unit_test(causal_row_at_runtime),
      cmocka_unit_test(scan_c_at_rows_read),
      cmocka_unit_test(bind_scalar),
      cmocka_unit_test(model_functions_match),
      cmocka_unit_test(model_functions_runtime_pos),
      cmocka_unit_test(last_layer_one_row),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
