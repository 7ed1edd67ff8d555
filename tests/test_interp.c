/* test_interp.c — the reference interpreter: one hand-computed case per op
 * (the table must cover IR_OP_LIST), layout and broadcasting corners, the
 * selective scan and the backward primitives against naive code and
 * finite differences, float32 rounding and index errors. */
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

#define LN2 0.69314718055994530942
#define LN3 1.09861228866810969140
#define LN5 1.60943791243410037460

/* ---- helpers ---- */

static ir_type T(ir_dtype dt, int rank, int d0, int d1, int d2, int d3) {
  int d[IR_MAX_RANK] = {d0, d1, d2, d3};
  return ir_type_make(dt, rank, d);
}
#define F0() T(IR_F32, 0, 0, 0, 0, 0)
#define F1(a) T(IR_F32, 1, a, 0, 0, 0)
#define F2(a, b) T(IR_F32, 2, a, b, 0, 0)
#define F3(a, b, c) T(IR_F32, 3, a, b, c, 0)
#define I0() T(IR_I32, 0, 0, 0, 0, 0)
#define I1(a) T(IR_I32, 1, a, 0, 0, 0)
#define I2(a, b) T(IR_I32, 2, a, b, 0, 0)

static int checked(int id, const ir_error *err) {
  if (id < 0) fail_msg("building: %s", err->msg);
  return id;
}

static int input(ir_func *f, const char *name, ir_type t) {
  ir_error err;
  return checked(ir_leaf(f, IR_OP_INPUT, name, t, &err), &err);
}

static int node(ir_func *f, ir_op op, const int *in, int n_in,
                const ir_attrs *a, const ir_type *decl) {
  ir_error err;
  return checked(ir_add(f, op, in, n_in, a, decl, NULL, &err), &err);
}

static int node2(ir_func *f, ir_op op, int x, int y, const ir_attrs *a) {
  int in[2] = {x, y};
  return node(f, op, in, 2, a, NULL);
}

/* Runs f (verified first); leaves indexed by node id, NULL allowed. */
static double **run(const ir_func *f, ir_precision p,
                    const double *const *leaves) {
  ir_error err;
  if (ir_verify(f, &err)) fail_msg("verify: %s", err.msg);
  double **v = ir_interp(f, p, leaves, &err);
  if (!v) fail_msg("interp: %s", err.msg);
  return v;
}

