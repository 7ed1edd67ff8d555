/* test_autodiff.c — ad_grad against central finite differences (float64
 * interpreter) for every op in the table, two composite models, and
 * ad_split (forward then backward gives the combined gradients).
 * Gradients must match to a norm-wise relative error of 1e-6 per param,
 * with steps of 1e-6 relative; AD_VERBOSE=1 prints every param's error. */
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

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t rng;

static double urand(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1p-53;
}

static double uni(double lo, double hi) { return lo + (hi - lo) * urand(); }
static int irand(int n) { return (int)(urand() * n); }

/* ---- a test graph: the function and the values of its leaves ---- */

enum { MAXLEAF = 64 };

typedef struct {
  ir_func *f;
  ir_error err;
  const char *loss; /* the loss output's name */
  bool zero_ok;     /* a param may have a zero gradient */
  int n_leaf;
  int id[MAXLEAF];
  double *val[MAXLEAF];
} tg;

static ir_type ty(ir_dtype dt, int rank, ...) {
  ir_type t = {.dtype = dt, .rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) t.dim[i] = va_arg(ap, int);
  va_end(ap);
  return t;
}
#define FT(...) ty(IR_F32, __VA_ARGS__)
#define IT(...) ty(IR_I32, __VA_ARGS__)

static void tg_init(tg *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->f = ir_func_new();
  t->loss = "loss";
  rng = seed * 7919 + 17;
}

static void tg_free(tg *t) {
  for (int k = 0; k < t->n_leaf; k++) free(t->val[k]);
  ir_func_free(t->f);
}