static void assert_close(const double *got, const double *want, int64_t n,
                         double tol, const char *what) {
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]); /* relative; 0 wants exactly 0 */
    if (!(d <= tol * fabs(want[i])))
      fail_msg("%s: element %lld is %.17g, want %.17g", what, (long long)i,
               got[i], want[i]);
  }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(double lo, double hi) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  uint64_t r = rng_state * 0x2545f4914f6cdd1dull;
  return lo + (hi - lo) * (double)(r >> 11) / 9007199254740992.0;
}
static int irand(int lo, int hi) { /* [lo, hi] */
  return lo + (int)(urand(0, 1) * (hi - lo + 1)) % (hi - lo + 1);
}
static double *rvec(int64_t n, double lo, double hi) {
  double *v = malloc(sizeof *v * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = urand(lo, hi);
  return v;
}

/* ---- one hand-computed case per op ---- */

typedef struct {
  ir_op op;
  int n_in;                 /* inputs, made `input` leaves x0..x3 */
  ir_type in_t[4];
  double in_v[4][16];
  ir_attrs attr;
  ir_type decl;             /* leaves, fill, reshape, expand */
  double want[24];
  int n_want;
} opcase;

#define IN1(t0, ...) .n_in = 1, .in_t = {t0}, .in_v = {__VA_ARGS__}
#define IN2(t0, t1, ...) .n_in = 2, .in_t = {t0, t1}, .in_v = {__VA_ARGS__}
#define IN3(t0, t1, t2, ...) .n_in = 3, .in_t = {t0, t1, t2}, .in_v = {__VA_ARGS__}
#define IN4(t0, t1, t2, t3, ...) \
  .n_in = 4, .in_t = {t0, t1, t2, t3}, .in_v = {__VA_ARGS__}
#define V(...) {__VA_ARGS__}
#define WANT(...) \
  .want = {__VA_ARGS__}, .n_want = sizeof((double[]){__VA_ARGS__}) / sizeof(double)

static opcase cases[64];
static int n_cases;

static void make_cases(void) {
  const double l = LN2;
  opcase c[] = {
      /* leaves: the value comes from in_v[0] (bound) or from data (const) */
      {IR_OP_INPUT, .decl = F1(2), .in_v = {V(1.5, -2)}, WANT(1.5, -2)},
      {IR_OP_PARAM, .decl = F2(2, 2), .in_v = {V(1, 2, 3, 4)}, WANT(1, 2, 3, 4)},
      {IR_OP_CONST, .decl = F1(3), .in_v = {V(0.25, 0.5, 4)}, WANT(0.25, 0.5, 4)},
      {IR_OP_FILL, .decl = F2(2, 2), .attr = {.value = 0.5},
       WANT(0.5, 0.5, 0.5, 0.5)},
      /* unary */
      {IR_OP_NEG, IN1(F1(3), V(1, -2, 0)), WANT(-1, 2, 0)},
      {IR_OP_EXP, IN1(F1(3), V(0, 1, -1)),
       WANT(1, 2.718281828459045, 0.36787944117144233)},
      {IR_OP_LOG, IN1(F1(3), V(1, 2.718281828459045, 0.5)), WANT(0, 1, -LN2)},
      {IR_OP_SQRT, IN1(F1(3), V(4, 2, 0)), WANT(2, 1.4142135623730951, 0)},
      {IR_OP_RSQRT, IN1(F1(3), V(4, 0.25, 100)), WANT(0.5, 2, 0.1)},
      {IR_OP_RECIP, IN1(F1(3), V(2, -4, 0.125)), WANT(0.5, -0.25, 8)},
      /* sigmoid(ln 3) = 3/(3+1); large |x| must not overflow */
      {IR_OP_SIGMOID, IN1(F1(5), V(0, LN3, -LN3, 800, -800)),
       WANT(0.5, 0.75, 0.25, 1, 0)},
      {IR_OP_SILU, IN1(F1(3), V(0, LN3, -LN3)), WANT(0, 0.75 * LN3, -0.25 * LN3)},
      /* log(1+e^x): ln2, ln4, ln(4/3); x = -100 needs the stable form */
      {IR_OP_SOFTPLUS, IN1(F1(5), V(0, LN3, -LN3, 100, -100)),
       WANT(LN2, 2 * LN2, 2 * LN2 - LN3, 100, 3.7200759760208361e-44)},
      /* tanh(ln 2) = (2 - 1/2) / (2 + 1/2) */
      {IR_OP_TANH, IN1(F1(3), V(0, LN2, -LN2)), WANT(0, 0.6, -0.6)},
      {IR_OP_RELU, IN1(F1(3), V(-1, 0, 2.5)), WANT(0, 0, 2.5)},
      /* binary, broadcasting */
      {IR_OP_ADD, IN2(F2(2, 3), F1(3), V(1, 2, 3, 4, 5, 6), V(10, 20, 30)),
       WANT(11, 22, 33, 14, 25, 36)},
      {IR_OP_SUB, IN2(F2(2, 1), F2(1, 3), V(1, 2), V(10, 20, 30)),
       WANT(-9, -19, -29, -8, -18, -28)},
      {IR_OP_MUL, IN2(F2(2, 2), F0(), V(1, 2, 3, 4), V(3)), WANT(3, 6, 9, 12)},
      {IR_OP_DIV, IN2(F1(3), F1(3), V(1, 3, -2), V(4, 2, 8)),
       WANT(0.25, 1.5, -0.25)},
      {IR_OP_MAX, IN2(F2(2, 2), F2(2, 1), V(1, 5, 3, 2), V(2, 4)),
       WANT(2, 5, 4, 4)},
      {IR_OP_GT, IN2(F1(3), F1(3), V(1, 2, 3), V(2, 2, 2)), WANT(0, 0, 1)},
      /* [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] */
      {IR_OP_MATMUL,
       IN2(F2(2, 3), F2(3, 2), V(1, 2, 3, 4, 5, 6), V(7, 8, 9, 10, 11, 12)),
       WANT(58, 64, 139, 154)},
      {IR_OP_PERMUTE, IN1(F2(2, 3), V(1, 2, 3, 4, 5, 6)),
       .attr = {.perm = {1, 0}}, WANT(1, 4, 2, 5, 3, 6)},
      {IR_OP_RESHAPE, IN1(F2(2, 3), V(1, 2, 3, 4, 5, 6)), .decl = F2(3, 2),
       WANT(1, 2, 3, 4, 5, 6)},
      {IR_OP_EXPAND, IN1(F1(3), V(1, 2, 3)), .decl = F2(2, 3),
       WANT(1, 2, 3, 1, 2, 3)},
      {IR_OP_SLICE, IN1(F2(2, 3), V(1, 2, 3, 4, 5, 6)),
       .attr = {.axis = 1, .start = 1, .end = 3}, WANT(2, 3, 5, 6)},
      {IR_OP_PAD, IN1(F2(2, 2), V(1, 2, 3, 4)),
       .attr = {.axis = 0, .start = 1, .end = 1}, WANT(0, 0, 1, 2, 3, 4, 0, 0)},
      {IR_OP_CONCAT, IN2(F2(1, 2), F2(2, 2), V(1, 2), V(3, 4, 5, 6)),
       .attr = {.axis = 0}, WANT(1, 2, 3, 4, 5, 6)},
      /* reductions keep the axis */
      {IR_OP_SUM, IN1(F2(2, 3), V(1, 2, 3, 4, 5, 6)), .attr = {.axis = 1},
       WANT(6, 15)},
      {IR_OP_AMAX, IN1(F2(2, 3), V(1, 5, 3, 4, 2, 6)), .attr = {.axis = 0},
       WANT(4, 5, 6)},
      {IR_OP_MEAN, IN1(F2(2, 3), V(1, 2, 3, 4, 5, 9)), .attr = {.axis = 1},
       WANT(2, 6)},
      /* causal 3x3: row 0 sees key 0, row 1 keys 0-1 (weights 1:3), row 2
       * all (weights 1:2:5); masked logits are large to show they are
       * ignored, not merely small */
      {IR_OP_SOFTMAX,
       IN1(F2(3, 3), V(0, 50, 70, 0, LN3, 90, 0, LN2, LN5)),
       .attr = {.causal = true},
       WANT(1, 0, 0, 0.25, 0.75, 0, 0.125, 0.25, 0.625)},
      {IR_OP_GATHER,
       IN2(F2(3, 2), I1(4), V(1, 2, 3, 4, 5, 6), V(2, 0, 2, 1)),
       WANT(5, 6, 1, 2, 5, 6, 3, 4)},
      /* rows 2, 0, 2 of the result receive src rows 0, 1, 2 */
      {IR_OP_SCATTER_ADD, IN2(F2(3, 2), I1(3), V(1, 2, 3, 4, 5, 6), V(2, 0, 2)),
       .attr = {.n = 3}, WANT(3, 4, 0, 0, 6, 8)},
      {IR_OP_SELECT_ROW, IN2(F2(3, 2), I0(), V(1, 2, 3, 4, 5, 6), V(1)),
       WANT(3, 4)},
      {IR_OP_ONEHOT, IN1(I1(2), V(2, 0)), .attr = {.n = 3}, WANT(0, 0, 1, 1, 0, 0)},
      /* row 0: ln(1+2+5) - ln 5; row 1: three equal huge logits, ln 3 */
      {IR_OP_CROSS_ENTROPY,
       IN2(F2(2, 3), I1(2), V(0, LN2, LN5, 1000, 1000, 1000), V(2, 0)),
       WANT(3 * LN2 - LN5, LN3)},
      /* x[t,e] = {1,2},{3,4},{5,6}; w[0] = {10,1}, w[1] = {100,2}:
       * y[t,e] = w[e,0] x[t-1,e] + w[e,1] x[t,e] */
      {IR_OP_CONV1D,
       IN2(F2(3, 2), F2(2, 2), V(1, 2, 3, 4, 5, 6), V(10, 1, 100, 2)),
       WANT(1, 4, 13, 208, 35, 412)},
      /* dx[s,e] = w[e,0] g[s+1,e] + w[e,1] g[s,e] */
      {IR_OP_CONV1D_BWD_X,
       IN2(F2(3, 2), F2(2, 2), V(1, 2, 3, 4, 5, 6), V(10, 1, 100, 2)),
       WANT(31, 404, 53, 608, 5, 12)},
      /* g = {1,2},{3,4},{5,6}; x = {1,1},{2,0},{3,-1}:
       * dw[e,0] = sum_t g[t,e] x[t-1,e], dw[e,1] = sum_t g[t,e] x[t,e] */
      {IR_OP_CONV1D_BWD_W,
       IN2(F2(3, 2), F2(3, 2), V(1, 2, 3, 4, 5, 6), V(1, 1, 2, 0, 3, -1)),
       .attr = {.n = 2}, WANT(13, 22, 4, -4)},
      /* L=2, E=N=1: u = {1,2}, delta = {ln2, ln4}, A = -1 (decays 1/2,
       * 1/4), B = {1, 1/2}, C = {3, -1}: h0 = ln2, h1 = ln2/4 + 2 ln2 */
      {IR_OP_SCAN,
       IN4(F2(2, 1), F2(2, 1), F2(1, 1), F2(2, 2), V(1, 2), V(LN2, 2 * LN2),
           V(-1), V(1, 3, 0.5, -1)),
       WANT(3 * LN2, -2.25 * LN2)},
      /* same scan, dy = {1, 2}: adjoints g1 = -2, g0 = 3 - 2/4 = 2.5;
       * du = {2.5 l, -2 l}, ddelta = {2.5, -2 (1 - l/4)}, dA = -l^2,
       * dB = {2.5 l, -8 l}, dC = {h0, 2 h1} = {l, 4.5 l} */
      {IR_OP_SCAN_BWD,
       IN4(F2(2, 2), F2(1, 1), F2(2, 2), F2(2, 1), V(1, LN2, 2, 2 * LN2), V(-1),
           V(1, 3, 0.5, -1), V(1, 2)),
       WANT(2.5 * l, -2 * l, 2.5, -2 + 0.5 * l, -l * l, 2.5 * l, l, -8 * l,
            4.5 * l)},
      /* x = {1,2},{3,4} (L 2, H 1, D 2); row 0 by (cos, sin) = (1/2, 1/4):
       * {1/2 - 1/2, 1/4 + 1}; row 1 by (0, -1): {0 + 4, -3 + 0} */
      {IR_OP_ROPE,
       IN3(F3(2, 1, 2), F2(2, 1), F2(2, 1), V(1, 2, 3, 4), V(0.5, 0), V(0.25, -1)),
       WANT(0, 1.25, 4, -3)},
  };
  n_cases = (int)(sizeof c / sizeof c[0]);
  memcpy(cases, c, sizeof c);
}

static void run_case(const opcase *c) {
  ir_func *f = ir_func_new();
  ir_error err;
  const double *leaves[8] = {0};
  int id;
  if (ir_op_is_leaf(c->op)) {
    if (c->op == IR_OP_FILL) {
      id = checked(ir_fill(f, c->attr.value, c->decl, &err), &err);
    } else {
      id = checked(ir_leaf(f, c->op, "leaf", c->decl, &err), &err);
      if (c->op == IR_OP_CONST) {
        float data[16];
        for (int i = 0; i < c->n_want; i++) data[i] = (float)c->in_v[0][i];
        assert_int_equal(ir_set_const_data(f, id, data, &err), 0);
      } else {
        leaves[id] = c->in_v[0];
      }
    }
  } else {
    int in[4];
    for (int k = 0; k < c->n_in; k++) {
      char name[16];
      snprintf(name, sizeof name, "x%d", k);
      in[k] = input(f, name, c->in_t[k]);
      leaves[in[k]] = c->in_v[k];
    }
    const ir_op_info *info = ir_op_get(c->op);
    id = node(f, c->op, in, c->n_in, &c->attr,
              info->attrs & IR_ATTR_TYPE ? &c->decl : NULL);
  }
  assert_int_equal(ir_numel(&f->nodes[id].type), c->n_want);
  double **v = run(f, IR_PREC_F64, leaves);
  char what[64];
  snprintf(what, sizeof what, "op %s", ir_op_name(c->op));
  assert_close(v[id], c->want, c->n_want, 1e-14, what);
  ir_values_free(f, v);
  ir_func_free(f);
}

static void test_every_op(void **s) {
  (void)s;
  make_cases();
  bool seen[IR_OP_COUNT] = {0};
  for (int i = 0; i < n_cases; i++) {
    run_case(&cases[i]);
    seen[cases[i].op] = true;
  }
  for (int op = 0; op < IR_OP_COUNT; op++)
    if (!seen[op]) fail_msg("op %s has no interpreter test case",
                            ir_op_name((ir_op)op));
}

/* ---- broadcasting, reductions, layout ---- */

static void test_broadcast_ranks(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int a = input(f, "a", F3(2, 1, 3)), b = input(f, "b", F2(2, 1));
  int y = node2(f, IR_OP_ADD, a, b, NULL);
  assert_true(ir_type_eq(&f->nodes[y].type, &(ir_type){IR_F32, 3, {2, 2, 3}}));
  double va[] = {1, 2, 3, 4, 5, 6}, vb[] = {10, 20};
  const double *lv[] = {va, vb};
  double **v = run(f, IR_PREC_F64, lv);
  /* out[i][j][k] = a[i][0][k] + b[j][0] */
  double want[] = {11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26};
  assert_close(v[y], want, 12, 0, "add [2,1,3]+[2,1]");
  ir_values_free(f, v);
  ir_func_free(f);

  /* expand [3,1] -> [2,3,4] */
  f = ir_func_new();
  int x = input(f, "x", F2(3, 1));
  ir_type to = F3(2, 3, 4);
  y = node(f, IR_OP_EXPAND, &x, 1, NULL, &to);
  double vx[] = {7, 8, 9};
  const double *lx[] = {vx};
  v = run(f, IR_PREC_F64, lx);
  for (int i = 0; i < 24; i++) assert_true(v[y][i] == vx[(i / 4) % 3]);
  ir_values_free(f, v);
  ir_func_free(f);
}

static void test_reductions_keep_axis(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F3(2, 3, 2)); /* x[i][j][k] = 6i + 2j + k */
  int sm = node(f, IR_OP_SUM, &x, 1, &(ir_attrs){.axis = 1}, NULL);
  int mx = node(f, IR_OP_AMAX, &x, 1, &(ir_attrs){.axis = 2}, NULL);
  int mn = node(f, IR_OP_MEAN, &x, 1, &(ir_attrs){.axis = 0}, NULL);
  assert_true(ir_type_eq(&f->nodes[sm].type, &(ir_type){IR_F32, 3, {2, 1, 2}}));
  assert_true(ir_type_eq(&f->nodes[mx].type, &(ir_type){IR_F32, 3, {2, 3, 1}}));
  assert_true(ir_type_eq(&f->nodes[mn].type, &(ir_type){IR_F32, 3, {1, 3, 2}}));
  double vx[12];
  for (int i = 0; i < 12; i++) vx[i] = i;
  const double *lv[] = {vx};
  double **v = run(f, IR_PREC_F64, lv);
  double w_sum[] = {6, 9, 24, 27};           /* 18i + 3k + 6 */
  double w_max[] = {1, 3, 5, 7, 9, 11};      /* 6i + 2j + 1 */
  double w_mean[] = {3, 4, 5, 6, 7, 8};      /* 2j + k + 3 */
  assert_close(v[sm], w_sum, 4, 0, "sum axis 1");
  assert_close(v[mx], w_max, 6, 0, "amax axis 2");
  assert_close(v[mn], w_mean, 6, 0, "mean axis 0");
  ir_values_free(f, v);
  ir_func_free(f);
}

static void test_permute_rank3(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F3(2, 3, 4));
  int y = node(f, IR_OP_PERMUTE, &x, 1, &(ir_attrs){.perm = {2, 0, 1}}, NULL);
  assert_true(ir_type_eq(&f->nodes[y].type, &(ir_type){IR_F32, 3, {4, 2, 3}}));
  double vx[24];
  for (int i = 0; i < 24; i++) vx[i] = i;
  const double *lv[] = {vx};
  double **v = run(f, IR_PREC_F64, lv);
  /* out[a][b][c] = x[b][c][a] = 12b + 4c + a */
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 2; b++)
      for (int c = 0; c < 3; c++)
        assert_true(v[y][a * 6 + b * 3 + c] == 12 * b + 4 * c + a);
  ir_values_free(f, v);
  ir_func_free(f);
}

static void test_layout_rank3(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F3(2, 3, 2)), z = input(f, "z", F3(2, 1, 2));
  /* x[i][j][k] = 6i + 2j + k; z = 100 + ... */
  int sl = node(f, IR_OP_SLICE, &x, 1,
                &(ir_attrs){.axis = 1, .start = 1, .end = 3}, NULL);
  int pd = node(f, IR_OP_PAD, &x, 1,
                &(ir_attrs){.axis = 2, .start = 2, .end = 1}, NULL);
  int cat_in[3] = {x, z, x};
  int ct = node(f, IR_OP_CONCAT, cat_in, 3, &(ir_attrs){.axis = 1}, NULL);
  double vx[12], vz[4] = {100, 101, 102, 103};
  for (int i = 0; i < 12; i++) vx[i] = i;
  const double *lv[] = {vx, vz};
  double **v = run(f, IR_PREC_F64, lv);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 2; k++)
        assert_true(v[sl][i * 4 + j * 2 + k] == 6 * i + 2 * (j + 1) + k);
  for (int i = 0; i < 2; i++) /* pd: [2,3,5] */
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 5; k++) {
        double want = k >= 2 && k < 4 ? 6 * i + 2 * j + (k - 2) : 0;
        assert_true(v[pd][i * 15 + j * 5 + k] == want);
      }
  assert_true(ir_type_eq(&f->nodes[ct].type, &(ir_type){IR_F32, 3, {2, 7, 2}}));
  for (int i = 0; i < 2; i++) /* ct: rows x0 x1 x2 z x0 x1 x2 */
    for (int j = 0; j < 7; j++)
      for (int k = 0; k < 2; k++) {
        double want = j < 3   ? 6 * i + 2 * j + k
                      : j == 3 ? 100 + 2 * i + k
                               : 6 * i + 2 * (j - 4) + k;
        assert_true(v[ct][i * 14 + j * 2 + k] == want);
      }
  ir_values_free(f, v);
  ir_func_free(f);
}