static int nd(tg *t, ir_op op, int n_in, const int *in, ir_attrs a,
              const ir_type *type) {
  int id = ir_add(t->f, op, in, n_in, &a, type, NULL, &t->err);
  if (id < 0) fail_msg("building %s: %s", ir_op_name(op), t->err.msg);
  return id;
}
#define N1(op, x, ...) nd(t, IR_OP_##op, 1, (int[]){x}, (ir_attrs){__VA_ARGS__}, NULL)
#define N2(op, a, b, ...) \
  nd(t, IR_OP_##op, 2, (int[]){a, b}, (ir_attrs){__VA_ARGS__}, NULL)
#define RESHAPE(x, type) reshape_to(t, x, type)

static int reshape_to(tg *t, int x, ir_type type) {
  return nd(t, IR_OP_RESHAPE, 1, &x, (ir_attrs){0}, &type);
}

static int leaf(tg *t, ir_op op, const char *name, ir_type type) {
  int id = ir_leaf(t->f, op, name, type, &t->err);
  if (id < 0) fail_msg("leaf %s: %s", name, t->err.msg);
  assert_true(t->n_leaf < MAXLEAF);
  t->id[t->n_leaf] = id;
  t->val[t->n_leaf] = calloc((size_t)ir_numel(&type), sizeof(double));
  return t->n_leaf++;
}

/* A param with values uniform in [lo, hi). */
static int P(tg *t, const char *name, ir_type type, double lo, double hi) {
  int k = leaf(t, IR_OP_PARAM, name, type);
  for (int64_t i = 0; i < ir_numel(&type); i++) t->val[k][i] = uni(lo, hi);
  return t->id[k];
}

/* An f32 input with values uniform in [lo, hi). */
static int X(tg *t, const char *name, ir_type type, double lo, double hi) {
  int k = leaf(t, IR_OP_INPUT, name, type);
  for (int64_t i = 0; i < ir_numel(&type); i++) t->val[k][i] = uni(lo, hi);
  return t->id[k];
}

/* An i32 input with values uniform in 0..n-1. */
static int I(tg *t, const char *name, ir_type type, int n) {
  int k = leaf(t, IR_OP_INPUT, name, type);
  for (int64_t i = 0; i < ir_numel(&type); i++) t->val[k][i] = irand(n);
  return t->id[k];
}

/* output t->loss = y reshaped to a scalar (y must have one element) */
static void set_loss(tg *t, int y) {
  if (t->f->nodes[y].type.rank) y = RESHAPE(y, FT(0));
  assert_true(ir_add_output(t->f, t->loss, y, &t->err) >= 0);
}

/* loss = sum(random weights * y) over every axis */
static void finish(tg *t, int y) {
  ir_type type = t->f->nodes[y].type;
  int s = N2(MUL, X(t, "wts", type, -1, 1), y);
  for (int ax = 0; ax < type.rank; ax++) s = N1(SUM, s, .axis = ax);
  set_loss(t, s);
}

/* ---- evaluation ---- */

static const double *leaf_value(const tg *t, const char *name) {
  for (int k = 0; k < t->n_leaf; k++)
    if (strcmp(t->f->nodes[t->id[k]].name, name) == 0) return t->val[k];
  return NULL;
}

static bool is_upstream(const tg *t, const char *name) {
  return strncmp(name, "grad.", 5) == 0 && strcmp(name + 5, t->loss) == 0;
}

/* leaves array for a function whose leaves are the test's (by name), with
 * "grad.<loss>" bound to up. */
static const double **bind(const tg *t, const ir_func *f, const double *up) {
  const double **lv = calloc((size_t)f->n_nodes + 1, sizeof *lv);
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *n = &f->nodes[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    lv[i] = is_upstream(t, n->name) ? up : leaf_value(t, n->name);
  }
  return lv;
}

static double **run(const ir_func *f, const double **lv) {
  ir_error err;
  double **v = ir_interp(f, IR_PREC_F64, lv, &err);
  if (!v) fail_msg("interp: %s", err.msg);
  return v;
}

static double eval_loss(const tg *t) {
  const double **lv = bind(t, t->f, NULL);
  double **v = run(t->f, lv);
  double l = v[t->f->outs[ir_find_output(t->f, t->loss)].node][0];
  ir_values_free(t->f, v);
  free(lv);
  return l;
}

static const double *out_value(const ir_func *f, double **v, const char *name) {
  int o = ir_find_output(f, name);
  if (o < 0) fail_msg("no output \"%s\"", name);
  return v[f->outs[o].node];
}

/* Runs fwd then bwd of ad_split(g) and checks they give g's gradients. */
static void check_split(const tg *t, const ir_func *g, double **gv,
                        const double *up) {
  ir_func *F, *B;
  ir_error err;
  if (ad_split(g, t->f->n_nodes, &F, &B, &err)) fail_msg("ad_split: %s", err.msg);
  /* forward: the original nodes and outputs first */
  assert_int_equal(F->n_nodes, t->f->n_nodes);
  for (int i = 0; i < t->f->n_outs; i++) {
    assert_string_equal(F->outs[i].name, t->f->outs[i].name);
    assert_int_equal(F->outs[i].node, t->f->outs[i].node);
  }
  const double **flv = bind(t, F, NULL);
  double **fv = run(F, flv);
  /* backward: bind saved.<id> to the forward's outputs, the rest by name */
  const double **blv = calloc((size_t)B->n_nodes + 1, sizeof *blv);
  int n_saved = 0;
  for (int i = 0; i < B->n_nodes; i++) {
    const ir_node *n = &B->nodes[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    int id;
    if (sscanf(n->name, "saved.%d", &id) == 1) {
      int o = ir_find_output(F, n->name);
      assert_true(o >= 0);
      assert_int_equal(F->outs[o].node, id);
      assert_true(ir_type_eq(&F->nodes[id].type, &n->type));
      assert_false(ir_op_is_leaf(F->nodes[id].op));
      blv[i] = fv[id];
      n_saved++;
    } else {
      blv[i] = is_upstream(t, n->name) ? up : leaf_value(t, n->name);
      assert_non_null(blv[i]);
    }
  }
  assert_int_equal(F->n_outs, t->f->n_outs + n_saved);
  double **bv = run(B, blv);
  assert_int_equal(B->n_outs, g->n_outs - t->f->n_outs);
  for (int o = 0; o < B->n_outs; o++) {
    const ir_output *bo = &B->outs[o];
    assert_memory_equal(bv[bo->node], out_value(g, gv, bo->name),
                        sizeof(double) * (size_t)ir_numel(&B->nodes[bo->node].type));
  }
  ir_values_free(F, fv);
  ir_values_free(B, bv);
  free(flv), free(blv);
  ir_func_free(F), ir_func_free(B);
}

/* ad_grad's gradients against central differences, param by param
 * (norm-wise relative error), then ad_split. Returns the worst error. */
static double check_grads(tg *t, double tol) {
  ir_error err;
  if (ir_verify(t->f, &err)) fail_msg("forward: %s", err.msg);
  ir_func *g = ad_grad(t->f, t->loss, &err);
  if (!g) fail_msg("ad_grad: %s", err.msg);
  if (ir_verify(g, &err)) fail_msg("gradient function: %s", err.msg);
  double up = uni(0.5, 2); /* the upstream gradient of the scalar loss */
  const double **lv = bind(t, g, &up);
  double **gv = run(g, lv);
  assert_true(out_value(g, gv, t->loss)[0] == eval_loss(t));
  double worst = 0;
  for (int k = 0; k < t->n_leaf; k++) {
    const ir_node *p = &t->f->nodes[t->id[k]];
    if (p->op != IR_OP_PARAM) continue;
    char name[128];
    snprintf(name, sizeof name, "grad.%s", p->name);
    const double *ad = out_value(g, gv, name);
    double num = 0, den = 0;
    for (int64_t i = 0; i < ir_numel(&p->type); i++) {
      double x = t->val[k][i], h = 1e-6 * fmax(1, fabs(x));
      t->val[k][i] = x + h;
      double lp = eval_loss(t);
      t->val[k][i] = x - h;
      double lm = eval_loss(t);
      t->val[k][i] = x;
      double fd = up * (lp - lm) / (2 * h);
      num += (ad[i] - fd) * (ad[i] - fd);
      den += fd * fd;
    }
    double rel = sqrt(num) / fmax(sqrt(den), 1e-12);
    if (getenv("AD_VERBOSE"))
      print_message("  grad.%s rel %.3g norm %.3g\n", p->name, rel, sqrt(den));
    if (!t->zero_ok && sqrt(den) < 1e-3)
      fail_msg("grad.%s: |fd| = %.3g: the case does not exercise it", p->name,
               sqrt(den));
    if (rel > tol)
      fail_msg("grad.%s: relative error %.3g > %.3g (|fd| = %.3g)", p->name,
               rel, tol, sqrt(den));
    worst = fmax(worst, rel);
  }
  check_split(t, g, gv, &up);
  ir_values_free(g, gv);
  free(lv);
  ir_func_free(g);
  return worst;
}

/* ---- per-op cases: build y from random params, return it ---- */

typedef struct {
  ir_op op;
  const char *what;
  int (*build)(tg *t, int arg);
  int arg;
  const char *error; /* expected ad_grad error (substring), or NULL */
} tcase;

static int b_unary(tg *t, int op) {
  bool pos = op == IR_OP_LOG || op == IR_OP_SQRT || op == IR_OP_RSQRT ||
             op == IR_OP_RECIP;
  int x = P(t, "x", FT(2, 3, 4), pos ? 0.3 : -2, 2);
  return nd(t, (ir_op)op, 1, &x, (ir_attrs){0}, NULL);
}

static int b_unary_rank(tg *t, int arg) {
  int x = arg ? P(t, "x", FT(4, 2, 1, 3, 2), -1, 1) : P(t, "x", FT(0), -1, 1);
  return N1(TANH, N1(EXP, x));
}

/* arg = op * 8 + variant */
static int b_binary(tg *t, int arg) {
  ir_op op = (ir_op)(arg / 8);
  double lo = op == IR_OP_DIV ? 0.5 : -1, hi = op == IR_OP_DIV ? 2 : 1;
  ir_type ta, tb;
  switch (arg % 8) {
  case 0: ta = FT(2, 3, 4), tb = FT(2, 3, 4); break;
  case 1: ta = FT(3, 3, 1, 4), tb = FT(2, 2, 1); break; /* both sides stretch */
  case 2: ta = FT(1, 4), tb = FT(3, 2, 3, 4); break;    /* missing leading axes */
  case 3: ta = FT(3, 2, 1, 3), tb = FT(0); break;       /* scalar operand */
  default: { /* the same param reaches both sides */
    int a = P(t, "a", FT(2, 3, 4), -1, 1);
    return N2(MUL, nd(t, op, 2, (int[]){a, N1(EXP, a)}, (ir_attrs){0}, NULL), a);
  }
  }
  int a = P(t, "a", ta, -1, 1), b = P(t, "b", tb, lo, hi);
  return nd(t, op, 2, (int[]){a, b}, (ir_attrs){0}, NULL);
}

static int b_gt(tg *t, int arg) {
  (void)arg;
  int a = P(t, "a", FT(2, 3, 4), -1, 1), b = P(t, "b", FT(1, 4), -1, 1);
  return N2(ADD, N2(MUL, N2(GT, a, b), a), b); /* gt itself has none */
}

/* arg bits: ta, tb, batch */
static int b_matmul(tg *t, int arg) {
  bool ta = arg & 1, tb = arg & 2, batch = arg & 4;
  int m = 3, k = 4, n = 2;
  ir_type sa = FT(2, ta ? k : m, ta ? m : k), sb = FT(2, tb ? n : k, tb ? k : n);
  if (batch) {
    sa = FT(3, 2, sa.dim[0], sa.dim[1]);
    sb = FT(3, 2, sb.dim[0], sb.dim[1]);
  }
  int a = P(t, "a", sa, -1, 1), b = P(t, "b", sb, -1, 1);
  return N2(MATMUL, a, b, .ta = ta, .tb = tb);
}

static int b_permute(tg *t, int arg) {
  if (arg == 0) return N1(PERMUTE, P(t, "x", FT(3, 2, 3, 4), -1, 1), .perm = {2, 0, 1});
  return N1(PERMUTE, P(t, "x", FT(4, 2, 3, 1, 2), -1, 1), .perm = {1, 3, 0, 2});
}

static int b_reshape(tg *t, int arg) {
  (void)arg;
  return N1(EXP, RESHAPE(P(t, "x", FT(2, 2, 6), -1, 1), FT(3, 3, 2, 2)));
}

static int b_expand(tg *t, int arg) {
  ir_type from[3] = {FT(2, 3, 1), FT(0), FT(1, 4)};
  ir_type to[3] = {FT(3, 2, 3, 4), FT(2, 2, 3), FT(2, 3, 4)};
  int x = P(t, "x", from[arg], -1, 1);
  return nd(t, IR_OP_EXPAND, 1, &x, (ir_attrs){0}, &to[arg]);
}

static int b_slice(tg *t, int arg) {
  int x = P(t, "x", FT(2, 4, 5), -1, 1);
  return arg ? N1(SLICE, x, .axis = 0, .start = 2, .end = 4)
             : N1(SLICE, x, .axis = 1, .start = 1, .end = 4);
}

static int b_pad(tg *t, int arg) {
  int x = P(t, "x", FT(2, 3, 4), -1, 1);
  return arg ? N1(PAD, x, .axis = 1, .start = 0, .end = 3)
             : N1(PAD, x, .axis = 0, .start = 1, .end = 2);
}

static int b_concat(tg *t, int arg) {
  int a = P(t, "a", FT(2, 2, 3), -1, 1), b = P(t, "b", FT(2, 2, 1), -1, 1);
  int c = P(t, "c", FT(2, 2, 2), -1, 1);
  ir_attrs ax1 = {.axis = 1};
  switch (arg) {
  case 0: return nd(t, IR_OP_CONCAT, 3, (int[]){a, b, c}, ax1, NULL);
  case 1: return nd(t, IR_OP_CONCAT, 4, (int[]){c, a, b, c}, ax1, NULL);
  default: { /* axis 0, and a single input */
    int at = N1(PERMUTE, a, .perm = {1, 0});
    int one = nd(t, IR_OP_CONCAT, 1, (int[]){b}, ax1, NULL);
    int x = nd(t, IR_OP_CONCAT, 2, (int[]){at, N1(PERMUTE, c, .perm = {1, 0})},
               (ir_attrs){.axis = 0}, NULL);
    return N2(MUL, x, N1(SUM, one, .axis = 0));
  }
  }
  return -1;
}

/* arg = op * 8 + axis */
static int b_reduce(tg *t, int arg) {
  int x = P(t, "x", FT(3, 3, 4, 5), -1, 1);
  return nd(t, (ir_op)(arg / 8), 1, &x, (ir_attrs){.axis = arg % 8}, NULL);
}

static int b_softmax(tg *t, int arg) {
  ir_type s[4] = {FT(2, 3, 5), FT(3, 2, 3, 5), FT(2, 4, 4), FT(2, 1, 5)};
  int x = P(t, "x", s[arg], -2, 2);
  return N1(SOFTMAX, x, .causal = arg > 0);
}

static int b_gather(tg *t, int arg) {
  if (arg) return N2(GATHER, P(t, "tab", FT(1, 6), -1, 1), I(t, "idx", IT(1, 9), 6));
  return N2(GATHER, P(t, "tab", FT(2, 5, 3), -1, 1), I(t, "idx", IT(2, 2, 4), 5));
}

static int b_scatter_add(tg *t, int arg) {
  if (arg)
    return N2(SCATTER_ADD, P(t, "src", FT(3, 2, 3, 2), -1, 1),
              I(t, "idx", IT(2, 2, 3), 4), .n = 4);
  return N2(SCATTER_ADD, P(t, "src", FT(2, 4, 3), -1, 1), I(t, "idx", IT(1, 4), 5),
            .n = 5);
}

static int b_select_row(tg *t, int arg) {
  if (arg) return N2(SELECT_ROW, P(t, "x", FT(1, 4), -1, 1), I(t, "p", IT(0), 4));
  return N2(SELECT_ROW, P(t, "x", FT(3, 5, 3, 2), -1, 1), I(t, "p", IT(0), 5));
}

static int b_onehot(tg *t, int arg) {
  (void)arg;
  int oh = N1(ONEHOT, I(t, "idx", IT(1, 3), 4), .n = 4);
  return N2(MUL, oh, P(t, "a", FT(2, 3, 4), -1, 1));
}

static int b_cross_entropy(tg *t, int arg) {
  switch (arg) {
  case 0: return N2(CROSS_ENTROPY, P(t, "z", FT(2, 3, 5), -2, 2), I(t, "y", IT(1, 3), 5));
  case 1:
    return N2(CROSS_ENTROPY, P(t, "z", FT(3, 2, 3, 4), -2, 2), I(t, "y", IT(2, 2, 3), 4));
  default: return N2(CROSS_ENTROPY, P(t, "z", FT(1, 6), -2, 2), I(t, "y", IT(0), 6));
  }
}

/* arg: 0 L > W, 1 L < W, 2 W = 1 */
static void conv_sizes(int arg, int *L, int *E, int *W) {
  *L = arg == 1 ? 2 : 6, *E = 3, *W = arg == 2 ? 1 : 4;
}

static int b_conv1d(tg *t, int arg) {
  int L, E, W;
  conv_sizes(arg, &L, &E, &W);
  return N2(CONV1D, P(t, "x", FT(2, L, E), -1, 1), P(t, "w", FT(2, E, W), -1, 1));
}

static int b_conv1d_bwd_x(tg *t, int arg) {
  int L, E, W;
  conv_sizes(arg, &L, &E, &W);
  return N2(CONV1D_BWD_X, P(t, "g", FT(2, L, E), -1, 1), P(t, "w", FT(2, E, W), -1, 1));
}

static int b_conv1d_bwd_w(tg *t, int arg) {
  int L, E, W;
  conv_sizes(arg, &L, &E, &W);
  return N2(CONV1D_BWD_W, P(t, "g", FT(2, L, E), -1, 1), P(t, "x", FT(2, L, E), -1, 1),
            .n = W);
}

/* rope; arg 0: x only (tables const), 1: the tables as params too
 * (learned frequencies), 2: heads of 2, the pairs one by one in the JIT */
static int b_rope(tg *t, int arg) {
  int L = 3, H = arg == 2 ? 3 : 2, D = arg == 2 ? 2 : 8;
  int x = P(t, "x", FT(3, L, H, D), -1, 1);
  int cs, sn;
  if (arg == 1) {
    cs = P(t, "cos", FT(2, L, D / 2), -1, 1), sn = P(t, "sin", FT(2, L, D / 2), -1, 1);
  } else { /* inputs: no gradient wanted */
    cs = X(t, "cos", FT(2, L, D / 2), -1, 1), sn = X(t, "sin", FT(2, L, D / 2), -1, 1);
  }
  return nd(t, IR_OP_ROPE, 3, (int[]){x, cs, sn}, (ir_attrs){0}, NULL);
}

/* random sizes from the case's seed */
static int b_scan(tg *t, int arg) {
  (void)arg;
  int L = 2 + irand(6), E = 1 + irand(4), N = 1 + irand(3); /* L = 1: no dA */
  int u = P(t, "u", FT(2, L, E), -1, 1), dl = P(t, "delta", FT(2, L, E), 0.05, 1);
  int A = P(t, "A", FT(2, E, N), -1.5, -0.1), bc = P(t, "bc", FT(2, L, 2 * N), -1, 1);
  return nd(t, IR_OP_SCAN, 4, (int[]){u, dl, A, bc}, (ir_attrs){0}, NULL);
}

static int b_scan_bwd(tg *t, int arg) {
  (void)arg;
  int L = 3, E = 2, N = 2;
  int ud = P(t, "ud", FT(2, L, 2 * E), -1, 1), A = P(t, "A", FT(2, E, N), -1, -0.1);
  int bc = P(t, "bc", FT(2, L, 2 * N), -1, 1), dy = P(t, "dy", FT(2, L, E), -1, 1);
  return nd(t, IR_OP_SCAN_BWD, 4, (int[]){ud, A, bc, dy}, (ir_attrs){0}, NULL);
}

/* leaves: const and fill in a graph; the loss may be a param itself */
static int b_leaves(tg *t, int arg) {
  int a = P(t, "a", FT(2, 3, 4), -1, 1);
  if (arg) return a;
  int c = ir_leaf(t->f, IR_OP_CONST, "c", FT(2, 3, 4), &t->err);
  float data[12];
  for (int i = 0; i < 12; i++) data[i] = (float)uni(-1, 1);
  assert_int_equal(ir_set_const_data(t->f, c, data, &t->err), 0);
  int fl = ir_fill(t->f, 0.5, FT(1, 4), &t->err);
  return N2(ADD, N2(MUL, a, c), fl);
}

#define U(e) {IR_OP_##e, #e, b_unary, IR_OP_##e, NULL}
#define B(e, v) {IR_OP_##e, #e, b_binary, IR_OP_##e * 8 + (v), NULL}
#define B5(e) B(e, 0), B(e, 1), B(e, 2), B(e, 3), B(e, 4)
#define R(e, ax) {IR_OP_##e, #e, b_reduce, IR_OP_##e * 8 + (ax), NULL}
#define R3(e) R(e, 0), R(e, 1), R(e, 2)
#define C(e, fn, arg) {IR_OP_##e, #fn, fn, arg, NULL}
static const tcase cases[] = {
    C(PARAM, b_leaves, 1), C(CONST, b_leaves, 0), C(FILL, b_leaves, 0),
    U(NEG), U(EXP), U(LOG), U(SQRT), U(RSQRT), U(RECIP), U(SIGMOID), U(SILU),
    U(SOFTPLUS), U(TANH), U(RELU),
    C(EXP, b_unary_rank, 0), C(TANH, b_unary_rank, 1),
    B5(ADD), B5(SUB), B5(MUL), B5(DIV), B5(MAX),
    C(GT, b_gt, 0),
    C(MATMUL, b_matmul, 0), C(MATMUL, b_matmul, 1), C(MATMUL, b_matmul, 2),
    C(MATMUL, b_matmul, 3), C(MATMUL, b_matmul, 4), C(MATMUL, b_matmul, 5),
    C(MATMUL, b_matmul, 6), C(MATMUL, b_matmul, 7),
    C(PERMUTE, b_permute, 0), C(PERMUTE, b_permute, 1),
    C(RESHAPE, b_reshape, 0),
    C(EXPAND, b_expand, 0), C(EXPAND, b_expand, 1), C(EXPAND, b_expand, 2),
    C(SLICE, b_slice, 0), C(SLICE, b_slice, 1),
    C(PAD, b_pad, 0), C(PAD, b_pad, 1),
    C(CONCAT, b_concat, 0), C(CONCAT, b_concat, 1), C(CONCAT, b_concat, 2),
    R3(SUM), R3(AMAX), R3(MEAN),
    C(SOFTMAX, b_softmax, 0), C(SOFTMAX, b_softmax, 1), C(SOFTMAX, b_softmax, 2),
    C(SOFTMAX, b_softmax, 3),
    C(GATHER, b_gather, 0), C(GATHER, b_gather, 1),
    C(SCATTER_ADD, b_scatter_add, 0), C(SCATTER_ADD, b_scatter_add, 1),
    C(SELECT_ROW, b_select_row, 0), C(SELECT_ROW, b_select_row, 1),
    C(ONEHOT, b_onehot, 0),
    C(CROSS_ENTROPY, b_cross_entropy, 0), C(CROSS_ENTROPY, b_cross_entropy, 1),
    C(CROSS_ENTROPY, b_cross_entropy, 2),
    C(CONV1D, b_conv1d, 0), C(CONV1D, b_conv1d, 1), C(CONV1D, b_conv1d, 2),
    C(CONV1D_BWD_X, b_conv1d_bwd_x, 0), C(CONV1D_BWD_X, b_conv1d_bwd_x, 1),
    C(CONV1D_BWD_X, b_conv1d_bwd_x, 2),
    C(CONV1D_BWD_W, b_conv1d_bwd_w, 0), C(CONV1D_BWD_W, b_conv1d_bwd_w, 1),
    C(CONV1D_BWD_W, b_conv1d_bwd_w, 2),
    C(ROPE, b_rope, 0), C(ROPE, b_rope, 1), C(ROPE, b_rope, 2),
    C(SCAN, b_scan, 1), C(SCAN, b_scan, 2), C(SCAN, b_scan, 3), C(SCAN, b_scan, 4),
    C(SCAN, b_scan, 5), C(SCAN, b_scan, 6),
    {IR_OP_SCAN_BWD, "scan_bwd", b_scan_bwd, 0,
     "scan_bwd: second derivative not supported"},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Ops exempt from needing a case: leaves, and ops with no differentiable
 * input (onehot reads only an i32 index). */
static const ir_op no_grad[] = {IR_OP_INPUT, IR_OP_PARAM, IR_OP_CONST,
                                IR_OP_FILL, IR_OP_ONEHOT};

static bool exempt(ir_op op) {
  for (size_t i = 0; i < sizeof no_grad / sizeof no_grad[0]; i++)
    if (no_grad[i] == op) return true;
  return false;
}

static void test_every_op_has_a_case(void **s) {
  (void)s;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    int n = 0;
    for (int k = 0; k < N_CASES; k++) n += cases[k].op == (ir_op)op;
    if (!n && !exempt((ir_op)op))
      fail_msg("op %s has no autodiff test case", ir_op_name((ir_op)op));
  }
  /* the exemptions hold: a leaf has no inputs; a non-leaf rejects f32 */
  for (size_t i = 0; i < sizeof no_grad / sizeof no_grad[0]; i++) {
    ir_op op = no_grad[i];
    if (ir_op_is_leaf(op)) {
      assert_int_equal(ir_op_get(op)->arity, 0);
      continue;
    }
    ir_func *f = ir_func_new();
    ir_error err;
    int x = ir_leaf(f, IR_OP_PARAM, "x", FT(1, 3), &err);
    ir_attrs a = {.n = 2, .axis = 0};
    int in[IR_MAX_INPUTS] = {x, x, x, x};
    int n_in = ir_op_get(op)->arity < 0 ? 1 : ir_op_get(op)->arity;
    assert_int_equal(ir_add(f, op, in, n_in, &a, NULL, NULL, &err), -1);
    ir_func_free(f);
  }
}

static void test_op_gradients(void **s) {
  (void)s;
  double worst = 0;
  for (int k = 0; k < N_CASES; k++) {
    const tcase *c = &cases[k];
    tg t;
    tg_init(&t, (uint64_t)k + 1);
    finish(&t, c->build(&t, c->arg));
    if (c->error) {
      ir_error err;
      ir_func *g = ad_grad(t.f, "loss", &err);
      assert_null(g);
      if (!strstr(err.msg, c->error))
        fail_msg("case %d (%s): message \"%s\" lacks \"%s\"", k, c->what,
                 err.msg, c->error);
    } else {
      print_message("case %2d %-14s %-16s arg %3d\n", k, ir_op_name(c->op),
                    c->what, c->arg);
      worst = fmax(worst, check_grads(&t, 1e-6));
    }
    tg_free(&t);
  }
  print_message("worst relative error over %d cases: %.3g\n", N_CASES, worst);
}

/* ---- composites ---- */

/* LayerNorm over the last axis of h[L,d] with weight and bias [d]. */
static int layernorm(tg *t, int h, int w, int b) {
  int ax = t->f->nodes[h].type.rank - 1;
  int xc = N2(SUB, h, N1(MEAN, h, .axis = ax));
  int var = N1(MEAN, N2(MUL, xc, xc), .axis = ax);
  int eps = ir_fill(t->f, 1e-5, FT(0), &t->err);
  return N2(ADD, N2(MUL, N2(MUL, xc, N1(RSQRT, N2(ADD, var, eps))), w), b);
}

static int rmsnorm(tg *t, int h, int w) {
  int ax = t->f->nodes[h].type.rank - 1;
  int ms = N1(MEAN, N2(MUL, h, h), .axis = ax);
  int eps = ir_fill(t->f, 1e-5, FT(0), &t->err);
  return N2(MUL, N2(MUL, h, N1(RSQRT, N2(ADD, ms, eps))), w);
}

/* One attention layer (pre-LayerNorm, learned PE, causal softmax) and a
 * readout with cross-entropy at one position. */
static void build_attention(tg *t) {
  enum { K = 5, d = 4, L = 6 };
  tg_init(t, 101);
  int tok = I(t, "tokens", IT(1, L), K), pos = I(t, "pos", IT(0), L);
  t->val[t->n_leaf - 1][0] = L - 2; /* a row that attends to several keys */
  int lab = I(t, "label", IT(1, 1), K);
  int emb = P(t, "embedding.weight", FT(2, K, d), -1, 1);
  int pe = P(t, "pos_emb.weight", FT(2, L, d), -0.1, 0.1);
  int h = N2(ADD, N2(GATHER, emb, tok), pe);
  int hn = layernorm(t, h, P(t, "norm.weight", FT(1, d), 0.5, 1.5),
                     P(t, "norm.bias", FT(1, d), -0.1, 0.1));
  double r = 1 / sqrt(d);
  int q = N2(MATMUL, hn, P(t, "wq", FT(2, d, d), -r, r), .tb = true);
  int k = N2(MATMUL, hn, P(t, "wk", FT(2, d, d), -r, r), .tb = true);
  int v = N2(MATMUL, hn, P(t, "wv", FT(2, d, d), -r, r), .tb = true);
  int sc = N2(MUL, N2(MATMUL, q, k, .tb = true), ir_fill(t->f, r, FT(0), &t->err));
  int att = N2(MATMUL, N1(SOFTMAX, sc, .causal = true), v);
  h = N2(ADD, h, N2(MATMUL, att, P(t, "wo", FT(2, d, d), -r, r), .tb = true));
  int last = RESHAPE(N2(SELECT_ROW, h, pos), FT(2, 1, d));
  int logits = N2(ADD, N2(MATMUL, last, P(t, "lm_head.weight", FT(2, K, d), -r, r),
                          .tb = true),
                  P(t, "lm_head.bias", FT(1, K), -0.1, 0.1));
  set_loss(t, N2(CROSS_ENTROPY, logits, lab));
}

static void test_attention(void **s) {
  (void)s;
  tg t;
  build_attention(&t);
  double e = check_grads(&t, 1e-6);
  print_message("attention: worst relative error %.3g\n", e);
  tg_free(&t);
}

/* Weights are O(1) (not the reference init) so that every parameter's
 * gradient stands well above the finite differences' rounding noise. */
static void build_mamba(tg *t) {
  enum { L = 5, d = 4, E = 6, N = 3, R = 2, W = 4 };
  tg_init(t, 202);
  int h = P(t, "h", FT(2, L, d), -1, 1);
  int x = rmsnorm(t, h, P(t, "norm.weight", FT(1, d), 0.5, 1.5));
  int xz = N2(MATMUL, x, P(t, "in_proj.weight", FT(2, 2 * E, d), -1, 1), .tb = true);
  int xs = N1(SLICE, xz, .axis = 1, .start = 0, .end = E);
  int z = N1(SLICE, xz, .axis = 1, .start = E, .end = 2 * E);
  int cv = N2(CONV1D, xs, P(t, "conv1d.weight", FT(2, E, W), -1, 1));
  int u = N1(SILU, N2(ADD, cv, P(t, "conv1d.bias", FT(1, E), -0.5, 0.5)));
  int dbc = N2(MATMUL, u, P(t, "x_proj.weight", FT(2, R + 2 * N, E), -1, 1),
               .tb = true);
  int dt = N1(SLICE, dbc, .axis = 1, .start = 0, .end = R);
  int bc = N1(SLICE, dbc, .axis = 1, .start = R, .end = R + 2 * N);
  int delta = N1(SOFTPLUS, N2(ADD, N2(MATMUL, dt, P(t, "dt_proj.weight", FT(2, E, R),
                                                     -1, 1), .tb = true),
                              P(t, "dt_proj.bias", FT(1, E), -1, 0.5)));
  int A = N1(NEG, N1(EXP, P(t, "A_log", FT(2, E, N), 0, 1.1)));
  int y = nd(t, IR_OP_SCAN, 4, (int[]){u, delta, A, bc}, (ir_attrs){0}, NULL);
  y = N2(ADD, y, N2(MUL, u, P(t, "D", FT(1, E), 0.5, 1.5)));
  y = N2(MUL, y, N1(SILU, z));
  double r = 1 / sqrt(E);
  int out = N2(MATMUL, y, P(t, "out_proj.weight", FT(2, d, E), -r, r), .tb = true);
  finish(t, N2(ADD, h, out));
}

static void test_mamba(void **s) {
  (void)s;
  tg t;
  build_mamba(&t);
  double e = check_grads(&t, 1e-6);
  print_message("mamba: worst relative error %.3g\n", e);
  tg_free(&t);
}

/* The backward is ordinary IR: it prints, parses back to the same text,
 * and optimises to a function with the same gradients. */
static void test_backward_is_ir(void **s) {
  (void)s;
  for (int m = 0; m < 2; m++) {
    tg t;
    (m ? build_mamba : build_attention)(&t);
    ir_error err;
    ir_func *g = ad_grad(t.f, "loss", &err);
    assert_non_null(g);
    char *text = ir_print_str(g);
    ir_func *p = ir_parse(text, "grad.ir", &err);
    if (!p) fail_msg("parse: %s", err.msg);
    char *again = ir_print_str(p);
    assert_string_equal(text, again);
    ir_func *o = ir_optimize(g, NULL, &err);
    if (!o) fail_msg("optimize: %s", err.msg);
    double up = 1.3;
    const double **lg = bind(&t, g, &up), **lo = bind(&t, o, &up);
    double **vg = run(g, lg), **vo = run(o, lo);
    for (int k = 0; k < g->n_outs; k++) {
      const double *a = out_value(g, vg, g->outs[k].name);
      const double *b = out_value(o, vo, g->outs[k].name);
      int64_t n = ir_numel(&g->nodes[g->outs[k].node].type);
      for (int64_t i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > 1e-12 * (1 + fabs(a[i])))
          fail_msg("optimised %s[%lld]: %.17g vs %.17g", g->outs[k].name,
                   (long long)i, b[i], a[i]);
    }
    print_message("%s: %d forward nodes, %d with backward, %d optimised\n",
                  m ? "mamba" : "attention", t.f->n_nodes, g->n_nodes, o->n_nodes);
    ir_values_free(g, vg), ir_values_free(o, vo);
    free(lg), free(lo), free(text), free(again);
    ir_func_free(p), ir_func_free(o), ir_func_free(g);
    tg_free(&t);
  }
}

/* ---- structure, errors, naming ---- */

static bool reads(const ir_func *g, int from, int node) {
  for (int i = from; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] == node) return true;
  return false;
}

static void test_structure(void **s) {
  (void)s;
  tg t_, *t = &t_;
  tg_init(t, 303);
  int a = P(t, "a", FT(1, 3), -1, 1), b = P(t, "b", FT(2, 2, 2), -1, 1);
  int c = P(t, "c", FT(1, 3), -1, 1);
  int eb = N1(EXP, b); /* reaches an output but not the loss */
  assert_true(ir_add_output(t->f, "other", eb, &t->err) >= 0);
  int m = N2(GT, c, a); /* the loss depends on c only through gt */
  int l = N1(SUM, N2(MUL, N1(TANH, a), m), .axis = 0);
  set_loss(t, l);
  int nf = t->f->n_nodes;
  t->zero_ok = true;
  ir_error err;
  ir_func *g = ad_grad(t->f, "loss", &err);
  assert_non_null(g);
  /* outputs: f's own, then grad.<param> in param order */
  assert_int_equal(g->n_outs, 2 + 3);
  assert_string_equal(g->outs[0].name, "other");
  assert_string_equal(g->outs[1].name, "loss");
  assert_string_equal(g->outs[2].name, "grad.a");
  assert_string_equal(g->outs[3].name, "grad.b");
  assert_string_equal(g->outs[4].name, "grad.c");
  /* the upstream gradient: input "grad.loss" of the loss type, node nf */
  assert_int_equal(ir_find_leaf(g, "grad.loss"), nf);
  assert_int_equal(g->nodes[nf].op, IR_OP_INPUT);
  assert_int_equal(g->nodes[nf].type.rank, 0);
  /* b and c: zero fills of their types; nothing emitted for their paths */
  for (int k = 3; k <= 4; k++) {
    const ir_node *z = &g->nodes[g->outs[k].node];
    assert_int_equal(z->op, IR_OP_FILL);
    assert_true(z->attr.value == 0);
    assert_true(ir_type_eq(&z->type, &t->f->nodes[k == 3 ? b : c].type));
  }
  assert_false(reads(g, nf, b));
  assert_false(reads(g, nf, eb));
  assert_false(reads(g, nf, c));
  /* the forward part is untouched */
  for (int i = 0; i < nf; i++) assert_int_equal(g->nodes[i].op, t->f->nodes[i].op);
  check_grads(t, 1e-6);
  ir_func_free(g);
  tg_free(t);
}

static void test_errors(void **s) {
  (void)s;
  tg t_, *t = &t_;
  tg_init(t, 404);
  int a = P(t, "a", FT(1, 3), -1, 1);
  int idx = I(t, "idx", IT(1, 3), 3);
  set_loss(t, N1(SUM, a, .axis = 0));
  assert_true(ir_add_output(t->f, "ids", idx, &t->err) >= 0);
  ir_error err;
  assert_null(ad_grad(t->f, "nope", &err));
  assert_non_null(strstr(err.msg, "no output named \"nope\""));
  assert_null(ad_grad(t->f, "ids", &err));
  assert_non_null(strstr(err.msg, "i32"));
  /* ad_split needs the upstream-gradient input at n_fwd */
  ir_func *g = ad_grad(t->f, "loss", &err), *F, *B;
  assert_non_null(g);
  assert_int_equal(ad_split(g, t->f->n_nodes - 1, &F, &B, &err), -1);
  assert_null(F);
  assert_non_null(strstr(err.msg, "ad_split"));
  assert_int_equal(ad_split(g, t->f->n_nodes, &F, &B, &err), 0);
  ir_func_free(F), ir_func_free(B);
  ir_func_free(g);
  tg_free(t);
}

/* A second derivative through a scan reaches scan_bwd and fails cleanly. */
static void test_second_order_scan(void **s) {
  (void)s;
  tg t_, *t = &t_;
  tg_init(t, 505);
  finish(t, b_scan(t, 0));
  ir_error err;
  ir_func *g = ad_grad(t->f, "loss", &err);
  assert_non_null(g);
  ir_func *g2 = ad_grad(g, "grad.u", &err);
  assert_null(g2);
  assert_non_null(strstr(err.msg, "scan_bwd: second derivative not supported"));
  ir_func_free(g);
  tg_free(t);
}

/* Second order through conv1d and its backward primitives: the gradient
 * function is itself differentiated (loss2 = sum(v * grad.x) +
 * sum(v2 * grad.w)) and checked against finite differences. */
static void test_second_order_conv(void **s) {
  (void)s;
  enum { L = 5, E = 2, W = 3 };
  tg t1;
  tg_init(&t1, 606);
  tg *t = &t1;
  int x = P(t, "x", FT(2, L, E), -1, 1), w = P(t, "w", FT(2, E, W), -1, 1);
  finish(t, N1(TANH, N2(CONV1D, x, w)));
  ir_error err;
  ir_func *g = ad_grad(t1.f, "loss", &err);
  assert_non_null(g);
  /* t2: g as a forward function, with t1's leaves and grad.loss bound */
  tg t2 = t1;
  t2.f = g;
  for (int k = 0; k < t1.n_leaf; k++) {
    size_t n = sizeof(double) * (size_t)ir_numel(&t1.f->nodes[t1.id[k]].type);
    t2.val[k] = memcpy(malloc(n), t1.val[k], n);
  }
  t2.id[t2.n_leaf] = ir_find_leaf(g, "grad.loss");
  t2.val[t2.n_leaf] = malloc(sizeof(double));
  t2.val[t2.n_leaf++][0] = 0.7;
  t2.loss = "loss2";
  t = &t2;
  int gx = g->outs[ir_find_output(g, "grad.x")].node;
  int gw = g->outs[ir_find_output(g, "grad.w")].node;
  /* ad_grad(g) adds grad.x and grad.w again: rename the first ones */
  strcpy(g->outs[ir_find_output(g, "grad.x")].name, "dx.1");
  strcpy(g->outs[ir_find_output(g, "grad.w")].name, "dw.1");
  int sx = N1(SUM, N1(SUM, N2(MUL, X(t, "v", FT(2, L, E), -1, 1), gx), .axis = 0),
              .axis = 1);
  int sw = N1(SUM, N1(SUM, N2(MUL, X(t, "v2", FT(2, E, W), -1, 1), gw), .axis = 0),
              .axis = 1);
  set_loss(t, N2(ADD, sx, sw));
  double e = check_grads(t, 1e-6);
  print_message("second order conv1d: worst relative error %.3g\n", e);
  tg_free(&t2);
  tg_free(&t1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_has_a_case),
      cmocka_unit_test(test_op_gradients),
      cmocka_unit_test(test_attention),
      cmocka_unit_test(test_mamba),
      cmocka_unit_test(test_backward_is_ir),
      cmocka_unit_test(test_structure),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_second_order_scan),
      cmocka_unit_test(test_second_order_conv),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