/* matmul with every transpose combination and a batch axis, against the
 * plain product of the untransposed operands */
static void test_matmul_trans_batch(void **s) {
  (void)s;
  enum { B = 2, M = 3, K = 4, N = 5 };
  double a[B][M][K], b[B][K][N], at[B][K][M], bt[B][N][K], want[B][M][N];
  for (int q = 0; q < B; q++) {
    for (int i = 0; i < M; i++)
      for (int k = 0; k < K; k++) at[q][k][i] = a[q][i][k] = irand(-5, 5);
    for (int k = 0; k < K; k++)
      for (int j = 0; j < N; j++) bt[q][j][k] = b[q][k][j] = irand(-5, 5);
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        want[q][i][j] = 0;
        for (int k = 0; k < K; k++) want[q][i][j] += a[q][i][k] * b[q][k][j];
      }
  }
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      ir_func *f = ir_func_new();
      int x = input(f, "a", ta ? F3(B, K, M) : F3(B, M, K));
      int y = input(f, "b", tb ? F3(B, N, K) : F3(B, K, N));
      int p = node2(f, IR_OP_MATMUL, x, y, &(ir_attrs){.ta = ta, .tb = tb});
      const double *lv[] = {ta ? &at[0][0][0] : &a[0][0][0],
                            tb ? &bt[0][0][0] : &b[0][0][0]};
      double **v = run(f, IR_PREC_F64, lv);
      assert_close(v[p], &want[0][0][0], B * M * N, 0, "batched matmul");
      ir_values_free(f, v);
      ir_func_free(f);
    }
}

static void test_softmax_shapes(void **s) {
  (void)s;
  /* causal with Lq = 2 < Lk = 3 (the last two positions), batch of 2, and
   * plain softmax of the same data */
  ir_func *f = ir_func_new();
  int x = input(f, "x", F3(2, 2, 3));
  int c = node(f, IR_OP_SOFTMAX, &x, 1, &(ir_attrs){.causal = true}, NULL);
  int p = node(f, IR_OP_SOFTMAX, &x, 1, &(ir_attrs){0}, NULL);
  double vx[12] = {0, LN3, 40, 0, LN2, LN5,      /* batch 0 */
                   1000, 1000, 5, LN3, 0, 0};    /* batch 1 */
  const double *lv[] = {vx};
  double **v = run(f, IR_PREC_F64, lv);
  double wc[12] = {0.25, 0.75, 0, 0.125, 0.25, 0.625,
                   0.5, 0.5, 0, 0.6, 0.2, 0.2};
  assert_close(v[c], wc, 12, 1e-14, "causal softmax Lq < Lk");
  double e40 = exp(40), e5 = exp(5 - 1000);
  double wp[12] = {1 / (4 + e40), 3 / (4 + e40), e40 / (4 + e40),
                   0.125, 0.25, 0.625,
                   1 / (2 + e5), 1 / (2 + e5), e5 / (2 + e5), 0.6, 0.2, 0.2};
  assert_close(v[p], wp, 12, 1e-14, "softmax");
  ir_values_free(f, v);
  ir_func_free(f);
}

/* i32 values flow through layout ops exactly, also under F32 */
static void test_i32_layout(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = input(f, "x", I1(2));
  ir_type t = I2(2, 1);
  int r = node(f, IR_OP_RESHAPE, &x, 1, NULL, &t);
  int g = node2(f, IR_OP_GATHER, x, input(f, "i", I0()), NULL);
  double vx[] = {16777217, -3}, vi[] = {0};
  const double *lv[] = {vx, NULL, vi};
  double **v = run(f, IR_PREC_F32, lv);
  assert_true(v[r][0] == 16777217 && v[r][1] == -3);
  assert_true(v[g][0] == 16777217);
  ir_values_free(f, v);
  ir_func_free(f);
}

/* ---- selective scan ---- */

/* y[t][e] = sum_s C[t][s] sum_{r<=t} exp(A[e][s] sum_{q=r+1..t} delta[q][e])
 *                                    delta[r][e] B[r][s] u[r][e]:
 * the unrolled recurrence, computed without it. */
static void naive_scan(const double *u, const double *dl, const double *A,
                       const double *bc, int L, int E, int N, double *y) {
  for (int t = 0; t < L; t++)
    for (int e = 0; e < E; e++) {
      double acc = 0;
      for (int s = 0; s < N; s++)
        for (int r = 0; r <= t; r++) {
          double span = 0;
          for (int q = r + 1; q <= t; q++) span += dl[q * E + e];
          acc += bc[t * 2 * N + N + s] * exp(A[e * N + s] * span) *
                 dl[r * E + e] * bc[r * 2 * N + s] * u[r * E + e];
        }
      y[t * E + e] = acc;
    }
}

static double scan_loss(const double *u, const double *dl, const double *A,
                        const double *bc, const double *dy, int L, int E,
                        int N) {
  double *y = malloc(sizeof *y * (size_t)L * E), s = 0;
  naive_scan(u, dl, A, bc, L, E, N, y);
  for (int i = 0; i < L * E; i++) s += dy[i] * y[i];
  free(y);
  return s;
}

static double rel_err(double a, double b) {
  return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-3);
}

static void test_scan_random(void **s) {
  (void)s;
  for (int trial = 0; trial < 6; trial++) {
    int L = irand(1, 9), E = irand(1, 4), N = irand(1, 4);
    double *u = rvec(L * E, -1, 1), *dl = rvec(L * E, 0.05, 1.0);
    double *A = rvec(E * N, -2, -0.1), *bc = rvec(L * 2 * N, -1, 1);
    double *dy = rvec(L * E, -1, 1);
    ir_func *f = ir_func_new();
    int iu = input(f, "u", F2(L, E)), id = input(f, "delta", F2(L, E));
    int iA = input(f, "A", F2(E, N)), ib = input(f, "bc", F2(L, 2 * N));
    int in[4] = {iu, id, iA, ib};
    int y = node(f, IR_OP_SCAN, in, 4, NULL, NULL);
    const double *lv[] = {u, dl, A, bc};
    double **v = run(f, IR_PREC_F64, lv);
    double *want = malloc(sizeof *want * (size_t)L * E);
    naive_scan(u, dl, A, bc, L, E, N, want);
    assert_close(v[y], want, L * E, 1e-12, "scan vs unrolled");
    free(want);
    ir_values_free(f, v);
    ir_func_free(f);

    /* scan_bwd against central differences of the naive forward */
    f = ir_func_new();
    int iud = input(f, "ud", F2(L, 2 * E));
    iA = input(f, "A", F2(E, N));
    ib = input(f, "bc", F2(L, 2 * N));
    int idy = input(f, "dy", F2(L, E));
    int bin[4] = {iud, iA, ib, idy};
    int g = node(f, IR_OP_SCAN_BWD, bin, 4, NULL, NULL);
    double *ud = malloc(sizeof *ud * (size_t)L * 2 * E);
    for (int t = 0; t < L; t++)
      for (int e = 0; e < E; e++) {
        ud[t * 2 * E + e] = u[t * E + e];
        ud[t * 2 * E + E + e] = dl[t * E + e];
      }
    const double *blv[] = {ud, A, bc, dy};
    v = run(f, IR_PREC_F64, blv);
    double *params[4] = {u, dl, A, bc};
    int sizes[4] = {L * E, L * E, E * N, L * 2 * N};
    const char *names[4] = {"du", "ddelta", "dA", "dbc"};
    for (int p = 0, off = 0; p < 4; off += sizes[p++])
      for (int i = 0; i < sizes[p]; i++) {
        double keep = params[p][i], h = 1e-5;
        params[p][i] = keep + h;
        double lp = scan_loss(u, dl, A, bc, dy, L, E, N);
        params[p][i] = keep - h;
        double lm = scan_loss(u, dl, A, bc, dy, L, E, N);
        params[p][i] = keep;
        double fd = (lp - lm) / (2 * h), an = v[g][off + i];
        if (rel_err(an, fd) > 1e-6)
          fail_msg("scan_bwd L=%d E=%d N=%d %s[%d]: %.12g vs fd %.12g", L, E,
                   N, names[p], i, an, fd);
      }
    ir_values_free(f, v);
    ir_func_free(f);
    free(ud), free(u), free(dl), free(A), free(bc), free(dy);
  }
}

/* ---- conv1d backward and scatter_add as adjoints ---- */

static double conv_loss(const double *x, const double *w, const double *g,
                        int L, int E, int W) {
  double s = 0; /* sum_t,e g[t,e] * y[t,e], y by the shifted-window form */
  for (int t = 0; t < L; t++)
    for (int e = 0; e < E; e++)
      for (int lag = 0; lag < W && lag <= t; lag++)
        s += g[t * E + e] * w[e * W + (W - 1 - lag)] * x[(t - lag) * E + e];
  return s;
}

static void test_conv1d_bwd_fd(void **s) {
  (void)s;
  for (int trial = 0; trial < 6; trial++) {
    int L = irand(1, 7), E = irand(1, 3), W = irand(1, 4);
    double *x = rvec(L * E, -1, 1), *w = rvec(E * W, -1, 1);
    double *g = rvec(L * E, -1, 1);
    ir_func *f = ir_func_new();
    int ig = input(f, "g", F2(L, E)), iw = input(f, "w", F2(E, W));
    int ix = input(f, "x", F2(L, E));
    int y = node2(f, IR_OP_CONV1D, ix, iw, NULL);
    int dx = node2(f, IR_OP_CONV1D_BWD_X, ig, iw, NULL);
    int dw = node2(f, IR_OP_CONV1D_BWD_W, ig, ix, &(ir_attrs){.n = W});
    const double *lv[] = {g, w, x};
    double **v = run(f, IR_PREC_F64, lv);
    double direct = 0;
    for (int i = 0; i < L * E; i++) direct += g[i] * v[y][i];
    assert_true(rel_err(direct, conv_loss(x, w, g, L, E, W)) < 1e-12);
    double *vars[2] = {x, w}, *grads[2] = {v[dx], v[dw]};
    int sizes[2] = {L * E, E * W};
    for (int p = 0; p < 2; p++)
      for (int i = 0; i < sizes[p]; i++) {
        double keep = vars[p][i], h = 1e-5;
        vars[p][i] = keep + h;
        double lp = conv_loss(x, w, g, L, E, W);
        vars[p][i] = keep - h;
        double lm = conv_loss(x, w, g, L, E, W);
        vars[p][i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (rel_err(grads[p][i], fd) > 1e-6)
          fail_msg("conv1d_bwd_%s L=%d E=%d W=%d [%d]: %.12g vs fd %.12g",
                   p ? "w" : "x", L, E, W, i, grads[p][i], fd);
      }
    ir_values_free(f, v);
    ir_func_free(f);
    free(x), free(w), free(g);
  }
}

/* <gather(t, idx), g> == <t, scatter_add(g, idx)>, idx of rank 2 with
 * repeats, table of rank 3 */
static void test_scatter_add_adjoint(void **s) {
  (void)s;
  enum { V_ = 4, P = 2, Q = 3, R = 2, S = 2 };
  ir_func *f = ir_func_new();
  int it = input(f, "t", F3(V_, R, S)), ii = input(f, "idx", I2(P, Q));
  int ig = input(f, "g", T(IR_F32, 4, P, Q, R, S));
  int ga = node2(f, IR_OP_GATHER, it, ii, NULL);
  int sc = node2(f, IR_OP_SCATTER_ADD, ig, ii, &(ir_attrs){.n = V_});
  double *t = rvec(V_ * R * S, -1, 1), *g = rvec(P * Q * R * S, -1, 1);
  double idx[P * Q] = {3, 0, 3, 1, 3, 0};
  const double *lv[] = {t, idx, g};
  double **v = run(f, IR_PREC_F64, lv);
  double lhs = 0, rhs = 0;
  for (int i = 0; i < P * Q * R * S; i++) lhs += v[ga][i] * g[i];
  for (int i = 0; i < V_ * R * S; i++) rhs += t[i] * v[sc][i];
  assert_true(fabs(lhs - rhs) < 1e-12);
  for (int i = R * S * 2; i < R * S * 3; i++) assert_true(v[sc][i] == 0);
  ir_values_free(f, v);
  ir_func_free(f);
  free(t), free(g);
}

/* ---- precision, leaves, errors ---- */

static void test_f32_rounding(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F1(2)), three = ir_fill(f, 3, F0(), NULL);
  int q = node2(f, IR_OP_DIV, x, three, NULL);
  int e = ir_unary(f, IR_OP_EXP, three, NULL);
  int big = ir_unary(f, IR_OP_EXP, ir_fill(f, 100, F0(), NULL), NULL);
  double vx[] = {1, 0.1};
  const double *lv[] = {vx};
  double **d = run(f, IR_PREC_F64, lv), **r = run(f, IR_PREC_F32, lv);
  assert_true(d[q][0] == 1.0 / 3);
  assert_true(r[q][0] == (double)(float)(1.0 / 3));
  assert_true(r[q][0] != d[q][0]);
  assert_true(r[x][1] == (double)0.1f && d[x][1] == 0.1); /* leaf on entry */
  /* 0.1f / 3 rounded, not 0.1 / 3 rounded */
  assert_true(r[q][1] == (double)(float)((double)0.1f / 3));
  assert_true(r[e][0] == (double)(float)exp(3.0));
  assert_true(isinf(r[big][0]) && isfinite(d[big][0])); /* e^100 > FLT_MAX */
  ir_values_free(f, d);
  ir_values_free(f, r);
  ir_func_free(f);
}

static void test_leaves(void **s) {
  (void)s;
  ir_func *f = ir_func_new();
  ir_error err;
  int c = ir_leaf(f, IR_OP_CONST, "V", F1(2), &err);
  int p = ir_leaf(f, IR_OP_PARAM, "w", F1(2), &err);
  int y = node2(f, IR_OP_ADD, c, p, NULL);
  double vw[] = {1, 2}, vc[] = {10, 20};
  /* const with neither data nor binding */
  const double *lv[] = {NULL, vw};
  assert_null(ir_interp(f, IR_PREC_F64, lv, &err));
  assert_non_null(strstr(err.msg, "\"V\""));
  assert_non_null(strstr(err.msg, "%0"));
  /* bound const */
  const double *lb[] = {vc, vw};
  double **v = run(f, IR_PREC_F64, lb);
  assert_true(v[y][0] == 11 && v[y][1] == 22);
  ir_values_free(f, v);
  /* const data, overridden by a binding */
  float data[] = {100, 200};
  assert_int_equal(ir_set_const_data(f, c, data, &err), 0);
  v = run(f, IR_PREC_F64, lv);
  assert_true(v[y][0] == 101 && v[y][1] == 202);
  ir_values_free(f, v);
  v = run(f, IR_PREC_F64, lb);
  assert_true(v[y][0] == 11);
  ir_values_free(f, v);
  /* missing param, and no leaves at all */
  const double *lm[] = {NULL, NULL};
  assert_null(ir_interp(f, IR_PREC_F32, lm, &err));
  assert_non_null(strstr(err.msg, "param \"w\" (%1)"));
  assert_null(ir_interp(f, IR_PREC_F32, NULL, &err));
  assert_non_null(strstr(err.msg, "\"w\""));
  ir_func_free(f);
}

static void expect_error(ir_func *f, const double *const *lv, const char *msg) {
  ir_error err = {{0}};
  assert_int_equal(ir_verify(f, &err), 0);
  double **v = ir_interp(f, IR_PREC_F32, lv, &err);
  if (v) fail_msg("expected error \"%s\", got success", msg);
  if (!strstr(err.msg, msg))
    fail_msg("expected error \"%s\", got \"%s\"", msg, err.msg);
  ir_func_free(f);
}

static void test_index_errors(void **s) {
  (void)s;
  double bad17[] = {1, 17}, neg[] = {-1}, half[] = {0.5}, nine[] = {9};
  double tab[16 * 2] = {0};
  ir_func *f = ir_func_new();
  int t = input(f, "t", F2(16, 2)), i = input(f, "i", I1(2));
  node2(f, IR_OP_GATHER, t, i, NULL);
  expect_error(f, (const double *[]){tab, bad17},
               "gather: index 17 out of range for table of 16 rows (%2)");

  f = ir_func_new();
  t = input(f, "t", F2(1, 2));
  i = input(f, "i", I1(1));
  node2(f, IR_OP_SCATTER_ADD, t, i, &(ir_attrs){.n = 4});
  expect_error(f, (const double *[]){tab, nine},
               "scatter_add: index 9 out of range");

  f = ir_func_new();
  t = input(f, "t", F2(8, 2));
  i = input(f, "p", I0());
  node2(f, IR_OP_SELECT_ROW, t, i, NULL);
  expect_error(f, (const double *[]){tab, nine},
               "select_row: position 9 out of range");

  f = ir_func_new();
  i = input(f, "i", I1(1));
  node(f, IR_OP_ONEHOT, &i, 1, &(ir_attrs){.n = 4}, NULL);
  expect_error(f, (const double *[]){neg}, "onehot: index -1 out of range");

  f = ir_func_new();
  t = input(f, "t", F2(1, 4));
  i = input(f, "y", I1(1));
  node2(f, IR_OP_CROSS_ENTROPY, t, i, NULL);
  expect_error(f, (const double *[]){tab, nine},
               "cross_entropy: label 9 out of range for 4 classes (%2)");

  f = ir_func_new();
  t = input(f, "t", F2(4, 2));
  i = input(f, "i", I1(1));
  node2(f, IR_OP_GATHER, t, i, NULL);
  expect_error(f, (const double *[]){tab, half}, "not an integer");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op),
      cmocka_unit_test(test_broadcast_ranks),
      cmocka_unit_test(test_reductions_keep_axis),
      cmocka_unit_test(test_permute_rank3),
      cmocka_unit_test(test_layout_rank3),
      cmocka_unit_test(test_matmul_trans_batch),
      cmocka_unit_test(test_softmax_shapes),
      cmocka_unit_test(test_i32_layout),
      cmocka_unit_test(test_scan_random),
      cmocka_unit_test(test_conv1d_bwd_fd),
      cmocka_unit_test(test_scatter_add_adjoint),
      cmocka_unit_test(test_f32_rounding),
      cmocka_unit_test(test_leaves),
      cmocka_unit_test(test_index_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
