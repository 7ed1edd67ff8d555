/* test_codegen.c — JIT kernels against the reference interpreter.
 *
 * Every op of IR_OP_LIST has a table entry (the suite fails if one is
 * missing) with several shape/attribute variants; each variant is compiled
 * with fusion on and off, run on random inputs, and every output compared
 * with ir_interp in IR_PREC_F32.
 *
 * Error measure, per element: |jit - ref| / max(|ref|, rms(ref)), i.e.
 * relative, with an absolute floor at the output's RMS (an element far
 * below the tensor's scale is judged against that scale: its error comes
 * from cancelling terms of that size). Bound: 1e-5 for every op computed
 * exactly or by accumulation; the ops using the exp/log approximations
 * (a few ulp each) get 2e-5, and scan/scan_bwd (a recurrence over L steps
 * in float, against the interpreter's double recurrence) 1e-4. Composite
 * graphs: the forward attention layer 2e-5, the Mamba chain 1e-4, and the
 * gradient functions 1e-4 (differences of accumulation order compound
 * through ~100 nodes, amplified by the cancellation in the softmax and
 * norm backward; measured worst about 1e-5).
 * i32 outputs must match exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

static ir_error E;

/* ---- small helpers ---- */

#define RNG_START 0x9E3779B97F4A7C15ull /* the generator's state at the start */
static uint64_t rng = RNG_START;
static uint64_t next_u64(void) { /* splitmix64 */
  uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double urand(double lo, double hi) {
  return lo + (hi - lo) * (double)(next_u64() >> 11) * 0x1p-53;
}

static int ok_(int v, const char *what, int line) {
  if (v < 0) fail_msg("line %d: %s: %s", line, what, E.msg);
  return v;
}
#define OK(x) ok_((x), #x, __LINE__)

static ir_type T(ir_dtype dt, int rank, ...) {
  ir_type t = {.dtype = dt, .rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) t.dim[i] = va_arg(ap, int);
  va_end(ap);
  return t;
}
/* F(3, 4) is f32[3,4], I(5) is i32[5]; FS, IS are scalars */
#define NARGS(...) NARGS_(__VA_ARGS__, 4, 3, 2, 1, 0)
#define NARGS_(a, b, c, d, n, ...) n
#define F(...) T(IR_F32, NARGS(__VA_ARGS__), __VA_ARGS__)
#define I(...) T(IR_I32, NARGS(__VA_ARGS__), __VA_ARGS__)
#define FS T(IR_F32, 0)
#define IS T(IR_I32, 0)

static int input(ir_func *f, const char *name, ir_type t) {
  return OK(ir_leaf(f, IR_OP_INPUT, name, t, &E));
}
static int param(ir_func *f, const char *name, ir_type t) {
  return OK(ir_leaf(f, IR_OP_PARAM, name, t, &E));
}
static int op1(ir_func *f, ir_op op, int x, ir_attrs a) {
  return OK(ir_add(f, op, &x, 1, &a, NULL, NULL, &E));
}
static int op2(ir_func *f, ir_op op, int x, int y, ir_attrs a) {
  int in[2] = {x, y};
  return OK(ir_add(f, op, in, 2, &a, NULL, NULL, &E));
}
static int opt_(ir_func *f, ir_op op, int x, ir_type t) { /* reshape, expand */
  return OK(ir_add(f, op, &x, 1, NULL, &t, NULL, &E));
}
static int bin(ir_func *f, ir_op op, int x, int y) {
  return OK(ir_binary(f, op, x, y, &E));
}
static int un(ir_func *f, ir_op op, int x) { return OK(ir_unary(f, op, x, &E)); }
static int mm(ir_func *f, int x, int y, bool ta, bool tb) {
  return op2(f, IR_OP_MATMUL, x, y, (ir_attrs){.ta = ta, .tb = tb});
}
static int fill(ir_func *f, double v, ir_type t) {
  return OK(ir_fill(f, v, t, &E));
}
static void out(ir_func *f, const char *name, int v) {
  OK(ir_add_output(f, name, v, &E));
}

/* ---- leaf data by naming convention ----
 * f32: "pos*" [0.05, 0.6], "neg*" [-1.5, -0.1], "wide*" [-30, 30],
 * "logpos*" log-uniform [1e-4, 1e4], "den*" +-[0.5, 2], "*weight*"
 * [-0.5, 0.5] (near PyTorch's init scale: with larger weights attention
 * saturates and the gradients become cancellation-dominated, a float
 * accuracy limit rather than a codegen property), else [-2, 2];
 * i32: "zero*" all 0, else uniform in [0, imax). */
static void gen_leaf(const ir_node *n, int imax, double *d) {
  int64_t cnt = ir_numel(&n->type);
  const char *s = n->name ? n->name : "";
  for (int64_t i = 0; i < cnt; i++) {
    double x;
    if (n->type.dtype == IR_I32)
      x = strncmp(s, "zero", 4) ? (double)(next_u64() % (uint64_t)(imax > 0 ? imax : 1)) : 0;
    else if (!strncmp(s, "pos", 3))
      x = urand(0.05, 0.6);
    else if (!strncmp(s, "neg", 3))
      x = urand(-1.5, -0.1);
    else if (!strncmp(s, "wide", 4))
      x = urand(-30, 30);
    else if (!strncmp(s, "logpos", 6))
      x = exp(urand(log(1e-4), log(1e4)));
    else if (!strncmp(s, "den", 3))
      x = urand(0.5, 2) * (next_u64() & 1 ? 1 : -1);
    else if (strstr(s, "weight"))
      x = urand(-0.5, 0.5);
    else
      x = urand(-2, 2);
    d[i] = n->type.dtype == IR_I32 ? x : (double)(float)x;
  }
}

/* Worst scaled error of a float output against the reference (NaN where
 * exactly one of them is NaN counts as infinite). */
static double out_error(const float *got, const double *ref, int64_t n,
                        int64_t *worst) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(ref[i])) ss += ref[i] * ref[i];
  double rms = sqrt(ss / (double)n), e = 0;
  *worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double g = got[i], r = ref[i], ei;
    if (isnan(r) || isnan(g))
      ei = isnan(r) && isnan(g) ? 0 : INFINITY;
    else if (isinf(r) || isinf(g))
      ei = g == r ? 0 : INFINITY;
    else {
      double den = fmax(fabs(r), rms);
      ei = den > 0 ? fabs(g - r) / den : fabs(g - r);
    }
    if (ei > e || (i == 0 && ei >= e)) {
      e = ei;
      *worst = i;
    }
  }
  return e;
}

/* Where the JIT misses tol against the f32 interpreter on output j. Both
 * are f32 evaluations in different orders, and an output made by
 * cancellation (the softmax VJP's sum of terms that nearly cancel) can
 * differ between them by more than tol of its rms while both are as
 * close to the exact values as f32 allows. So: against the exact values
 * (the f64 interpreter), the JIT's worst error must be within tol, or
 * within CANCEL times the f32 interpreter's own worst error there (an
 * ill-conditioned output: the f32 reference itself is that far off).
 * Returns the JIT's error against the exact values, or -1 when it fails
 * both. *ref64: made on first use. */
enum { CANCEL = 4 };
static double cancellation_error(const ir_func *f, double **dl, double ***ref64,
                                 const double *ref32, int j, const float *got, double tol,
                                 const char *label) {
  if (!*ref64 && !(*ref64 = ir_interp(f, IR_PREC_F64, (const double *const *)dl, &E)))
    fail_msg("%s: interp f64: %s", label, E.msg);
  int v = f->outs[j].node;
  int64_t n = ir_numel(&f->nodes[v].type), at;
  float *r32 = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) r32[i] = (float)ref32[i];
  double e_jit = out_error(got, (*ref64)[v], n, &at), e_f32 = out_error(r32, (*ref64)[v], n, &at);
  free(r32);
  print_message("%s: output \"%s\": against the exact values jit %.3g, f32 interpreter %.3g\n",
                label, f->outs[j].name, e_jit, e_f32);
  return e_jit <= tol || e_jit <= CANCEL * e_f32 ? e_jit : -1;
}

typedef struct {
  double err;      /* worst scaled error over the float outputs */
  int oob;         /* the kernel's return value */
  const cg_stats *st;
} run_result;

/* Compiles f (fusion on or off), runs it and the interpreter on the same
 * random leaves, checks i32 outputs exactly and returns the worst float
 * error. Const leaves with data are passed as NULL (cg_run substitutes). */
static const char *passes; /* NULL: the default pipeline */
static int arena_byte = 0xA5;  /* the arena's garbage before a run */

static double run_compare(const ir_func *f, int imax, bool fuse,
                          const char *label, double tol) {
  cg_options o = {.no_fuse = !fuse, .passes = passes};
  cg_module *m = cg_compile(f, &o, &E);
  if (!m) fail_msg("%s: compile: %s", label, E.msg);
  int nl = cg_n_leaves(m);
  double **dl = calloc((size_t)f->n_nodes + 1, sizeof *dl);
  const void **jl = calloc((size_t)nl + 1, sizeof *jl);
  void **jo = calloc((size_t)f->n_outs + 1, sizeof *jo);
  for (int i = 0; i < nl; i++) {
    int v = cg_leaf_node(m, i);
    assert_int_equal(cg_leaf_index(m, v), i);
    const ir_node *n = &f->nodes[v];
    if (n->op == IR_OP_CONST && n->data) continue; /* interp uses n->data */
    int64_t cnt = ir_numel(&n->type);
    dl[v] = malloc(sizeof(double) * (size_t)cnt);
    gen_leaf(n, imax, dl[v]);
    if (n->type.dtype == IR_I32) {
      int32_t *p = malloc(4 * (size_t)cnt);
      for (int64_t k = 0; k < cnt; k++) p[k] = (int32_t)dl[v][k];
      jl[i] = p;
    } else {
      float *p = malloc(4 * (size_t)cnt);
      for (int64_t k = 0; k < cnt; k++) p[k] = (float)dl[v][k];
      jl[i] = p;
    }
  }
  for (int j = 0; j < f->n_outs; j++) {
    int64_t cnt = ir_numel(&f->nodes[f->outs[j].node].type);
    jo[j] = malloc(4 * (size_t)cnt + 4);
    /* garbage: every element must be written (0x7F7F7F7F is 3.4e38, far
     * from any value a test expects, zeros included) */
    memset(jo[j], 0x7F, 4 * (size_t)cnt);
  }
  void *arena = cg_arena_new(m);
  memset(arena, arena_byte, cg_arena_size(m)); /* the kernel may not rely on zeros */
  int rc = cg_run(m, jl, jo, arena);
  double **ref = ir_interp(f, IR_PREC_F32, (const double *const *)dl, &E), **ref64 = NULL;
  if (!ref) fail_msg("%s: interp: %s", label, E.msg);
  assert_int_equal(rc, 0);
  double worst = 0;
  for (int j = 0; j < f->n_outs; j++) {
    const ir_node *n = &f->nodes[f->outs[j].node];
    const double *r = ref[f->outs[j].node];
    int64_t cnt = ir_numel(&n->type);
    if (n->type.dtype == IR_I32) {
      for (int64_t k = 0; k < cnt; k++)
        if (((int32_t *)jo[j])[k] != (int32_t)r[k])
          fail_msg("%s: output %s[%lld]: %d vs %d", label, f->outs[j].name,
                   (long long)k, ((int32_t *)jo[j])[k], (int32_t)r[k]);
      continue;
    }
    int64_t at;
    double e = out_error(jo[j], r, cnt, &at);
    if (e > tol && cancellation_error(f, dl, &ref64, r, j, jo[j], tol, label) < 0)
      fail_msg("%s (%s): output \"%s\"[%lld]: jit %.9g vs interp %.9g, "
               "error %.3g > %.3g",
               label, fuse ? "fused" : "unfused", f->outs[j].name,
               (long long)at, ((float *)jo[j])[at], r[at], e, tol);
    if (e > worst) worst = e;
  }
  ir_values_free(f, ref);
  if (ref64) ir_values_free(f, ref64);
  for (int i = 0; i < nl; i++) free((void *)jl[i]);
  for (int v = 0; v < f->n_nodes; v++) free(dl[v]);
  for (int j = 0; j < f->n_outs; j++) free(jo[j]);
  free(dl);
  free(jl);
  free(jo);
  free(arena);
  cg_free(m);
  return worst;
}

/* ---- one table entry per op ---- */

typedef int (*build_fn)(ir_func *f, ir_op op, int var); /* -1: no such var */
typedef struct {
  build_fn build;
  double tol;
  int imax; /* i32 leaves in [0, imax) */
} op_case;

/* a builder that has not run out of variants by MAXVAR fails the test
 * (guards against one that never returns -1; none is cut silently) */
enum { MAXVAR = 96 };
static const double TOL = 1e-5, TOL_APPROX = 2e-5, TOL_SCAN = 1e-4,
                    TOL_GRAD = 1e-4;

static int b_input(ir_func *f, ir_op op, int var) {
  (void)op;
  if (var == 0) out(f, "y", input(f, "x", F(3, 5)));
  else if (var == 1) out(f, "y", input(f, "idx", I(7)));
  else if (var == 2) { /* an input twice as output, and unused inputs */
    input(f, "unused", F(3));
    int x = input(f, "x", F(4));
    out(f, "a", x);
    out(f, "b", x);
  } else return -1;
  return 0;
}

static int b_param(ir_func *f, ir_op op, int var) {
  (void)op;
  if (var > 1) return -1;
  int w = param(f, "w", F(3, 4));
  if (var == 0) out(f, "w", w);
  else out(f, "y", bin(f, IR_OP_MUL, w, input(f, "x", F(3, 4))));
  return 0;
}

static int b_const(ir_func *f, ir_op op, int var) {
  (void)op;
  if (var > 1) return -1;
  int c = OK(ir_leaf(f, IR_OP_CONST, "table", F(5, 3), &E));
  if (var == 0) { /* with data: cg_run gets NULL and uses the module's copy */
    float d[15];
    for (int i = 0; i < 15; i++) d[i] = 0.25f * (float)i - 1;
    OK(ir_set_const_data(f, c, d, &E));
  }
  out(f, "y", bin(f, IR_OP_ADD, c, input(f, "x", F(3))));
  return 0;
}

static int b_fill(ir_func *f, ir_op op, int var) {
  (void)op;
  switch (var) {
  case 0: out(f, "y", fill(f, 2.5, F(3, 4))); break;
  case 1: out(f, "y", bin(f, IR_OP_MUL, input(f, "x", F(3, 4)), fill(f, -1.5, F(1)))); break;
  case 2: { /* i32 fill feeding gather: materialised */
    int t = input(f, "table", F(6, 2));
    out(f, "y", op2(f, IR_OP_GATHER, t, fill(f, 4, I(2, 3)), (ir_attrs){0}));
    break;
  }
  case 3: out(f, "y", mm(f, fill(f, 0.5, F(2, 3)), input(f, "x", F(3, 4)), 0, 0)); break;
  case 4: out(f, "y", fill(f, 7, I(5))); break;
  default: return -1;
  }
  return 0;
}

static int b_unary(ir_func *f, ir_op op, int var) {
  bool pos = op == IR_OP_LOG || op == IR_OP_SQRT || op == IR_OP_RSQRT;
  const char *nm[2] = {pos ? "pos" : "x", pos ? "logpos" : "wide"};
  if (var == 0) out(f, "y", un(f, op, input(f, nm[0], F(5, 7))));
  else if (var == 1) out(f, "y", un(f, op, input(f, nm[1], F(1000))));
  else if (var == 2) /* a scalar */
    out(f, "y", un(f, op, input(f, nm[0], FS)));
  else return -1;
  return 0;
}

static int b_binary(ir_op op, ir_func *f, ir_type ta, ir_type tb) {
  int a = input(f, "a", ta);
  int b = input(f, op == IR_OP_DIV ? "den" : "b", tb);
  out(f, "y", bin(f, op, a, b));
  return 0;
}

static int b_bin(ir_func *f, ir_op op, int var) {
  switch (var) {
  case 0: return b_binary(op, f, F(4, 6), F(4, 6));
  case 1: return b_binary(op, f, F(4, 6), F(6));
  case 2: return b_binary(op, f, F(3, 1, 5), F(4, 1));
  case 3: return b_binary(op, f, F(1), F(2, 3));
  case 4: return b_binary(op, f, F(2, 1, 3, 1), F(1, 4));
  case 5: return b_binary(op, f, F(67), F(67));
  default: return -1;
  }
}

/* rank 2, 3, 4 with every ta/tb (M 5, K 7, N 3), then larger shapes that
 * cover the tiles of the vector code: row blocks of 4 and their rest,
 * column pairs, a single vector and a partial one. */
static int b_matmul(ir_func *f, ir_op op, int var) {
  (void)op;
  /* {M, K, N, rank}. {3, 13, 10} with tb: dot products along K, a K % 8
   * tail; {16, 16, 24} with tb: B transposed by 8x8 blocks along both
   * axes; N = 1: computed transposed (one row against A); N <= 8: one
   * block of up to 12 rows (M = 8), else blocks of 8 rows, overlapping
   * for M = 13, five of them for M = 40 (N = 5: a partial vector);
   * N 16, 32, 48 (and 64): 16-lane vectors on an AVX-512 host (one, a
   * pair, a pair and one), B transposed by 8x8 blocks into them; N 2-4
   * of M >= 8 rows: dot products along K, N at once (K 128 and 24: 16
   * and 8 lanes), or with ta out^T = B^T A, transposed after (M 64, 32) */
  static const int big[][4] = {{9, 13, 29, 2}, {64, 8, 64, 2}, {1, 16, 8, 2},
                                {12, 33, 17, 2}, {3, 13, 10, 2}, {16, 16, 24, 2},
                                {16, 64, 1, 2},  {64, 16, 1, 2}, {9, 5, 1, 3},
                                {8, 64, 8, 2},   {13, 5, 8, 3},  {13, 16, 16, 2},
                                {7, 24, 32, 2},  {20, 16, 48, 3}, {40, 16, 5, 2},
                                {64, 128, 4, 2}, {32, 24, 3, 2}, {9, 16, 2, 3}};
  enum { NBIG = sizeof big / sizeof big[0] };
  if (var >= 12 + NBIG * 4) return -1;
  bool ta = var & 1, tb = var & 2;
  int rank = var < 12 ? 2 + var / 4 : 2, M = 5, K = 7, N = 3;
  if (var >= 12) {
    const int *s = big[(var - 12) / 4];
    M = s[0], K = s[1], N = s[2], rank = s[3];
  }
  ir_type a = F(ta ? K : M, ta ? M : K), b = F(tb ? N : K, tb ? K : N);
  if (rank > 2) { /* batch dims in front */
    ir_type a2 = {IR_F32, rank, {0}}, b2 = {IR_F32, rank, {0}};
    for (int i = 0; i < rank - 2; i++) a2.dim[i] = b2.dim[i] = 2 + i;
    a2.dim[rank - 2] = a.dim[0], a2.dim[rank - 1] = a.dim[1];
    b2.dim[rank - 2] = b.dim[0], b2.dim[rank - 1] = b.dim[1];
    a = a2, b = b2;
  }
  out(f, "y", mm(f, input(f, "a", a), input(f, "b", b), ta, tb));
  return 0;
}

static int b_permute(ir_func *f, ir_op op, int var) {
  (void)op;
  ir_attrs a = {0};
  int x;
  switch (var) {
  case 0: x = input(f, "x", F(3, 4)); a.perm[0] = 1; break;
  case 1: x = input(f, "x", F(2, 3, 4)); a.perm[0] = 2, a.perm[1] = 0, a.perm[2] = 1; break;
  case 2: x = input(f, "x", F(2, 3, 4, 5)); a.perm[0] = 3, a.perm[1] = 1, a.perm[2] = 0, a.perm[3] = 2; break;
  case 3: x = input(f, "idx", I(3, 4)); a.perm[0] = 1; break;
  case 4: { /* fused into an add */
    x = input(f, "x", F(3, 4));
    a.perm[0] = 1;
    int p = op1(f, IR_OP_PERMUTE, x, a);
    out(f, "y", bin(f, IR_OP_ADD, p, input(f, "b", F(4, 3))));
    return 0;
  }
  default: return -1;
  }
  if (var == 0) a.perm[1] = 0;
  if (var == 3) a.perm[1] = 0;
  out(f, "y", op1(f, IR_OP_PERMUTE, x, a));
  return 0;
}

static int b_reshape(ir_func *f, ir_op op, int var) {
  (void)op;
  switch (var) {
  case 0: out(f, "y", opt_(f, IR_OP_RESHAPE, input(f, "x", F(3, 4)), F(12))); break;
  case 1: out(f, "y", un(f, IR_OP_EXP, opt_(f, IR_OP_RESHAPE, input(f, "x", F(2, 6)), F(3, 4)))); break;
  case 2: { /* of a computed value, used by matmul and as an output */
    int e = un(f, IR_OP_TANH, input(f, "x", F(2, 6)));
    int r = opt_(f, IR_OP_RESHAPE, e, F(4, 3));
    out(f, "r", r);
    out(f, "y", mm(f, r, input(f, "w", F(3, 2)), 0, 0));
    break;
  }
  case 3: out(f, "y", opt_(f, IR_OP_RESHAPE, input(f, "idx", I(2, 3)), I(6))); break;
  default: return -1;
  }
  return 0;
}

static int b_expand(ir_func *f, ir_op op, int var) {
  (void)op;
  switch (var) {
  case 0: out(f, "y", opt_(f, IR_OP_EXPAND, input(f, "x", F(4)), F(3, 4))); break;
  case 1: out(f, "y", opt_(f, IR_OP_EXPAND, input(f, "x", F(3, 1)), F(2, 3, 5))); break;
  case 2: out(f, "y", opt_(f, IR_OP_EXPAND, input(f, "x", F(1)), F(6))); break;
  case 3: { /* fused into a mul */
    int e = opt_(f, IR_OP_EXPAND, input(f, "x", F(3, 1)), F(3, 4));
    out(f, "y", bin(f, IR_OP_MUL, e, input(f, "b", F(3, 4))));
    break;
  }
  case 4: out(f, "y", opt_(f, IR_OP_EXPAND, input(f, "idx", I(2, 1)), I(2, 3))); break;
  default: return -1;
  }
  return 0;
}

static int b_slice(ir_func *f, ir_op op, int var) {
  (void)op;
  ir_type t = F(4, 5, 6);
  switch (var) {
  case 0: case 1: case 2: {
    ir_attrs a = {.axis = var, .start = 1, .end = 3};
    out(f, "y", op1(f, IR_OP_SLICE, input(f, "x", t), a));
    break;
  }
  case 3: { /* two slices of one value fused into a sub */
    int x = input(f, "x", F(4, 6));
    int lo = op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 1, .start = 0, .end = 3});
    int hi = op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 1, .start = 3, .end = 6});
    out(f, "y", bin(f, IR_OP_SUB, lo, hi));
    break;
  }
  case 4: out(f, "y", op1(f, IR_OP_SLICE, input(f, "idx", I(5)), (ir_attrs){.axis = 0, .start = 2, .end = 5})); break;
  case 5: { /* contiguous (an alias at an offset) of a computed value, read
             * by a matmul and through a reshape */
    int t = un(f, IR_OP_TANH, input(f, "x", F(6, 4)));
    int sl = op1(f, IR_OP_SLICE, t, (ir_attrs){.axis = 0, .start = 2, .end = 5});
    out(f, "m", mm(f, sl, input(f, "w", F(4, 3)), 0, 0));
    out(f, "r", opt_(f, IR_OP_RESHAPE, sl, F(12)));
    break;
  }
  case 6: { /* leading size-1 axes: still contiguous */
    int sl = op1(f, IR_OP_SLICE, input(f, "x", F(1, 6, 4)), (ir_attrs){.axis = 1, .start = 3, .end = 5});
    out(f, "y", op1(f, IR_OP_SUM, sl, (ir_attrs){.axis = 2}));
    break;
  }
  default: return -1;
  }
  return 0;
}

static int b_pad(ir_func *f, ir_op op, int var) {
  (void)op;
  if (var == 4) {
    out(f, "y", op1(f, IR_OP_PAD, input(f, "idx", I(2, 3)), (ir_attrs){.axis = 1, .start = 1, .end = 2}));
    return 0;
  }
  if (var > 4) return -1;
  ir_attrs a = {.axis = var % 3, .start = var == 3 ? 0 : 2, .end = 1};
  out(f, "y", op1(f, IR_OP_PAD, input(f, "x", F(3, 4, 2)), a));
  return 0;
}

static int b_concat(ir_func *f, ir_op op, int var) {
  (void)op;
  if (var == 6) {
    int a = input(f, "idx", I(2, 3)), b = input(f, "idx2", I(2, 1));
    out(f, "y", op2(f, IR_OP_CONCAT, a, b, (ir_attrs){.axis = 1}));
    return 0;
  }
  if (var > 6) return -1;
  int n = var < 4 ? var + 1 : 2, axis = var < 4 ? var % 2 : 2;
  int in[4];
  for (int k = 0; k < n; k++) {
    char nm[8];
    snprintf(nm, sizeof nm, "x%d", k);
    in[k] = input(f, nm, axis == 0 ? F(k + 1, 3, 2) : axis == 1 ? F(2, k + 2, 3) : F(2, 3, k + 1));
  }
  if (var == 5) /* the same value twice */
    in[1] = in[0] = un(f, IR_OP_NEG, input(f, "y", F(2, 3, 2)));
  ir_attrs a = {.axis = axis};
  out(f, "y", OK(ir_add(f, IR_OP_CONCAT, in, n, &a, NULL, NULL, &E)));
  return 0;
}

static int b_reduce(ir_func *f, ir_op op, int var) {
  if (var < 3) {
    out(f, "y", op1(f, op, input(f, "x", F(3, 4, 5)), (ir_attrs){.axis = var}));
  } else if (var == 3) {
    out(f, "y", op1(f, op, input(f, "x", F(67)), (ir_attrs){.axis = 0}));
  } else if (var == 4) {
    out(f, "y", op1(f, op, input(f, "x", F(2, 1, 3)), (ir_attrs){.axis = 1}));
  } else if (var == 5) { /* of a fused chain */
    int x = un(f, IR_OP_EXP, input(f, "x", F(6, 33)));
    out(f, "y", op1(f, op, x, (ir_attrs){.axis = 1}));
  } else if (var == 6) { /* of a fused broadcasting product */
    int x = bin(f, IR_OP_MUL, input(f, "x", F(5, 3, 7)), input(f, "b", F(3, 1)));
    out(f, "y", op1(f, op, x, (ir_attrs){.axis = 1}));
  } else if (var == 7) { /* of a fused permute, and its input also read */
    int x = input(f, "x", F(4, 6));
    int pt = op1(f, IR_OP_PERMUTE, x, (ir_attrs){.perm = {1, 0}});
    out(f, "y", op1(f, op, pt, (ir_attrs){.axis = 1}));
    out(f, "z", op1(f, op, un(f, IR_OP_NEG, x), (ir_attrs){.axis = 1}));
  } else {
    return -1;
  }
  return 0;
}

static int b_softmax(ir_func *f, ir_op op, int var) {
  /* the last two: rows in groups (ops_linalg.c ROWS_FROM), with rows
   * left over, partial and whole last vectors */
  static const int sh[][5] = {{2, 4, 9},  {3, 2, 5, 5},   {2, 3, 7},
                              {4, 2, 2, 3, 8}, {2, 1, 6}, {1, 40},
                              {3, 2, 20, 37}, {2, 40, 40}, {2, 130, 133},
                              {3, 2, 131, 136}};
  static const bool causal[] = {0, 1, 1, 1, 1, 0, 1, 1, 1, 1};
  if (var >= 10) return -1;
  ir_type t = {IR_F32, sh[var][0], {0}};
  for (int i = 0; i < t.rank; i++) t.dim[i] = sh[var][i + 1];
  out(f, "y", op1(f, op, input(f, var == 5 ? "wide" : "x", t),
                  (ir_attrs){.causal = causal[var]}));
  return 0;
}

static int b_gather(ir_func *f, ir_op op, int var) {
  ir_attrs a = {0};
  switch (var) {
  case 0: out(f, "y", op2(f, op, input(f, "t", F(10, 4)), input(f, "idx", I(6)), a)); break;
  case 1: out(f, "y", op2(f, op, input(f, "t", F(10)), input(f, "idx", I(2, 3)), a)); break;
  case 2: out(f, "y", op2(f, op, input(f, "t", F(10, 2, 3)), input(f, "idx", I(4)), a)); break;
  case 3: out(f, "y", op2(f, op, input(f, "t", I(10, 3)), input(f, "idx", I(5)), a)); break;
  case 4: out(f, "y", op2(f, op, input(f, "t", F(10, 4)), input(f, "idx", IS), a)); break;
  default: return -1;
  }
  return 0;
}

static int b_scatter(ir_func *f, ir_op op, int var) {
  ir_attrs a = {.n = 10};
  switch (var) {
  case 0: out(f, "y", op2(f, op, input(f, "s", F(12, 4)), input(f, "idx", I(12)), a)); break;
  case 1: out(f, "y", op2(f, op, input(f, "s", F(2, 3, 4)), input(f, "idx", I(2, 3)), a)); break;
  case 2: out(f, "y", op2(f, op, input(f, "s", F(7)), input(f, "idx", I(7)), a)); break;
  default: return -1;
  }
  return 0;
}

static int b_select_row(ir_func *f, ir_op op, int var) {
  ir_attrs a = {0};
  switch (var) {
  case 0: out(f, "y", op2(f, op, input(f, "x", F(7, 5)), input(f, "idx", IS), a)); break;
  case 1: out(f, "y", op2(f, op, input(f, "x", F(7)), input(f, "idx", IS), a)); break;
  case 2: out(f, "y", op2(f, op, input(f, "x", F(7, 2, 3)), input(f, "idx", IS), a)); break;
  default: return -1;
  }
  return 0;
}

static int b_onehot(ir_func *f, ir_op op, int var) {
  if (var == 0) out(f, "y", op1(f, op, input(f, "idx", I(5)), (ir_attrs){.n = 7}));
  else if (var == 1) out(f, "y", op1(f, op, input(f, "idx", I(2, 3)), (ir_attrs){.n = 7}));
  else if (var == 2) out(f, "y", op1(f, op, input(f, "idx", IS), (ir_attrs){.n = 7}));
  else return -1;
  return 0;
}

static int b_xent(ir_func *f, ir_op op, int var) {
  ir_attrs a = {0};
  switch (var) {
  case 0: out(f, "y", op2(f, op, input(f, "x", F(5, 7)), input(f, "idx", I(5)), a)); break;
  case 1: out(f, "y", op2(f, op, input(f, "x", F(7)), input(f, "idx", IS), a)); break;
  case 2: out(f, "y", op2(f, op, input(f, "x", F(2, 3, 7)), input(f, "idx", I(2, 3)), a)); break;
  case 3: out(f, "y", op2(f, op, input(f, "x", F(4, 1)), input(f, "zero", I(4)), a)); break;
  default: return -1;
  }
  return 0;
}

static int b_conv(ir_func *f, ir_op op, int var) {
  /* {L, E, W}: E a multiple of 8 takes explicit vectors (ops_seq.c), with
   * rows whose taps all lie inside and rows checked at either end (L
   * below, at and above W) */
  static const int s[][3] = {{9, 6, 4},  {3, 5, 4},  {16, 8, 1}, {2, 3, 2},
                             {9, 16, 4}, {3, 8, 4},  {5, 24, 3}, {4, 8, 4}};
  if (var >= (int)(sizeof s / sizeof s[0])) return -1;
  int L = s[var][0], E_ = s[var][1], W = s[var][2];
  int a = input(f, "x", F(L, E_));
  if (op == IR_OP_CONV1D_BWD_W)
    out(f, "y", op2(f, op, a, input(f, "g", F(L, E_)), (ir_attrs){.n = W}));
  else
    out(f, "y", op2(f, op, a, input(f, "w", F(E_, W)), (ir_attrs){0}));
  return 0;
}

/* u, delta > 0, A < 0 (as in Mamba), bc */
static int b_scan(ir_func *f, ir_op op, int var) {
  /* E below, at and across the vector widths (16 and 8 lanes, then a
   * tail); 2N a multiple of 8 (the reverse pass sums 8 rows at once), and
   * not */
  static const int s[][3] = {{7, 6, 4}, {33, 16, 16}, {1, 3, 2}, {9, 20, 5}, {5, 12, 8}};
  if (var >= 5) return -1;
  int L = s[var][0], E_ = s[var][1], N = s[var][2];
  int u = input(f, "u", F(L, E_)), d = input(f, "pos_delta", F(L, E_));
  int A = input(f, "neg_A", F(E_, N)), bc = input(f, "bc", F(L, 2 * N));
  if (op == IR_OP_SCAN) {
    int in[4] = {u, d, A, bc};
    out(f, "y", OK(ir_add(f, op, in, 4, NULL, NULL, NULL, &E)));
  } else {
    int ud = op2(f, IR_OP_CONCAT, u, d, (ir_attrs){.axis = 1});
    int in[4] = {ud, A, bc, input(f, "dy", F(L, E_))};
    out(f, "y", OK(ir_add(f, op, in, 4, NULL, NULL, NULL, &E)));
  }
  return 0;
}

/* rope: heads of 8 and 16 (vectors of 4 pairs), of 6 and 2 (pairs one
 * by one); several heads; tables of any values */
static int b_rope(ir_func *f, ir_op op, int var) {
  static const int s[][3] = {{9, 1, 8}, {5, 3, 16}, {7, 2, 6}, {3, 4, 2}};
  if (var >= 4) return -1;
  int L = s[var][0], H = s[var][1], D = s[var][2];
  int in[3] = {input(f, "x", F(L, H, D)), input(f, "cos", F(L, D / 2)),
               input(f, "sin", F(L, D / 2))};
  out(f, "y", OK(ir_add(f, op, in, 3, NULL, NULL, NULL, &E)));
  return 0;
}

static const op_case cases[IR_OP_COUNT] = {
    [IR_OP_INPUT] = {b_input, TOL, 5},
    [IR_OP_PARAM] = {b_param, TOL, 0},
    [IR_OP_CONST] = {b_const, TOL, 0},
    [IR_OP_FILL] = {b_fill, TOL, 0},
    [IR_OP_NEG] = {b_unary, TOL, 0},
    [IR_OP_EXP] = {b_unary, TOL_APPROX, 0},
    [IR_OP_LOG] = {b_unary, TOL_APPROX, 0},
    [IR_OP_SQRT] = {b_unary, TOL, 0},
    [IR_OP_RSQRT] = {b_unary, TOL, 0},
    [IR_OP_RECIP] = {b_unary, TOL, 0},
    [IR_OP_SIGMOID] = {b_unary, TOL_APPROX, 0},
    [IR_OP_SILU] = {b_unary, TOL_APPROX, 0},
    [IR_OP_SOFTPLUS] = {b_unary, TOL_APPROX, 0},
    [IR_OP_TANH] = {b_unary, TOL_APPROX, 0},
    [IR_OP_RELU] = {b_unary, TOL, 0},
    [IR_OP_ADD] = {b_bin, TOL, 0},
    [IR_OP_SUB] = {b_bin, TOL, 0},
    [IR_OP_MUL] = {b_bin, TOL, 0},
    [IR_OP_DIV] = {b_bin, TOL, 0},
    [IR_OP_MAX] = {b_bin, TOL, 0},
    [IR_OP_GT] = {b_bin, TOL, 0},
    [IR_OP_MATMUL] = {b_matmul, TOL, 0},
    [IR_OP_PERMUTE] = {b_permute, TOL, 9},
    [IR_OP_RESHAPE] = {b_reshape, TOL, 9},
    [IR_OP_EXPAND] = {b_expand, TOL, 9},
    [IR_OP_SLICE] = {b_slice, TOL, 9},
    [IR_OP_PAD] = {b_pad, TOL, 9},
    [IR_OP_CONCAT] = {b_concat, TOL, 9},
    [IR_OP_SUM] = {b_reduce, TOL, 0},
    [IR_OP_AMAX] = {b_reduce, TOL, 0},
    [IR_OP_MEAN] = {b_reduce, TOL, 0},
    [IR_OP_SOFTMAX] = {b_softmax, TOL_APPROX, 0},
    [IR_OP_GATHER] = {b_gather, TOL, 10},
    [IR_OP_SCATTER_ADD] = {b_scatter, TOL, 10},
    [IR_OP_SELECT_ROW] = {b_select_row, TOL, 7},
    [IR_OP_ONEHOT] = {b_onehot, TOL, 7},
    [IR_OP_CROSS_ENTROPY] = {b_xent, TOL_APPROX, 7},
    [IR_OP_CONV1D] = {b_conv, TOL, 0},
    [IR_OP_ROPE] = {b_rope, TOL, 0},
    [IR_OP_CONV1D_BWD_X] = {b_conv, TOL, 0},
    [IR_OP_CONV1D_BWD_W] = {b_conv, TOL, 0},
    [IR_OP_SCAN] = {b_scan, TOL_SCAN, 0},
    [IR_OP_SCAN_BWD] = {b_scan, TOL_SCAN, 0},
};

static void every_op_has_a_case(void **state) {
  (void)state;
  for (int op = 0; op < IR_OP_COUNT; op++)
    if (!cases[op].build)
      fail_msg("op %s has no codegen test case", ir_op_name((ir_op)op));
}

static void every_op_matches_interp(void **state) {
  (void)state;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    const op_case *c = &cases[op];
    if (!c->build) fail_msg("op %s has no case", ir_op_name((ir_op)op));
    int nvar = 0;
    double worst = 0;
    for (int var = 0;; var++) {
      ir_func *f = ir_func_new();
      if (c->build(f, (ir_op)op, var) < 0) {
        ir_func_free(f);
        break;
      }
      if (var == MAXVAR) fail_msg("%s: more than %d variants", ir_op_name((ir_op)op), MAXVAR);
      if (ir_verify(f, &E)) fail_msg("%s var %d: %s", ir_op_name((ir_op)op), var, E.msg);
      char label[64];
      snprintf(label, sizeof label, "%s variant %d", ir_op_name((ir_op)op), var);
      for (int fuse = 0; fuse < 2; fuse++) {
        double e = run_compare(f, c->imax, fuse, label, c->tol);
        if (e > worst) worst = e;
      }
      ir_func_free(f);
      nvar++;
    }
    assert_true(nvar > 0);
    print_message("%-14s %2d variants, worst error %.2g (bound %.0e)\n",
                  ir_op_name((ir_op)op), nvar, worst, c->tol);
  }
}

/* ---- fusion ---- */

/* A chain with broadcasting, views, constants, a value used twice inside
 * the loop and an intermediate that is also an output. */
static ir_func *fusion_graph(void) {
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(2, 4, 6)), b = input(f, "b", F(6)),
      w = input(f, "w", F(4, 2));
  int xb = bin(f, IR_OP_MUL, x, b);
  int t = un(f, IR_OP_TANH, xb);
  int sq = bin(f, IR_OP_MUL, t, t); /* t used twice */
  int pw = op1(f, IR_OP_PERMUTE, w, (ir_attrs){.perm = {1, 0}});  /* [2,4] */
  int pr = opt_(f, IR_OP_EXPAND, opt_(f, IR_OP_RESHAPE, pw, F(2, 4, 1)), F(2, 4, 6));
  int y = bin(f, IR_OP_ADD, sq, pr);
  int s = op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 2, .start = 1, .end = 2});
  int z = bin(f, IR_OP_SUB, y, s); /* [2,4,6] - [2,4,1] */
  z = bin(f, IR_OP_MAX, z, fill(f, -0.25, F(1)));
  out(f, "t", t);
  out(f, "z", un(f, IR_OP_SIGMOID, z));
  return f;
}

static void fused_chain_matches(void **state) {
  (void)state;
  ir_func *f = fusion_graph();
  /* a norm: mean(x*x) computes the square inside the reduction loop */
  int x = input(f, "x2", F(6, 16));
  int ms = op1(f, IR_OP_MEAN, bin(f, IR_OP_MUL, x, x), (ir_attrs){.axis = 1});
  out(f, "rms", bin(f, IR_OP_MUL, x, un(f, IR_OP_RSQRT, ms)));
  run_compare(f, 0, true, "fusion graph", TOL_APPROX);
  run_compare(f, 0, false, "fusion graph", TOL_APPROX);
  cg_options on = {0}, off = {.no_fuse = true};
  cg_module *a = cg_compile(f, &on, &E), *b = cg_compile(f, &off, &E);
  assert_non_null(a);
  assert_non_null(b);
  const cg_stats *sa = cg_module_stats(a), *sb = cg_module_stats(b);
  /* fused: t (an output) and z's loop; the permute of w is materialised
   * only because a reshape reads it; the mean (x*x inside its loop), the
   * rsqrt of the mean and the rms output */
  assert_true(sa->n_materialised <= 6); /* + rsqrt of the [6,1] mean */
  assert_true(sb->n_materialised > sa->n_materialised + 5);
  assert_true(sa->n_loops_emitted < sb->n_loops_emitted);
  print_message("fusion: %d loops, %d buffers fused; %d loops, %d buffers unfused\n",
                sa->n_loops_emitted, sa->n_materialised, sb->n_loops_emitted,
                sb->n_materialised);
  cg_free(a);
  cg_free(b);
  ir_func_free(f);
}

/* Corner cases of the fusion rules, each against the interpreter. */
static void fusion_corners(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(3, 4, 5)), b = input(f, "b", F(5));
  /* a chain of views into one add: expand(permute(slice(x))) */
  int sl = op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 2, .start = 1, .end = 4}); /* [3,4,3] */
  int pm = op1(f, IR_OP_PERMUTE, sl, (ir_attrs){.perm = {2, 0, 1}});          /* [3,3,4] */
  int ex = opt_(f, IR_OP_EXPAND, opt_(f, IR_OP_RESHAPE, pm, F(3, 3, 1, 4)), F(3, 3, 2, 4));
  int s1 = op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 1, .start = 0, .end = 2});
  int s2 = op1(f, IR_OP_SLICE, s1, (ir_attrs){.axis = 2, .start = 1, .end = 5}); /* [3,2,4] */
  out(f, "views", bin(f, IR_OP_ADD, ex, s2));
  /* fills through views, into a matmul and into reductions */
  int fe = opt_(f, IR_OP_EXPAND, fill(f, 0.5, F(1, 5)), F(3, 4, 5));
  out(f, "mm_fill", mm(f, un(f, IR_OP_TANH, x), fe, 0, 1));
  out(f, "sum_fill", op1(f, IR_OP_SUM, opt_(f, IR_OP_EXPAND, fill(f, 2, F(1)), F(3, 7)), (ir_attrs){.axis = 1}));
  out(f, "sum_fill2", op1(f, IR_OP_SUM, fill(f, -1.5, F(2, 3)), (ir_attrs){.axis = 0}));
  /* a contiguous slice (an alias) of a fill, and a reduction over one */
  int fs = op1(f, IR_OP_SLICE, fill(f, 3, F(4, 3)), (ir_attrs){.axis = 0, .start = 1, .end = 3});
  out(f, "slice_fill", bin(f, IR_OP_ADD, fs, fs));
  out(f, "sum_slice", op1(f, IR_OP_SUM, op1(f, IR_OP_SLICE, x, (ir_attrs){.axis = 0, .start = 1, .end = 2}),
                          (ir_attrs){.axis = 2}));
  /* one value read by a fused group and by a matmul; a reduction of a
   * broadcast sum whose operand is also an output */
  int t = bin(f, IR_OP_MUL, x, b);
  out(f, "t", t);
  out(f, "red", op1(f, IR_OP_AMAX, bin(f, IR_OP_SUB, t, b), (ir_attrs){.axis = 2}));
  out(f, "mm_t", mm(f, t, opt_(f, IR_OP_EXPAND, b, F(3, 4, 5)), 0, 1));
  /* an output that is a view of a leaf, one that is a fill, and a node
   * that is two outputs */
  out(f, "view_leaf", op1(f, IR_OP_PERMUTE, b, (ir_attrs){.perm = {0}}));
  int z = un(f, IR_OP_NEG, b);
  out(f, "z1", z);
  out(f, "z2", z);
  for (int fuse = 0; fuse < 2; fuse++) run_compare(f, 0, fuse, "fusion corners", TOL);
  ir_func_free(f);
}

/* Nodes whose code is the same (the same op on buffers of the same
 * shapes) share one compiled function, loops and their metadata and all;
 * a different shape gets its own. */
static void twins_share_a_function(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int a = input(f, "wide_a", F(24, 16)), b = input(f, "wide_b", F(24, 16));
  int c = input(f, "wide_c", F(8, 16));
  out(f, "ya", un(f, IR_OP_SILU, a));
  out(f, "yb", un(f, IR_OP_SILU, b));
  out(f, "yc", un(f, IR_OP_SILU, c));
  run_compare(f, 0, true, "twins", TOL_APPROX);
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  const cg_stats *st = cg_module_stats(m);
  print_message("twins: %d functions for 3 nodes\n", st->n_functions);
  assert_int_equal(st->n_functions, 2);
  cg_free(m);
  ir_func_free(f);
}

/* A chain of matmuls: the arena must reuse slots. */
static void arena_reuses_slots(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int h = input(f, "x", F(8, 16));
  int64_t total = 0;
  for (int i = 0; i < 8; i++) {
    char nm[8];
    snprintf(nm, sizeof nm, "w%d", i);
    h = un(f, IR_OP_TANH, mm(f, h, param(f, nm, F(16, 16)), 0, 1));
    total += 2 * 8 * 16 * 4;
  }
  out(f, "y", op1(f, IR_OP_SUM, h, (ir_attrs){.axis = 1}));
  run_compare(f, 0, true, "matmul chain", TOL_GRAD); /* 8 layers deep */
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  size_t arena = cg_arena_size(m);
  assert_true(arena > 0);
  /* at most 3 live [8,16] and one transposed [16,16] weight */
  assert_true(arena <= 3 * 8 * 16 * 4 + 16 * 16 * 4 + 4 * 64);
  assert_true((int64_t)arena < total);
  cg_free(m);
  ir_func_free(f);
}

/* A concat output joining contiguous blocks gets its inputs computed in
 * place (plan.c place_concats) when it is their only reader: not a leaf,
 * an output, a value read elsewhere, or one that appears twice; a concat
 * along a later axis copies. */
static void concat_in_place(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(5, 6)), w = param(f, "w", F(4, 6)), v = param(f, "v", F(3, 6));
  int a = mm(f, x, w, 0, 1), b = mm(f, w, x, 0, 1); /* [5,4], [4,5] */
  int at = mm(f, v, x, 0, 1);                       /* [3,5] */
  int t = un(f, IR_OP_TANH, at), shared = un(f, IR_OP_EXP, at);
  int both = mm(f, x, x, 1, 0);                     /* [6,6], twice below */
  int ins[4] = {b, t, shared, input(f, "y", F(2, 5))}; /* b, t: in place */
  out(f, "rows", OK(ir_add(f, IR_OP_CONCAT, ins, 4, &(ir_attrs){.axis = 0}, NULL, NULL, &E)));
  out(f, "shared", shared);
  int twice[2] = {both, both};
  out(f, "twice", OK(ir_add(f, IR_OP_CONCAT, twice, 2, &(ir_attrs){.axis = 0}, NULL, NULL, &E)));
  int cols[2] = {a, mm(f, x, v, 0, 1)};             /* [5,4] | [5,3]: copied */
  out(f, "cols", OK(ir_add(f, IR_OP_CONCAT, cols, 2, &(ir_attrs){.axis = 1}, NULL, NULL, &E)));
  for (int fuse = 0; fuse < 2; fuse++) run_compare(f, 0, fuse, "concat in place", TOL);
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  assert_int_equal(cg_module_stats(m)->n_placed, 2);
  cg_free(m);
  ir_func_free(f);
}

/* A scan whose output is read from a row on (slices of its last rows: the
 * last layer of a training kernel) computes y only there; one read at a
 * row known at run time (select_row: an evaluation kernel) runs up to it;
 * a scan_bwd whose dy is zero before a row (a pad) skips dy's terms
 * there. Sizes at and across the vector widths, fused and not; the row
 * at run time drawn from 0..L-1 on each compare. */
static void scan_partial_rows(void **state) {
  (void)state;
  static const int sz[][3] = {{7, 6, 4}, {12, 16, 16}, {9, 40, 5}};
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
    int L = sz[i][0], E_ = sz[i][1], N = sz[i][2];
    ir_func *f = ir_func_new();
    int u = input(f, "u", F(L, E_)), d = un(f, IR_OP_SOFTPLUS, input(f, "d", F(L, E_)));
    int A = un(f, IR_OP_NEG, un(f, IR_OP_EXP, input(f, "A_log", F(E_, N))));
    int bc = input(f, "bc", F(L, 2 * N));
    int in[4] = {u, d, A, bc};
    int y = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
    out(f, "last", op1(f, IR_OP_SLICE, y, (ir_attrs){.axis = 0, .start = L - 1, .end = L}));
    out(f, "tail", op1(f, IR_OP_SLICE, y, (ir_attrs){.axis = 0, .start = L - 3, .end = L - 1}));
    int g = op1(f, IR_OP_PAD, input(f, "g", F(2, E_)), (ir_attrs){.axis = 0, .start = L - 2});
    int bin_[4] = {op2(f, IR_OP_CONCAT, u, d, (ir_attrs){.axis = 1}), A, bc, g};
    out(f, "grads", OK(ir_add(f, IR_OP_SCAN_BWD, bin_, 4, NULL, NULL, NULL, &E)));
    /* a second scan read at one row known at run time: the steps up to it */
    int y2 = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
    out(f, "at", op2(f, IR_OP_SELECT_ROW, y2, input(f, "pos", IS), (ir_attrs){0}));
    for (int fuse = 0; fuse < 2; fuse++) run_compare(f, L, fuse, "scan, partial rows", TOL_SCAN);
    ir_func_free(f);
  }
}

/* ---- composite graphs ---- */

/* y = x W^T for W [out, in] */
static int linear(ir_func *f, int x, int w) { return mm(f, x, w, 0, 1); }

static int layernorm(ir_func *f, int x, int L, int d, const char *wname,
                     const char *bname) {
  int mu = op1(f, IR_OP_MEAN, x, (ir_attrs){.axis = 1});
  int xc = bin(f, IR_OP_SUB, x, mu);
  int var = op1(f, IR_OP_MEAN, bin(f, IR_OP_MUL, xc, xc), (ir_attrs){.axis = 1});
  int r = un(f, IR_OP_RSQRT, bin(f, IR_OP_ADD, var, fill(f, 1e-5, F(1))));
  (void)L, (void)d;
  int y = bin(f, IR_OP_MUL, bin(f, IR_OP_MUL, xc, r), param(f, wname, F(d)));
  return bin(f, IR_OP_ADD, y, param(f, bname, F(d)));
}

/* One attention layer with learned positions, a final norm, the readout of
 * the last position and the cross-entropy loss. */
static ir_func *attention_graph(int L, int d, int K) {
  ir_func *f = ir_func_new();
  int tok = input(f, "tokens", I(L));
  int pos = input(f, "position", IS);
  int label = input(f, "label", IS);
  int V = OK(ir_leaf(f, IR_OP_CONST, "embedding.weight", F(K, d), &E));
  float *vd = malloc(sizeof(float) * (size_t)(K * d));
  for (int i = 0; i < K * d; i++) vd[i] = (float)urand(-1, 1);
  OK(ir_set_const_data(f, V, vd, &E));
  free(vd);
  int pe = param(f, "pos_emb.weight", F(L, d));
  int h = bin(f, IR_OP_ADD, op2(f, IR_OP_GATHER, V, tok, (ir_attrs){0}), pe);
  int x = layernorm(f, h, L, d, "layers.0.norm.weight", "layers.0.norm.bias");
  int q = linear(f, x, param(f, "layers.0.mixer.wq.weight", F(d, d)));
  int k = linear(f, x, param(f, "layers.0.mixer.wk.weight", F(d, d)));
  int v = linear(f, x, param(f, "layers.0.mixer.wv.weight", F(d, d)));
  int s = bin(f, IR_OP_MUL, mm(f, q, k, 0, 1), fill(f, 1 / sqrt(d), F(1)));
  int p = op1(f, IR_OP_SOFTMAX, s, (ir_attrs){.causal = true});
  int o = linear(f, mm(f, p, v, 0, 0), param(f, "layers.0.mixer.wo.weight", F(d, d)));
  h = bin(f, IR_OP_ADD, h, o);
  h = layernorm(f, h, L, d, "norm_f.weight", "norm_f.bias");
  int last = opt_(f, IR_OP_RESHAPE, op2(f, IR_OP_SELECT_ROW, h, pos, (ir_attrs){0}), F(1, d));
  int logits = bin(f, IR_OP_ADD, linear(f, last, param(f, "lm_head.weight", F(K, d))),
                   param(f, "lm_head.bias", F(K)));
  logits = opt_(f, IR_OP_RESHAPE, logits, F(K));
  int loss = op2(f, IR_OP_CROSS_ENTROPY, logits, label, (ir_attrs){0});
  out(f, "logits", logits);
  out(f, "loss", loss);
  return f;
}

/* One Mamba-like mixer: in_proj, conv1d + bias, silu, x_proj split into
 * (dt, B, C), dt_proj + softplus, A = -exp(A_log), scan, D skip, silu(z)
 * gate, out_proj; loss = sum of squares. */
static ir_func *mamba_graph(int L, int d, int N) {
  int Ex = 2 * d, R = 2, W = 4;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(L, d));
  int xz = linear(f, x, param(f, "in_proj.weight", F(2 * Ex, d)));
  int xs = op1(f, IR_OP_SLICE, xz, (ir_attrs){.axis = 1, .start = 0, .end = Ex});
  int z = op1(f, IR_OP_SLICE, xz, (ir_attrs){.axis = 1, .start = Ex, .end = 2 * Ex});
  int c = op2(f, IR_OP_CONV1D, xs, param(f, "conv1d.weight", F(Ex, W)), (ir_attrs){0});
  int u = un(f, IR_OP_SILU, bin(f, IR_OP_ADD, c, param(f, "conv1d.bias", F(Ex))));
  int dbc = linear(f, u, param(f, "x_proj.weight", F(R + 2 * N, Ex)));
  int dt = op1(f, IR_OP_SLICE, dbc, (ir_attrs){.axis = 1, .start = 0, .end = R});
  int bc = op1(f, IR_OP_SLICE, dbc, (ir_attrs){.axis = 1, .start = R, .end = R + 2 * N});
  int delta = un(f, IR_OP_SOFTPLUS,
                 bin(f, IR_OP_ADD, linear(f, dt, param(f, "dt_proj.weight", F(Ex, R))),
                     param(f, "dt_proj.bias", F(Ex))));
  int A = un(f, IR_OP_NEG, un(f, IR_OP_EXP, param(f, "A_log", F(Ex, N))));
  int in[4] = {u, delta, A, bc};
  int y = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
  y = bin(f, IR_OP_ADD, y, bin(f, IR_OP_MUL, u, param(f, "D", F(Ex))));
  y = bin(f, IR_OP_MUL, y, un(f, IR_OP_SILU, z));
  int o = linear(f, y, param(f, "out_proj.weight", F(d, Ex)));
  int sq = op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, o, o), (ir_attrs){.axis = 1});
  int loss = opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, sq, (ir_attrs){.axis = 0}), FS);
  out(f, "y", o);
  out(f, "loss", loss);
  return f;
}

static void attention_layer(void **state) {
  (void)state;
  ir_func *f = attention_graph(12, 8, 10);
  for (int fuse = 0; fuse < 2; fuse++)
    print_message("attention: worst error %.2g\n",
                  run_compare(f, 10, fuse, "attention", TOL_APPROX));
  /* without optimisation: the lowering must not rely on any pass */
  passes = "default<O0>";
  run_compare(f, 10, true, "attention at O0", TOL_APPROX);
  passes = NULL;
  ir_func_free(f);
}

static void mamba_chain(void **state) {
  (void)state;
  ir_func *f = mamba_graph(10, 4, 4);
  for (int fuse = 0; fuse < 2; fuse++)
    print_message("mamba: worst error %.2g\n",
                  run_compare(f, 0, fuse, "mamba", TOL_SCAN));
  ir_func_free(f);
}

/* Causal attention with the masked half skipped (plan.c tri/lower,
 * ops_matmul.c): square and rectangular (the last Lq of Lk rows, as the
 * demand pass leaves the last layer), sizes across the tile widths; the
 * forward and its gradient. */
static void causal_skips_masked_half(void **state) {
  (void)state;
  static const int sz[][2] = {{37, 37}, {48, 48}, {5, 20}, {1, 24}, {3, 3}};
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
    int Lq = sz[i][0], Lk = sz[i][1], d = 8;
    ir_func *f = ir_func_new();
    int q = param(f, "q", F(Lq, d)), k = param(f, "k", F(Lk, d)), v = param(f, "v", F(Lk, d));
    int s = bin(f, IR_OP_DIV, mm(f, q, k, 0, 1), fill(f, sqrt(d), F(1)));
    int p = op1(f, IR_OP_SOFTMAX, s, (ir_attrs){.causal = true});
    int o = mm(f, p, v, 0, 0);
    int sq = op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, o, o), (ir_attrs){.axis = 1});
    out(f, "o", o);
    /* a mean over the keys of a causal product stops at the diagonal */
    int w = param(f, "w", F(Lq, Lk));
    out(f, "rowmean", op1(f, IR_OP_MEAN, bin(f, IR_OP_MUL, p, w), (ir_attrs){.axis = 1}));
    out(f, "loss", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, sq, (ir_attrs){.axis = 0}), FS));
    char label[64];
    snprintf(label, sizeof label, "causal %dx%d", Lq, Lk);
    run_compare(f, 0, true, label, TOL_APPROX);
    ir_func *g = ad_grad(f, "loss", &E);
    if (!g) fail_msg("%s", E.msg);
    snprintf(label, sizeof label, "causal %dx%d grad", Lq, Lk);
    run_compare(g, 0, true, label, TOL_GRAD);
    ir_func_free(g);
    ir_func_free(f);
  }
}

/* Scores that only a causal softmax reads are not zeroed past the
 * diagonal (ops_matmul.c only_softmax_reads): with NaNs in the arena the
 * softmax still equals the interpreter (it never reads them), and where
 * another reader multiplies the scores by the softmax's zeros they are
 * zeroed (NaN times 0 would be NaN). Whole rows and partial ones, fused
 * and not. */
static void causal_scores_unread_past_diagonal(void **state) {
  (void)state;
  static const int sz[][2] = {{40, 40}, {20, 37}, {48, 48}};
  arena_byte = 0xFF; /* every float a NaN */
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
    int Lq = sz[i][0], Lk = sz[i][1], d = 8;
    for (int other = 0; other < 2; other++) {
      ir_func *f = ir_func_new();
      int q = param(f, "q", F(Lq, d)), k = param(f, "k", F(Lk, d));
      int s = mm(f, q, k, 0, 1);
      int p = op1(f, IR_OP_SOFTMAX, s, (ir_attrs){.causal = true});
      out(f, "p", p);
      if (other) /* sum(S P): S read past the diagonal, times zeros */
        out(f, "sp", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, s, p), (ir_attrs){.axis = 1}));
      char label[64];
      snprintf(label, sizeof label, "scores %dx%d%s", Lq, Lk, other ? " and S P" : "");
      for (int fuse = 0; fuse < 2; fuse++) run_compare(f, 0, fuse, label, TOL_APPROX);
      ir_func_free(f);
    }
  }
  arena_byte = 0xA5;
}

/* One causal attention layer over h [L, d] (weights named by layer). */
static int attention_block(ir_func *f, int h, int d, int layer) {
  char n[3][32];
  for (int i = 0; i < 3; i++) snprintf(n[i], sizeof n[i], "l%d.w%c.weight", layer, "qkv"[i]);
  int q = linear(f, h, param(f, n[0], F(d, d))), k = linear(f, h, param(f, n[1], F(d, d)));
  int v = linear(f, h, param(f, n[2], F(d, d)));
  int s = bin(f, IR_OP_DIV, mm(f, q, k, 0, 1), fill(f, sqrt(d), F(1)));
  int p = op1(f, IR_OP_SOFTMAX, s, (ir_attrs){.causal = true});
  return bin(f, IR_OP_ADD, h, mm(f, p, v, 0, 0));
}

/* m's leaves made from seed, every i32 leaf pos; NaN floats with nan. */
static const void **seeded_leaves(const ir_func *f, cg_module *m, uint64_t seed, int pos,
                                  bool nan) {
  uint64_t keep = rng;
  rng = seed;
  int nl = cg_n_leaves(m);
  const void **jl = calloc((size_t)nl + 1, sizeof *jl);
  double *buf = NULL;
  for (int i = 0; i < nl; i++) {
    const ir_node *n = &f->nodes[cg_leaf_node(m, i)];
    if (n->op == IR_OP_CONST && n->data) continue; /* cg_run uses n->data */
    int64_t cnt = ir_numel(&n->type);
    buf = realloc(buf, sizeof(double) * (size_t)cnt);
    gen_leaf(n, 0, buf);
    void *p = malloc(4 * (size_t)cnt);
    for (int64_t k = 0; k < cnt; k++) {
      if (n->type.dtype == IR_I32) ((int32_t *)p)[k] = pos;
      else ((float *)p)[k] = nan ? NAN : (float)buf[k];
    }
    jl[i] = p;
  }
  free(buf);
  rng = keep;
  return jl;
}

/* Runs m on leaves made from seed, read at row pos, into outs (one buffer
 * per output), on an arena that a first run on NaN leaves, read at the
 * last row, has used (as a batch's examples reuse one): NaNs where the
 * second run reads what it has not written. */
static void run_seeded(const ir_func *f, cg_module *m, uint64_t seed, int pos, int last,
                       float **outs) {
  int nl = cg_n_leaves(m);
  void *arena = cg_arena_new(m);
  for (int pass = 0; pass < 2; pass++) {
    const void **jl = seeded_leaves(f, m, seed, pass ? pos : last, !pass);
    assert_int_equal(cg_run(m, jl, (void *const *)outs, arena), 0);
    for (int i = 0; i < nl; i++) free((void *)jl[i]);
    free(jl);
  }
  free(arena);
}

/* rows_to_pos: an evaluation kernel of a causal model (two attention
 * layers, the second cut to the row read by the demand pass; a scan read
 * whole) computes the first layer's scores, softmax, weighted values and
 * the scan only up to the row read, and writes zeros after it (upto);
 * the row-wise work that only such readers read (a Mamba-like block: an
 * embedding's gather, an RMS norm, projections, conv1d, silu, softplus,
 * into a scan read whole and one read at the row) stops there too, its
 * later rows left as they were (prefix). The outputs are bit for bit
 * those of the kernel without it, at every row, on an arena used by a
 * run on NaNs before: no needed value reads a row after p. (The zeros themselves are not seen here:
 * the rows after p that the second layer's masked keys read lie in
 * slots that earlier nodes of the same run have refilled with finite
 * values; the zeros keep a NaN of an earlier example out.) Lengths
 * below and above the softmax's row grouping and the matmul's row
 * blocks. */
static void upto_the_row_read(void **state) {
  (void)state;
  static const int lens[] = {5, 13, 130};
  for (size_t li = 0; li < 2 * sizeof lens / sizeof lens[0]; li++) {
    /* Ex 16: conv1d in vectors; 12: its scalar loops */
    int L = lens[li / 2], d = 8, Ex = li % 2 ? 12 : 16, N = 4;
    ir_func *f = ir_func_new();
    int pos = input(f, "pos", IS);
    int h = attention_block(f, attention_block(f, input(f, "x", F(L, d)), d, 0), d, 1);
    out(f, "att", op2(f, IR_OP_SELECT_ROW, h, pos, (ir_attrs){0}));
    /* tokens (every i32 leaf holds the row read) into a table of L + 1
     * rows: not a length of the rows */
    int x2 = op2(f, IR_OP_GATHER, input(f, "table", F(L + 1, d)), input(f, "tokens", I(L)),
                 (ir_attrs){0});
    int ms = op1(f, IR_OP_MEAN, bin(f, IR_OP_MUL, x2, x2), (ir_attrs){.axis = 1});
    int xn = bin(f, IR_OP_MUL, x2, un(f, IR_OP_RSQRT, bin(f, IR_OP_ADD, ms, fill(f, 1e-5, F(1)))));
    int xc = op2(f, IR_OP_CONV1D, linear(f, xn, input(f, "w_in", F(Ex, d))),
                 input(f, "w_conv", F(Ex, 4)), (ir_attrs){0});
    int u = un(f, IR_OP_SILU, xc);
    int dl = un(f, IR_OP_SOFTPLUS, bin(f, IR_OP_ADD, input(f, "d", F(L, Ex)),
                                       linear(f, u, input(f, "w_dt", F(Ex, Ex)))));
    int A = un(f, IR_OP_NEG, un(f, IR_OP_EXP, input(f, "A_log", F(Ex, N))));
    int in[4] = {u, dl, A, linear(f, u, input(f, "w_bc", F(2 * N, Ex)))};
    int y = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
    in[0] = un(f, IR_OP_SILU, y); /* a second scan, read at the row */
    y = OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E));
    out(f, "scan", op2(f, IR_OP_SELECT_ROW, y, pos, (ir_attrs){0}));
    ir_func *dm = ir_pass_demand(f, &E), *g = dm ? ir_optimize(dm, NULL, &E) : NULL;
    if (!g) fail_msg("demand: %s", E.msg);
    cg_module *m[2];
    for (int k = 0; k < 2; k++) {
      m[k] = cg_compile(g, &(cg_options){.rows_to_pos = k}, &E);
      if (!m[k]) fail_msg("compile: %s", E.msg);
    }
    /* upto: the first layer's scores, softmax and values, the scan;
     * prefix: the gather, the mean, its rsqrt ([L,1], a loop of its
     * own), the normed x, the three projections, the conv, silu(u),
     * softplus, silu(y) */
    assert_int_equal(cg_module_stats(m[0])->n_upto, 0);
    assert_int_equal(cg_module_stats(m[1])->n_upto, 4 + 11);
    int ps[] = {0, 1, L / 2, L - 2, L - 1};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
      float *o[2][2];
      for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 2; j++) o[k][j] = calloc(Ex + 1, sizeof(float));
        run_seeded(g, m[k], 1000 + li / 2, ps[pi], L - 1, o[k]);
      }
      for (int j = 0; j < 2; j++) {
        int n = j ? Ex : d;
        for (int i = 0; i < n; i++)
          if (memcmp(&o[0][j][i], &o[1][j][i], sizeof(float)) || !isfinite(o[1][j][i]))
            fail_msg("L %d, row %d, output %d[%d]: %.9g without, %.9g up to the row", L,
                     ps[pi], j, i, o[0][j][i], o[1][j][i]);
      }
      for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2; j++) free(o[k][j]);
    }
    for (int k = 0; k < 2; k++) cg_free(m[k]);
    ir_func_free(g), ir_func_free(dm), ir_func_free(f);
  }
}

/* Runs m on the params of pl and the inputs of in into outs[j], on arena. */
static void run_mixed(const ir_func *f, cg_module *m, const void **pl, const void **in,
                      float **outs, void *arena) {
  int nl = cg_n_leaves(m);
  const void **jl = calloc((size_t)nl + 1, sizeof *jl);
  for (int i = 0; i < nl; i++)
    jl[i] = f->nodes[cg_leaf_node(m, i)].op == IR_OP_INPUT ? in[i] : pl[i];
  assert_int_equal(cg_run(m, jl, (void *const *)outs, arena), 0);
  free(jl);
}

static bool outs_equal(const ir_func *f, float **a, float **b) {
  for (int j = 0; j < f->n_outs; j++)
    if (memcmp(a[j], b[j], 4 * (size_t)ir_numel(&f->nodes[f->outs[j].node].type))) return false;
  return true;
}

/* Room for f's outputs, zeroed; and freed. */
static float **new_outs(const ir_func *f) {
  float **o = calloc((size_t)f->n_outs + 1, sizeof *o);
  for (int j = 0; j < f->n_outs; j++)
    o[j] = calloc((size_t)ir_numel(&f->nodes[f->outs[j].node].type), sizeof(float));
  return o;
}
static void free_outs(const ir_func *f, float **o) {
  for (int j = 0; j < f->n_outs; j++) free(o[j]);
  free(o);
}

/* f compiled with fusion (siblings: want of them) and without: the same
 * bits, and both against the interpreter. */
static void check_accumulating(const ir_func *f, const bool *mask, bool hoist, const char *what);

/* f compiled fused and unfused (no_fuse), both against the interpreter,
 * then on the same leaves bit for bit; count() of the fused module's
 * stats is want, of the unfused one's 0. what: the fused work, for the
 * failure message. */
static void check_fused_same(ir_func *f, int (*count)(const cg_stats *), int want,
                             const char *what) {
  run_compare(f, 0, true, what, TOL_APPROX);
  run_compare(f, 0, false, what, TOL_APPROX);
  cg_module *m[2] = {cg_compile(f, NULL, &E), cg_compile(f, &(cg_options){.no_fuse = true}, &E)};
  if (!m[0] || !m[1]) fail_msg("%s", E.msg);
  assert_int_equal(count(cg_module_stats(m[0])), want);
  assert_int_equal(count(cg_module_stats(m[1])), 0);
  float **o[2];
  const void **l = seeded_leaves(f, m[0], 7, 0, false);
  for (int i = 0; i < 2; i++) {
    o[i] = new_outs(f);
    void *arena = cg_arena_new(m[i]);
    assert_int_equal(cg_run(m[i], l, (void *const *)o[i], arena), 0);
    free(arena);
  }
  if (!outs_equal(f, o[0], o[1])) fail_msg("%s differs", what);
  for (int i = 0; i < cg_n_leaves(m[0]); i++) free((void *)l[i]);
  free(l);
  for (int i = 0; i < 2; i++) free_outs(f, o[i]), cg_free(m[i]);
}

static int siblings_of(const cg_stats *st) { return st->n_siblings; }
static int folded_of(const cg_stats *st) { return st->n_folded; }

static void check_siblings(ir_func *f, int want) {
  check_fused_same(f, siblings_of, want, "a node made in its sibling's loop");
}

/* A sum over an outer axis of a materialised elementwise result is added
 * up in that result's loop (plan.c mark_siblings): over axis 0 of
 * [8,20] and axis 1 of [4,5,20], as bias gradients are. Not: a sum over
 * the innermost axis, a sum that is an output, a second sum of one
 * result, a sum of a softplus that has its sigmoid, a sum of an output. */
static void sums_in_their_operands_loop(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(8, 20)), y = input(f, "y", F(8, 20));
  int p = bin(f, IR_OP_MUL, x, y);
  out(f, "t", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, p, x)));
  out(f, "s0", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, p, (ir_attrs){.axis = 0}), F(20)));
  out(f, "s0b", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, p, (ir_attrs){.axis = 0}), F(20)));
  out(f, "s1", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, p, (ir_attrs){.axis = 1}), F(8)));
  int x3 = input(f, "x3", F(4, 5, 20)), q = un(f, IR_OP_EXP, x3);
  out(f, "q", bin(f, IR_OP_MUL, q, x3));
  out(f, "sq", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, q, (ir_attrs){.axis = 1}), F(4, 20)));
  out(f, "sqo", op1(f, IR_OP_SUM, q, (ir_attrs){.axis = 0}));
  int sp = un(f, IR_OP_SOFTPLUS, x);
  out(f, "g", bin(f, IR_OP_MUL, un(f, IR_OP_SIGMOID, x), y));
  out(f, "sp", bin(f, IR_OP_ADD, sp, y));
  out(f, "ssp", opt_(f, IR_OP_RESHAPE, op1(f, IR_OP_SUM, sp, (ir_attrs){.axis = 0}), F(20)));
  /* a producer that is itself an output (written into the caller's
   * buffer: not unbound) is summed apart; with that buffer accumulating,
   * the sum still reads the new value, not the buffer's total */
  int r = bin(f, IR_OP_SUB, x, bin(f, IR_OP_MUL, y, y));
  out(f, "r", r);
  out(f, "sr", op1(f, IR_OP_SUM, r, (ir_attrs){.axis = 0}));
  check_siblings(f, 3); /* s0 (not s0b), sq, the sigmoid */
  bool *acc = calloc((size_t)f->n_outs, sizeof *acc);
  for (int j = 0; j < f->n_outs; j++) acc[j] = !strcmp(f->outs[j].name, "r");
  check_accumulating(f, acc, false, "a sum's producer that accumulates");
  for (int j = 0; j < f->n_outs; j++) acc[j] = true;
  check_accumulating(f, acc, false, "siblings, every output accumulating");
  free(acc);
  ir_func_free(f);
}

/* A product of a materialised unary result with its own input (silu as
 * x sigmoid(x), the sigmoid kept for the backward) is made in the
 * result's loop (plan.c mark_siblings), either operand order: the same
 * bits as computed apart, both against the interpreter. Not: a product
 * with another tensor, a product whose unary result is an output, a
 * product that is an output. */
static void products_with_their_input(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(8, 20)), y = input(f, "y", F(8, 20)), z = input(f, "z", F(8, 20));
  int w = input(f, "w", F(8, 20));
  int sx = un(f, IR_OP_SIGMOID, x), tz = un(f, IR_OP_TANH, z);
  int px = bin(f, IR_OP_MUL, x, sx), pz = bin(f, IR_OP_MUL, tz, z);
  out(f, "a", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, px, y), (ir_attrs){.axis = 1}));
  out(f, "b", op1(f, IR_OP_SUM, bin(f, IR_OP_ADD, sx, px), (ir_attrs){.axis = 0}));
  out(f, "c", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, pz, y), (ir_attrs){.axis = 1}));
  out(f, "c2", op1(f, IR_OP_SUM, bin(f, IR_OP_ADD, tz, pz), (ir_attrs){.axis = 0}));
  /* the same shapes (each result read by two loops, so materialised),
   * but: times another tensor; the unary result an output; the product
   * an output */
  int sy = un(f, IR_OP_SIGMOID, y), my = bin(f, IR_OP_MUL, w, sy);
  out(f, "d", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, my, x), (ir_attrs){.axis = 1}));
  out(f, "d2", op1(f, IR_OP_SUM, bin(f, IR_OP_ADD, sy, my), (ir_attrs){.axis = 0}));
  int sw = un(f, IR_OP_SIGMOID, w), mw = bin(f, IR_OP_MUL, sw, w);
  out(f, "sw", sw);
  out(f, "e", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, mw, y), (ir_attrs){.axis = 1}));
  out(f, "e2", op1(f, IR_OP_SUM, bin(f, IR_OP_ADD, mw, x), (ir_attrs){.axis = 0}));
  int ey = un(f, IR_OP_EXP, z);
  out(f, "g", bin(f, IR_OP_MUL, ey, z));
  out(f, "g2", op1(f, IR_OP_SUM, bin(f, IR_OP_ADD, ey, x), (ir_attrs){.axis = 0}));
  check_siblings(f, 2); /* px, pz */
  ir_func_free(f);
}

/* A sigmoid of a materialised softplus's input (the softplus's VJP) is
 * made in the softplus's loop from its exp (plan.c mark_siblings): the
 * same values bit for bit as computed apart (no_fuse), both against the
 * interpreter. A sigmoid before its softplus, or a second one, is
 * computed on its own. */
static void softplus_sigmoid_siblings(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(8, 20)), y = input(f, "y", F(8, 20)), z = input(f, "z", F(8, 20));
  out(f, "early", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, un(f, IR_OP_SIGMOID, z), y), (ir_attrs){.axis = 1}));
  int pz = un(f, IR_OP_SOFTPLUS, z), px = un(f, IR_OP_SOFTPLUS, x);
  out(f, "pz", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, pz, y), (ir_attrs){.axis = 0}));
  out(f, "a", op1(f, IR_OP_SUM, px, (ir_attrs){.axis = 1}));
  out(f, "b", op1(f, IR_OP_SUM, px, (ir_attrs){.axis = 0}));
  out(f, "c", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, un(f, IR_OP_SIGMOID, x), y), (ir_attrs){.axis = 1}));
  out(f, "d", bin(f, IR_OP_ADD, un(f, IR_OP_SIGMOID, x), y));
  check_siblings(f, 1);
  ir_func_free(f);
}

/* An add of a matmul's or a convolution's result, its one reader, is
 * made by it as it stores (plan.c fold_adds): a bias row, a whole
 * addend, a chain of two (the second onto the first's bytes), the
 * dot-product path, a partial last vector, conv1d and conv1d_bwd_x, a
 * scan and its skip term u D. The
 * same bits as the add made apart (no_fuse), both against the
 * interpreter. Not: an addend made after the product, a product read
 * twice, a product read as an output, one column (swap). */
static void adds_folded_into_products(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int a = input(f, "a", F(7, 12)), b = input(f, "b", F(12, 20));
  int r = un(f, IR_OP_EXP, input(f, "r", F(7, 20))); /* made before the products */
  out(f, "r", r);
  int m1 = mm(f, a, b, false, false);
  out(f, "bias", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, m1, param(f, "bias", F(20)))));
  int m2 = mm(f, a, b, false, false), s2 = bin(f, IR_OP_ADD, r, m2);
  int m3 = mm(f, a, input(f, "b3", F(20, 12)), false, true), s3 = bin(f, IR_OP_ADD, s2, m3);
  out(f, "chain", un(f, IR_OP_TANH, s3));
  int q = input(f, "q", F(3, 16)), k = input(f, "k", F(20, 16)); /* dot products */
  out(f, "dot", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, mm(f, q, k, false, true),
                                      param(f, "bias_dot", F(1, 20)))));
  int m5 = mm(f, input(f, "a5", F(9, 12)), input(f, "b5", F(12, 5)), false, false);
  out(f, "part", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, param(f, "bias5", F(5)), m5)));
  int w = input(f, "w", F(16, 4));
  int c1 = op2(f, IR_OP_CONV1D, input(f, "x", F(6, 16)), w, (ir_attrs){0});
  out(f, "conv", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, c1, param(f, "cb", F(16)))));
  int g = un(f, IR_OP_EXP, input(f, "gy0", F(6, 16)));
  out(f, "g", g);
  int c2 = op2(f, IR_OP_CONV1D_BWD_X, input(f, "gy", F(6, 16)), w, (ir_attrs){0});
  out(f, "convx", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, g, c2)));
  /* a scan's skip term, u D with D a row: the scan adds it, the product
   * is not made */
  int su = input(f, "su", F(6, 16)), sd = un(f, IR_OP_SOFTPLUS, input(f, "sd", F(6, 16)));
  int sA = un(f, IR_OP_NEG, un(f, IR_OP_EXP, param(f, "sA", F(16, 4))));
  int sin[4] = {su, sd, sA, input(f, "sbc", F(6, 8))};
  int sc = OK(ir_add(f, IR_OP_SCAN, sin, 4, NULL, NULL, NULL, &E));
  out(f, "skip", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, bin(f, IR_OP_MUL, param(f, "sD", F(16)), su), sc)));
  /* not folded */
  int m6 = mm(f, a, b, false, false), late = un(f, IR_OP_EXP, input(f, "late", F(7, 20)));
  out(f, "late", late);
  out(f, "after", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, m6, late)));
  int m7 = mm(f, a, b, false, false);
  out(f, "twice", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, m7, r)));
  out(f, "m7", un(f, IR_OP_SIGMOID, m7));
  int m8 = mm(f, a, b, false, false);
  out(f, "m8", m8);
  out(f, "out", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, m8, r)));
  int m9 = mm(f, input(f, "a9", F(9, 12)), input(f, "b9", F(12, 1)), false, false);
  out(f, "column", un(f, IR_OP_TANH, bin(f, IR_OP_ADD, m9, input(f, "r9", F(9, 1)))));
  check_fused_same(f, folded_of, 8, "an add folded into its product");
  ir_func_free(f);
}

/* cg_options.hoist (plan.c mark_hoist) on h: what depends on params only
 * is made once by cg_prepare and read by every run. After one
 * cg_prepare, runs on other inputs in one arena give bit for bit the
 * outputs of the kernel without hoisting; with one param changed and no
 * cg_prepare, the runs read the old copies if it is one whose work was
 * hoisted (is_hoisted), the new value otherwise; after cg_prepare they
 * agree again (is_hoisted NULL: not tried). want: the hoisted nodes and
 * copies. Both arenas start as NaNs. */
static void check_hoisting(const ir_func *h, int want, bool (*is_hoisted)(const char *)) {
  cg_module *plain = cg_compile(h, NULL, &E), *m = cg_compile(h, &(cg_options){.hoist = true}, &E);
  if (!plain || !m) fail_msg("%s", E.msg);
  assert_int_equal(cg_module_stats(plain)->n_hoisted, 0);
  assert_int_equal(cg_module_stats(m)->n_hoisted, want);
  void *pa = cg_arena_new(plain), *ma = cg_arena_new(m);
  memset(pa, 0xFF, cg_arena_size(plain)); /* NaNs: neither may rely on zeros */
  memset(ma, 0xFF, cg_arena_size(m));
  const void **pl = seeded_leaves(h, m, 1, 0, false), **pl2 = seeded_leaves(h, m, 2, 0, false);
  float **o[2] = {new_outs(h), new_outs(h)};
  assert_int_equal(cg_prepare(plain, pl, pa), 0);
  assert_int_equal(cg_prepare(m, pl, ma), 0);
  const void **in[3];
  for (int e = 0; e < 3; e++) { /* other inputs, the same params */
    in[e] = seeded_leaves(h, m, 100 + (uint64_t)e, 0, false);
    run_mixed(h, plain, pl, in[e], o[0], pa);
    run_mixed(h, m, pl, in[e], o[1], ma);
    if (!outs_equal(h, o[0], o[1])) fail_msg("example %d: hoisted differs", e);
  }
  for (int e = 0; e < 3; e++) {
    for (int i = 0; is_hoisted && i < cg_n_leaves(m); i++) { /* one param new, not prepared */
      const ir_node *n = &h->nodes[cg_leaf_node(m, i)];
      if (n->op != IR_OP_PARAM) continue;
      const void *keep = pl[i];
      pl[i] = pl2[i];
      run_mixed(h, plain, pl, in[e], o[0], pa);
      run_mixed(h, m, pl, in[e], o[1], ma);
      bool hoisted = is_hoisted(n->name);
      if (outs_equal(h, o[0], o[1]) == hoisted)
        fail_msg("%s new, not prepared: %s", n->name,
                 hoisted ? "the kernel did not read the prepared copy" : "the kernel differs");
      assert_int_equal(cg_prepare(m, pl, ma), 0);
      run_mixed(h, m, pl, in[e], o[1], ma);
      if (!outs_equal(h, o[0], o[1])) fail_msg("example %d: %s new, prepared: differs", e, n->name);
      pl[i] = keep;
      assert_int_equal(cg_prepare(m, pl, ma), 0);
    }
    for (int i = 0; i < cg_n_leaves(m); i++) free((void *)in[e][i]);
    free(in[e]);
  }
  for (int i = 0; i < cg_n_leaves(m); i++) free((void *)pl[i]), free((void *)pl2[i]);
  free(pl), free(pl2);
  free_outs(h, o[0]), free_outs(h, o[1]);
  free(pa), free(ma);
  cg_free(plain), cg_free(m);
}

static bool mamba_hoisted(const char *name) {
  return strstr(name, "proj.weight") || !strcmp(name, "A_log") || !strcmp(name, "conv1d.weight");
}

static bool all_hoisted(const char *name) { return name != NULL; }

/* A Mamba block and its gradient; a chain of products whose first
 * weight is exp(w0), a value many later ones would reuse the slot of. */
static void hoisted_work_prepared_once(void **state) {
  (void)state;
  ir_func *f = mamba_graph(8, 8, 4);
  ir_func *g = ad_grad(f, "loss", &E);
  if (!g) fail_msg("%s", E.msg);
  /* forward: A = -exp(A_log) and the copies of the four projections'
   * weights, of A^T and of the conv1d's w^T; the gradient adds
   * exp(A_log) (its VJP reads it), the scan_bwd's A^T, conv1d_bwd_x's
   * w^T and dt_proj's weight padded (rows of 2 to a vector) for the
   * product that takes the gradient back through it */
  check_hoisting(f, 7, mamba_hoisted);
  check_hoisting(g, 11, mamba_hoisted);
  ir_func_free(g), ir_func_free(f);
  /* E 32: on an AVX-512 host the scans run block by block, the reverse
   * one's partial sums kept per step, zeroed by the prep entry only */
  f = mamba_graph(8, 16, 4);
  if (!(g = ad_grad(f, "loss", &E))) fail_msg("%s", E.msg);
  check_hoisting(g, 11, NULL);
  ir_func_free(g), ir_func_free(f);
  f = ir_func_new();
  int h = input(f, "x", F(8, 16));
  for (int i = 0; i < 6; i++) {
    char nm[8];
    snprintf(nm, sizeof nm, "w%d", i);
    int w = param(f, nm, F(16, 16));
    h = un(f, IR_OP_TANH, mm(f, h, i ? w : un(f, IR_OP_EXP, w), 0, i > 0));
  }
  out(f, "y", op1(f, IR_OP_SUM, h, (ir_attrs){.axis = 1}));
  check_hoisting(f, 6, all_hoisted); /* exp(w0) (no copy: not tb), 5 copies */
  ir_func_free(f);
  /* a product of params only, as the sink pass leaves a first layer's
   * projection of the embedding (ir/sink.c): hoisted whole, its copy of
   * W^T in a scratch slot while the prep entry runs (10 rows: fewer
   * than 8 take dot products, no copy); then gathered */
  f = ir_func_new();
  int t = mm(f, param(f, "tab", F(10, 16)), param(f, "wp", F(12, 16)), 0, 1);
  int x = op2(f, IR_OP_GATHER, t, input(f, "idx", I(8)), (ir_attrs){0});
  out(f, "y", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, un(f, IR_OP_TANH, x), input(f, "x", F(8, 12))),
                  (ir_attrs){.axis = 1}));
  check_hoisting(f, 1, all_hoisted);
  ir_func_free(f);
  /* conv1d and conv1d_bwd_x read w^T from the prep entry, in the vector
   * path (E 16) and the scalar one (E 12) */
  for (int E = 12; E <= 16; E += 4) {
    f = ir_func_new();
    int w = param(f, "w", F(E, 3));
    out(f, "y", op2(f, IR_OP_CONV1D, input(f, "x", F(6, E)), w, (ir_attrs){0}));
    out(f, "dx", op2(f, IR_OP_CONV1D_BWD_X, input(f, "gy", F(6, E)), w, (ir_attrs){0}));
    check_hoisting(f, 2, all_hoisted);
    ir_func_free(f);
  }
}

/* cg_options.accumulate on f with the outputs `mask` marks (hoist: with
 * cg_options.hoist too): each marked output is added into its buffer,
 * twice over two runs, giving bit for bit buf + y + y of the plain
 * kernel's y; the others are stored. */
static void check_accumulating(const ir_func *f, const bool *mask, bool hoist, const char *what) {
  cg_module *plain = cg_compile(f, NULL, &E);
  cg_module *m = cg_compile(f, &(cg_options){.accumulate = mask, .hoist = hoist}, &E);
  if (!plain || !m) fail_msg("%s: %s", what, E.msg);
  const void **jl = seeded_leaves(f, m, 7, 0, false);
  void *pa = cg_arena_new(plain), *ma = cg_arena_new(m);
  float **y = calloc((size_t)f->n_outs, sizeof *y), **o = calloc((size_t)f->n_outs, sizeof *o),
        **start = calloc((size_t)f->n_outs, sizeof *start);
  for (int j = 0; j < f->n_outs; j++) {
    int64_t n = ir_numel(&f->nodes[f->outs[j].node].type);
    y[j] = calloc((size_t)n, sizeof(float));
    o[j] = malloc(sizeof(float) * (size_t)n);
    start[j] = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) start[j][i] = o[j][i] = (float)urand(-2, 2);
  }
  assert_int_equal(cg_prepare(plain, jl, pa), 0);
  assert_int_equal(cg_prepare(m, jl, ma), 0);
  assert_int_equal(cg_run(plain, jl, (void *const *)y, pa), 0);
  for (int run = 1; run <= 2; run++) {
    assert_int_equal(cg_run(m, jl, (void *const *)o, ma), 0);
    for (int j = 0; j < f->n_outs; j++)
      for (int64_t i = 0, n = ir_numel(&f->nodes[f->outs[j].node].type); i < n; i++) {
        float want = mask[j] ? start[j][i] + y[j][i] : y[j][i];
        if (mask[j] && run == 2) want += y[j][i];
        if (memcmp(&want, &o[j][i], sizeof want))
          fail_msg("%s, run %d: output %s[%lld] = %.9g, want %.9g (%s)", what, run,
                   f->outs[j].name, (long long)i, o[j][i], want,
                   mask[j] ? "added" : "stored");
      }
  }
  for (int j = 0; j < f->n_outs; j++) free(y[j]), free(o[j]), free(start[j]);
  free(y), free(o), free(start);
  for (int i = 0; i < cg_n_leaves(m); i++) free((void *)jl[i]);
  free(jl);
  free(pa), free(ma);
  cg_free(plain), cg_free(m);
}

/* Outputs of every kind accumulate: a matmul, an elementwise group, a
 * sum, a reshape (an alias), a param (a leaf), a concat whose parts are
 * computed in its buffer (in a slot of its own now) and one that copies,
 * a node that is two outputs (one added, one stored), a value also read
 * by another node; and a Mamba block's gradient with hoisting. Every
 * output marked, and every other one. An i32 output cannot accumulate. */
static void outputs_accumulate(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(5, 6)), w = param(f, "w", F(4, 6)), v = param(f, "v", F(3, 6));
  int b = mm(f, w, x, 0, 1), at = mm(f, v, x, 0, 1); /* [4,5], [3,5] */
  int t = un(f, IR_OP_TANH, at), shared = un(f, IR_OP_EXP, at);
  int ins[3] = {b, t, shared};
  out(f, "rows", OK(ir_add(f, IR_OP_CONCAT, ins, 3, &(ir_attrs){.axis = 0}, NULL, NULL, &E)));
  out(f, "shared", shared);
  int a = mm(f, x, w, 0, 1); /* [5,4] */
  int cols[2] = {a, mm(f, x, v, 0, 1)};
  out(f, "cols", OK(ir_add(f, IR_OP_CONCAT, cols, 2, &(ir_attrs){.axis = 1}, NULL, NULL, &E)));
  out(f, "a", a);
  out(f, "a again", a);
  out(f, "flat", opt_(f, IR_OP_RESHAPE, a, F(20)));
  out(f, "w", w);
  out(f, "sum", op1(f, IR_OP_SUM, bin(f, IR_OP_MUL, a, a), (ir_attrs){.axis = 1}));
  bool all[9], half[9], none[9] = {0};
  for (int j = 0; j < f->n_outs; j++) all[j] = true, half[j] = j % 2;
  check_accumulating(f, all, false, "every output");
  check_accumulating(f, half, false, "every other output");
  for (int j = 0; j < f->n_outs; j++) half[j] = !half[j];
  check_accumulating(f, half, false, "the other outputs");
  check_accumulating(f, none, false, "none");
  cg_module *m = cg_compile(f, &(cg_options){.accumulate = all}, &E);
  assert_non_null(m);
  assert_int_equal(cg_module_stats(m)->n_placed, 2); /* rows: b and t */
  cg_free(m);
  ir_func_free(f);

  f = mamba_graph(8, 8, 4);
  ir_func *g = ad_grad(f, "loss", &E);
  if (!g) fail_msg("%s", E.msg);
  bool *mask = calloc((size_t)g->n_outs, sizeof *mask);
  for (int j = 0; j < g->n_outs; j++) mask[j] = !strncmp(g->outs[j].name, "grad.", 5);
  check_accumulating(g, mask, true, "mamba's gradients");
  free(mask);
  ir_func_free(g), ir_func_free(f);

  f = ir_func_new();
  int i = input(f, "i", I(3));
  out(f, "x", un(f, IR_OP_EXP, input(f, "x", F(3))));
  out(f, "i", i);
  bool second[2] = {false, true};
  assert_null(cg_compile(f, &(cg_options){.accumulate = second}, &E));
  assert_non_null(strstr(E.msg, "output 1 (i) is i32"));
  ir_func_free(f);
}


/* The gradient function (ad_grad) of each composite, compiled. */
static void gradients_match(void **state) {
  (void)state;
  /* mamba: E = 8 (vector lanes only), 10 (lanes and a tail) and 20 (on
   * AVX-512 block by block, the states kept so: a block of 16 and a
   * tail); the scan and its scan_bwd share the saved states */
  enum { NF = 4 };
  ir_func *fs[NF] = {attention_graph(8, 8, 6), mamba_graph(8, 4, 4), mamba_graph(7, 5, 3),
                     mamba_graph(6, 10, 4)};
  const char *names[NF] = {"attention grad", "mamba grad", "mamba grad E 10", "mamba grad E 20"};
  const double tol[NF] = {TOL_GRAD, TOL_GRAD, TOL_GRAD, TOL_GRAD};
  /* the attention's wq and wk gradients come out of the softmax VJP's
   * cancellation: on some data (2 of the starts 1..24) JIT and f32
   * interpreter differ there by more than TOL_GRAD of their rms, while
   * both are as far from the exact values (run_compare's
   * cancellation_error) */
  for (int i = 0; i < NF; i++) {
    ir_func *g = ad_grad(fs[i], "loss", &E);
    if (!g) fail_msg("%s: ad_grad: %s", names[i], E.msg);
    for (int fuse = 0; fuse < 2; fuse++)
      print_message("%s: %d nodes, %d outputs, worst error %.2g\n", names[i],
                    g->n_nodes, g->n_outs,
                    run_compare(g, 6, fuse, names[i], tol[i]));
    ir_func_free(g);
    ir_func_free(fs[i]);
  }
}

/* ---- index behaviour out of range ---- */

static void out_of_range_indices(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int t = input(f, "t", F(4, 2)), idx = input(f, "idx", I(3));
  out(f, "g", op2(f, IR_OP_GATHER, t, idx, (ir_attrs){0}));
  out(f, "s", op2(f, IR_OP_SCATTER_ADD, input(f, "src", F(3, 2)), idx, (ir_attrs){.n = 4}));
  out(f, "o", op1(f, IR_OP_ONEHOT, idx, (ir_attrs){.n = 4}));
  out(f, "r", op2(f, IR_OP_SELECT_ROW, t, input(f, "p", IS), (ir_attrs){0}));
  out(f, "x", op2(f, IR_OP_CROSS_ENTROPY, t, input(f, "lab", I(4)), (ir_attrs){0}));
  cg_module *m = cg_compile(f, NULL, &E);
  if (!m) fail_msg("%s", E.msg);
  float tv[8] = {0, 1, 10, 11, 20, 21, 30, 31}, src[6] = {1, 2, 3, 4, 5, 6};
  int32_t iv[3] = {-1, 2, 9}, p = 7, lab[4] = {0, 1, -3, 1};
  float g[6], s[8], o[12], r[2], x[4];
  const void *lv[] = {tv, iv, src, &p, lab};
  void *ov[] = {g, s, o, r, x};
  assert_int_equal(cg_n_leaves(m), 5);
  void *arena = cg_arena_new(m);
  /* misses: gather 2, scatter 2, onehot 2, select_row 1, labels 1 */
  assert_int_equal(cg_run(m, lv, ov, arena), 8);
  /* gather clamps: -1 -> row 0, 9 -> row 3 */
  float g_want[6] = {0, 1, 20, 21, 30, 31};
  for (int i = 0; i < 6; i++) assert_true(g[i] == g_want[i]);
  /* scatter drops: only idx 2 (src row 1) lands */
  float s_want[8] = {0, 0, 0, 0, 3, 4, 0, 0};
  for (int i = 0; i < 8; i++) assert_true(s[i] == s_want[i]);
  /* onehot: zero rows for the misses */
  for (int j = 0; j < 3; j++)
    for (int k = 0; k < 4; k++)
      assert_true(o[j * 4 + k] == (j == 1 && k == 2 ? 1.0f : 0.0f));
  assert_true(r[0] == 30 && r[1] == 31); /* p = 7 clamps to row 3 */
  /* label -3 clamps to class 0: lse(20, 21) - 20 */
  double lse = 21 + log1p(exp(-1.0));
  assert_true(fabs(x[2] - (lse - 20)) < 1e-5);
  /* the interpreter refuses the same input */
  double *dl[32] = {0};
  double dt[8], di[3], ds[6], dp = 7, dlab[4];
  for (int i = 0; i < 8; i++) dt[i] = tv[i];
  for (int i = 0; i < 3; i++) di[i] = iv[i];
  for (int i = 0; i < 6; i++) ds[i] = src[i];
  for (int i = 0; i < 4; i++) dlab[i] = lab[i];
  dl[cg_leaf_node(m, 0)] = dt, dl[cg_leaf_node(m, 1)] = di;
  dl[cg_leaf_node(m, 2)] = ds, dl[cg_leaf_node(m, 3)] = &dp;
  dl[cg_leaf_node(m, 4)] = dlab;
  assert_null(ir_interp(f, IR_PREC_F32, (const double *const *)dl, &E));
  free(arena);
  cg_free(m);
  ir_func_free(f);
}

/* A confident, correct prediction has a tiny loss; it must keep its
 * relative accuracy (the interpreter's double log(1 + 1e-12) does not, so
 * the reference here is log1p of the sum without the max's term). */
static void cross_entropy_small_loss(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int lg = input(f, "x", F(4, 5)), lb = input(f, "label", I(4));
  out(f, "y", op2(f, IR_OP_CROSS_ENTROPY, lg, lb, (ir_attrs){0}));
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  float x[20], y[4];
  int32_t lab[4] = {2, 0, 4, 1};
  for (int j = 0; j < 4; j++)
    for (int k = 0; k < 5; k++) x[j * 5 + k] = (float)urand(-3, 3);
  x[2] = 25, x[5] = 30, x[14] = 18.5f, x[6] = 30; /* row 1: a tie at 30 */
  const void *lv[] = {x, lab};
  void *ov[] = {y};
  void *arena = cg_arena_new(m);
  assert_int_equal(cg_run(m, lv, ov, arena), 0);
  for (int j = 0; j < 4; j++) {
    const float *r = x + j * 5;
    double mx = r[0], rest = -1;
    for (int k = 1; k < 5; k++) mx = fmax(mx, r[k]);
    for (int k = 0; k < 5; k++) rest += exp((double)r[k] - mx);
    double want = log1p(rest) + (mx - r[lab[j]]);
    /* bound: x - m rounded to float perturbs each term by ~1e-6 */
    if (!(fabs(y[j] - want) <= 4e-6 * fabs(want)))
      fail_msg("row %d: %.9g, want %.9g", j, (double)y[j], want);
  }
  assert_true(y[0] < 1e-8 && y[0] > 0);
  free(arena);
  cg_free(m);
  ir_func_free(f);
}

/* cg_run: NULL stands for a const's own data, nothing else. */
static void null_leaves(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int c = OK(ir_leaf(f, IR_OP_CONST, "c", F(2), &E));
  int k = OK(ir_leaf(f, IR_OP_CONST, "k", F(2), &E)); /* no data */
  OK(ir_set_const_data(f, c, (float[]){1, 2}, &E));
  int x = input(f, "x", F(2));
  out(f, "y", bin(f, IR_OP_ADD, bin(f, IR_OP_MUL, x, c), k));
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  float xv[2] = {3, 4}, kv[2] = {10, 20}, y[2];
  void *ov[] = {y};
  void *arena = cg_arena_new(m);
  assert_int_equal(cg_run(m, (const void *[]){NULL, kv, xv}, ov, arena), 0);
  assert_true(y[0] == 13 && y[1] == 28);
  assert_int_equal(cg_run(m, (const void *[]){NULL, NULL, xv}, ov, arena), -1);
  assert_int_equal(cg_run(m, (const void *[]){NULL, kv, NULL}, ov, arena), -1);
  free(arena);
  cg_free(m);
  ir_func_free(f);
}

/* ---- the approximations against libm ---- */

typedef struct {
  const char *name;
  ir_op op;
  double (*ref)(double);
  double lo, hi; /* dense range tested */
  double max_ulp;
} approx_case;

static double r_exp(double x) { return exp(x); }
static double r_log(double x) { return log(x); }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_silu(double x) { return x / (1 + exp(-x)); }
static double r_softplus(double x) { return fmax(x, 0) + log1p(exp(-fabs(x))); }
static double r_tanh(double x) { return tanh(x); }

/* Error in units of the last place of the float nearest the reference. */
static double ulps(float got, double ref) {
  float rf = (float)ref;
  if (isnan(ref)) return isnan(got) ? 0 : INFINITY;
  if (isinf(rf)) return got == rf ? 0 : INFINITY;
  double a = fabs((double)rf);
  if (a < FLT_MIN) a = FLT_MIN; /* denormals: ulp of the smallest normal */
  double ulp = nextafterf((float)a, INFINITY) - (float)a;
  return fabs((double)got - ref) / ulp;
}

/* flushed: the default kernels (denormals flushed, the lean exp of
 * sigmoid, silu and softplus): denormal inputs read as 0, and results
 * below FLT_MIN (or built from an exp(-|x|) below it, |x| > 87) may come
 * out as 0 or as a tiny normal: judged absolutely. */
static void approximations(bool flushed) {
  static const approx_case ac[] = {
      {"exp", IR_OP_EXP, r_exp, -103.9, 88.7, 2},
      {"log", IR_OP_LOG, r_log, 0, 3e38, 2},
      {"sigmoid", IR_OP_SIGMOID, r_sigmoid, -88, 88, 3},
      {"silu", IR_OP_SILU, r_silu, -88, 88, 3},
      {"softplus", IR_OP_SOFTPLUS, r_softplus, -88, 88, 3},
      {"tanh", IR_OP_TANH, r_tanh, -20, 20, 4},
  };
  enum { CHUNK = 1 << 16, POINTS = 1 << 22 };
  float *x = malloc(sizeof(float) * CHUNK), *y = malloc(sizeof(float) * CHUNK);
  for (size_t c = 0; c < sizeof ac / sizeof ac[0]; c++) {
    ir_func *f = ir_func_new();
    out(f, "y", un(f, ac[c].op, input(f, "x", F(CHUNK))));
    cg_options keep = {.denormals = !flushed}; /* IEEE denormals, as libm */
    cg_module *m = cg_compile(f, &keep, &E);
    if (!m) fail_msg("%s", E.msg);
    void *arena = cg_arena_new(m);
    double worst = 0, at = 0;
    /* dense over the float bit patterns of [lo, hi] (log: every positive
     * magnitude incl. denormals), plus uniform points */
    for (int64_t k = 0; k < POINTS; k += CHUNK) {
      for (int i = 0; i < CHUNK; i++) {
        int64_t t = k + i;
        if (ac[c].op == IR_OP_LOG) {
          uint32_t bits = (uint32_t)(1 + t * (0x7f7fffffu / POINTS));
          memcpy(&x[i], &bits, 4);
        } else if (t & 1) {
          x[i] = (float)(ac[c].lo + (ac[c].hi - ac[c].lo) * (double)t / POINTS);
        } else { /* small magnitudes, where relative error is hardest */
          x[i] = (float)((t & 2 ? -1 : 1) * ldexp(1.0 + urand(0, 1), -(int)(t % 40)));
        }
      }
      const void *lv[] = {x};
      void *ov[] = {y};
      assert_int_equal(cg_run(m, lv, ov, arena), 0);
      for (int i = 0; i < CHUNK; i++) {
        double r = ac[c].ref((double)x[i]);
        if (flushed && x[i] != 0 && fabsf(x[i]) < FLT_MIN) continue; /* reads as 0 */
        /* exp(-|x|) below FLT_MIN is flushed: silu's x e loses it whole */
        if (flushed && fabsf(x[i]) > 87 && fabs((double)y[i] - r) <= 200 * FLT_MIN) continue;
        if (flushed && fabs(r) < 2 * FLT_MIN && fabs((double)y[i] - r) <= 2 * FLT_MIN)
          continue;
        double e = ulps(y[i], r);
        if (e > worst) worst = e, at = x[i];
      }
    }
    print_message("%-8s max error %.2f ulp (at x = %.9g) over %d points%s\n",
                  ac[c].name, worst, at, POINTS, flushed ? ", flushed" : "");
    if (worst > ac[c].max_ulp)
      fail_msg("%s: %.2f ulp at x = %.9g > %.0f", ac[c].name, worst, at, ac[c].max_ulp);
    /* special values */
    static const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f,
                               -1e-45f, 1e-40f, FLT_MAX, -FLT_MAX, 89.0f, -89.0f,
                               88.72f, -87.3f, -103.0f, -104.0f, -200.0f, 1.0f};
    int ns = (int)(sizeof sp / sizeof sp[0]);
    memcpy(x, sp, sizeof sp);
    for (int i = ns; i < CHUNK; i++) x[i] = 1;
    const void *lv[] = {x};
    void *ov[] = {y};
    cg_run(m, lv, ov, arena);
    for (int i = 0; i < ns; i++) {
      double r = ac[c].ref((double)sp[i]);
      double e = ulps(y[i], r);
      /* a denormal result has few bits: judged absolutely */
      double tiny = flushed ? 2 * FLT_MIN : 1e-40;
      if (flushed && (fabs(sp[i]) < FLT_MIN && sp[i] != 0))
        continue; /* a denormal input reads as 0 */
      if (flushed && fabsf(sp[i]) > 87 && isfinite(sp[i]) &&
          fabs((double)y[i] - r) <= 200 * FLT_MIN)
        continue; /* as above */
      if (e > ac[c].max_ulp && !(fabs(r) < 2 * FLT_MIN && fabs((double)y[i] - r) < tiny))
        fail_msg("%s(%g) = %.9g, want %.9g", ac[c].name, (double)sp[i],
                 (double)y[i], r);
    }
    free(arena);
    cg_free(m);
    ir_func_free(f);
  }
  free(x);
  free(y);
}

static void approximations_vs_libm(void **state) {
  (void)state;
  approximations(false);
}

static void approximations_flushed(void **state) {
  (void)state;
  approximations(true);
}

/* The scan's decay a = exp(delta A), computed as 2^((delta log2 e) A)
 * (mathfn.c), read through a scan of two steps: with u = (1, 0), delta =
 * (1, |x|), A = sign(x), B = (1, 0) and C = (0, 1), y[1] = a_1 h_0 = exp(x).
 * Besides the table and polynomial (about 1 ulp; under 2 in the AVX-512
 * form, its 32nds with a degree-2 polynomial), rounding delta log2 e
 * and the product costs up to |x| 2^-24 relative each: at most 2 + 2|x|
 * ulp. A named cpu takes the generic forms (no x86 intrinsics), which
 * the host otherwise never runs. */
static void scan_decay(bool flushed, const char *cpu) {
  enum { W = 1 << 16, POINTS = 1 << 21 };
  ir_func *f = ir_func_new();
  int in[4] = {input(f, "u", F(2, W)), input(f, "delta", F(2, W)), input(f, "A", F(W, 1)),
               input(f, "bc", F(2, 2))};
  out(f, "y", OK(ir_add(f, IR_OP_SCAN, in, 4, NULL, NULL, NULL, &E)));
  cg_options o = {.denormals = !flushed, .cpu = cpu};
  cg_module *m = cg_compile(f, &o, &E);
  if (!m) fail_msg("%s", E.msg);
  void *arena = cg_arena_new(m);
  float *u = malloc(sizeof(float) * 2 * W), *dl = malloc(sizeof(float) * 2 * W);
  float *A = malloc(sizeof(float) * W), *x = malloc(sizeof(float) * W);
  float *y = malloc(sizeof(float) * 2 * W), bc[4] = {1, 0, 0, 1};
  double worst = 0, at = 0;
  for (int64_t k = 0; k < POINTS; k += W) {
    for (int i = 0; i < W; i++) {
      int64_t t = k + i;
      x[i] = t & 1 ? (float)(-103.0 + 191.0 * (double)t / POINTS) /* [-103, 88] */
                   : (float)((t & 2 ? -1 : 1) * ldexp(1.0 + urand(0, 1), -(int)(t % 40)));
      u[i] = 1, u[W + i] = 0, dl[i] = 1, dl[W + i] = fabsf(x[i]);
      A[i] = x[i] < 0 ? -1.0f : 1.0f;
    }
    const void *lv[] = {u, dl, A, bc};
    void *ov[] = {y};
    assert_int_equal(cg_run(m, lv, ov, arena), 0);
    for (int i = 0; i < W; i++) {
      double r = exp((double)x[i]), got = y[W + i];
      if (x[i] > 88.37f) { /* saturates: finite and at least exp(88.37) */
        if (!(isfinite(got) && got >= 2.4e38)) fail_msg("exp(%g) = %g", (double)x[i], got);
        continue;
      }
      if (r < 2 * FLT_MIN && fabs(got - r) <= 2 * FLT_MIN) continue; /* flushed */
      double e = ulps((float)got, r), bound = 2 + 2 * fabs((double)x[i]);
      if (e > bound) fail_msg("decay exp(%.9g) = %.9g, want %.9g (%.1f ulp > %.1f)",
                              (double)x[i], got, r, e, bound);
      if (e / bound > worst) worst = e / bound, at = x[i];
    }
  }
  /* NaN stays NaN (x = NaN A); far below the range: 0; far above: at
   * least 2^127.49 (the flushed form saturates there, cg_exp overflows to
   * inf), never a wrapped exponent field */
  for (int i = 0; i < W; i++) u[i] = 1, u[W + i] = 0, dl[i] = 1, dl[W + i] = 1, A[i] = -1;
  A[0] = NAN;
  dl[W + 1] = 300, dl[W + 2] = 126.5f / 1.44269504f, dl[W + 3] = 3e38f;
  for (int i = 4; i <= 6; i++) A[i] = 1;
  dl[W + 4] = 88.5f, dl[W + 5] = 300, dl[W + 6] = 3e38f;
  /* below the range at every scale (where the AVX-512 form's rounding to
   * 32nds and its exact remainder part ways, and where x rounds
   * coarser than 1); -inf from A (delta = inf would make y NaN through
   * delta u = inf 0) */
  const float below[] = {1e5f, 2e5f, 5e5f, 1e6f, 3e6f, 2e7f, 1e30f};
  enum { NB = sizeof below / sizeof below[0] };
  for (int i = 0; i < NB; i++) dl[W + 7 + i] = below[i];
  A[7 + NB] = -INFINITY, dl[W + 7 + NB] = 0.5f;
  const void *lv[] = {u, dl, A, bc};
  void *ov[] = {y};
  assert_int_equal(cg_run(m, lv, ov, arena), 0);
  if (!isnan(y[W])) fail_msg("decay of NaN: %g", (double)y[W]);
  for (int i = 1; i <= 7 + NB; i++)
    if (!(i >= 4 && i <= 6) && !(fabsf(y[W + i]) <= 2 * FLT_MIN))
      fail_msg("exp(%g) = %g (case %d%s%s)", (double)(dl[W + i] * A[i]), (double)y[W + i], i,
               flushed ? ", flushed" : "", cpu ? ", generic forms" : "");
  for (int i = 4; i <= 6; i++)
    if (!(y[W + i] >= 2.3e38f)) fail_msg("exp(%g) = %g", (double)dl[W + i], (double)y[W + i]);
  print_message("scan decay: worst %.2f of the bound (at x = %.9g)%s%s\n", worst, at,
                flushed ? ", flushed" : "", cpu ? ", generic forms" : "");
  free(u), free(dl), free(A), free(x), free(y);
  free(arena);
  cg_free(m);
  ir_func_free(f);
}

static void scan_decay_vs_libm(void **state) {
  (void)state;
  scan_decay(false, NULL);
  scan_decay(true, NULL);
  scan_decay(true, "x86-64-v3");
}

/* ---- text dumps, timing, threads ---- */

static void llvm_ir_and_asm(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  out(f, "y", un(f, IR_OP_EXP, bin(f, IR_OP_ADD, input(f, "x", F(1024)),
                                   input(f, "b", F(1024)))));
  cg_options o = {.cpu = "x86-64-v3"};
  char *low = cg_llvm_ir(f, &o, CG_STAGE_LOWERED, &E);
  char *opt = cg_llvm_ir(f, &o, CG_STAGE_OPT, &E);
  char *as = cg_asm(f, &o, &E);
  if (!low || !opt || !as) fail_msg("%s", E.msg);
  assert_non_null(strstr(low, "define i32 @recall_kernel(ptr"));
  assert_non_null(strstr(low, "noalias"));
  assert_null(strstr(low, "<8 x float>"));
  /* vectorised at AVX2 width, exp inline (no libm call) */
  assert_non_null(strstr(opt, "<8 x float>"));
  assert_null(strstr(opt, "@expf"));
  assert_null(strstr(opt, "@llvm.exp."));
  assert_non_null(strstr(as, "ymm"));
  assert_non_null(strstr(as, "recall_kernel:"));
  free(low);
  free(opt);
  free(as);
  ir_func_free(f);
}

/* Loops computing an exp ask the vectoriser for 2 interleaved vectors
 * (ops_ew.c), unless the innermost loop is too short for two rounds
 * (exp over [64,16] plus a broadcast [16]: 16 steps); others do not. */
static void interleave_hints(void **state) {
  (void)state;
  static const struct {
    int rows, cols;
    bool bcast, exp, hint;
  } cs[] = {{1, 1024, false, true, true}, {64, 16, true, true, false},
            {1, 1024, false, false, false}, {16, 64, true, true, true}};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    ir_func *f = ir_func_new();
    int x = input(f, "x", F(cs[i].rows, cs[i].cols));
    int b = cs[i].bcast ? input(f, "b", F(cs[i].cols)) : input(f, "b", F(cs[i].rows, cs[i].cols));
    int y = bin(f, IR_OP_ADD, x, b);
    out(f, "y", cs[i].exp ? un(f, IR_OP_EXP, y) : y);
    char *low = cg_llvm_ir(f, NULL, CG_STAGE_LOWERED, &E);
    if (!low) fail_msg("%s", E.msg);
    bool hint = strstr(low, "!\"llvm.loop.interleave.count\", i32 2}") != NULL;
    if (hint != cs[i].hint)
      fail_msg("case %zu: interleave hint %s", i, hint ? "present" : "missing");
    free(low);
    ir_func_free(f);
  }
}

/* x / c for a constant c is x * fl(1/c) when 1/c is a normal float:
 * no divide in the IR, within 1.5 ulp of the quotient; by 0 or by a c
 * whose reciprocal overflows it stays a divide (inf, NaN as the
 * interpreter gives them).  */
static void div_by_constant(void **state) {
  (void)state;
  static const struct {
    double c;
    bool mul;
  } cs[] = {{2.8284271247461903, true}, {3.0, true}, {-0.1, true},
            {0.0, false}, {1e38, false}};
  enum { N = 4096 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  for (int i = 0; i < N; i++) x[i] = (float)urand(-100, 100);
  x[0] = 0.0f, x[1] = 1.0f;
  for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
    ir_func *f = ir_func_new();
    int xi = input(f, "x", F(N));
    out(f, "y", bin(f, IR_OP_DIV, xi, fill(f, cs[k].c, FS)));
    char *ll = cg_llvm_ir(f, NULL, CG_STAGE_OPT, &E);
    if (!ll) fail_msg("%s", E.msg);
    bool has_div = strstr(ll, "fdiv") != NULL;
    if (has_div == cs[k].mul) fail_msg("c = %g: fdiv %s", cs[k].c, has_div ? "kept" : "gone");
    free(ll);
    cg_module *m = cg_compile(f, NULL, &E);
    if (!m) fail_msg("%s", E.msg);
    const void *lv[] = {x};
    void *ov[] = {y};
    void *arena = cg_arena_new(m);
    assert_int_equal(cg_run(m, lv, ov, arena), 0);
    float cf = (float)cs[k].c;
    for (int i = 0; i < N; i++) {
      double q = (double)x[i] / cf;
      if (!cs[k].mul) {
        float want = x[i] / cf;
        if (fabsf(want) < FLT_MIN && want != 0) want = copysignf(0.0f, want); /* FTZ */
        if (memcmp(&want, &y[i], 4) != 0 && !(isnan(want) && isnan(y[i])))
          fail_msg("c = %g: %g / c = %g, want %g", cs[k].c, x[i], y[i], want);
        continue;
      }
      if (q == 0) {
        assert_true(y[i] == 0);
        continue;
      }
      double ulp = ldexp(1.0, ilogb(q) - 23);
      if (fabs(y[i] - q) > 1.5 * ulp)
        fail_msg("c = %g: %.9g / c = %.9g, exact %.12g (%.2f ulp)", cs[k].c, x[i],
                 y[i], q, fabs(y[i] - q) / ulp);
    }
    free(arena);
    cg_free(m);
    ir_func_free(f);
  }
  free(x);
  free(y);
}

static void compile_time(void **state) {
  (void)state;
  ir_func *f = attention_graph(16, 8, 16);
  cg_module *m = cg_compile(f, NULL, &E); /* warm: LLJIT exists */
  assert_non_null(m);
  cg_free(m);
  m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  const cg_stats *st = cg_module_stats(m);
  print_message("attention (%d nodes): lower %.1f ms, opt %.1f ms, jit %.1f ms; "
                "%d loops, %d buffers, %d fused, arena %zu bytes in %d slots\n",
                f->n_nodes, st->lower_ms, st->opt_ms, st->jit_ms,
                st->n_loops_emitted, st->n_materialised, st->n_fused,
                st->arena_bytes, st->n_slots);
  assert_true(st->lower_ms + st->opt_ms + st->jit_ms < 5000);
  cg_free(m);
  ir_func_free(f);
}

/* Compiles in parallel threads give the same kernels as serial ones. */
typedef struct {
  const ir_func *f;
  cg_module *m;
} compile_job;

static void *compile_one(void *p) {
  compile_job *j = p;
  ir_error err;
  j->m = cg_compile(j->f, NULL, &err);
  return NULL;
}

static void parallel_compiles(void **state) {
  (void)state;
  enum { NT = 4 };
  ir_func *fs[2] = {attention_graph(8, 8, 6), mamba_graph(8, 4, 4)};
  compile_job jobs[NT];
  pthread_t th[NT];
  for (int t = 0; t < NT; t++) {
    jobs[t] = (compile_job){fs[t % 2], NULL};
    pthread_create(&th[t], NULL, compile_one, &jobs[t]);
  }
  for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
  for (int t = 0; t < NT; t++) assert_non_null(jobs[t].m);
  /* same inputs through the kernels of threads t and t+2, and a serial one */
  for (int t = 0; t < 2; t++) {
    const ir_func *f = fs[t];
    cg_module *ser = cg_compile(f, NULL, &E);
    assert_non_null(ser);
    int nl = cg_n_leaves(ser);
    const void **lv = calloc((size_t)nl, sizeof *lv);
    for (int i = 0; i < nl; i++) {
      const ir_node *n = &f->nodes[cg_leaf_node(ser, i)];
      int64_t cnt = ir_numel(&n->type);
      if (n->op == IR_OP_CONST && n->data) continue;
      void *p = calloc((size_t)cnt, 4);
      for (int64_t k = 0; k < cnt; k++)
        if (n->type.dtype == IR_F32) ((float *)p)[k] = (float)urand(-0.5, 0.5);
      lv[i] = p;
    }
    void *outs[3][16];
    cg_module *ms[3] = {jobs[t].m, jobs[t + 2].m, ser};
    for (int k = 0; k < 3; k++) {
      void *arena = cg_arena_new(ms[k]);
      for (int j = 0; j < f->n_outs; j++)
        outs[k][j] = calloc((size_t)ir_numel(&f->nodes[f->outs[j].node].type), 4);
      assert_int_equal(cg_run(ms[k], lv, outs[k], arena), 0);
      free(arena);
    }
    for (int j = 0; j < f->n_outs; j++) {
      size_t sz = 4 * (size_t)ir_numel(&f->nodes[f->outs[j].node].type);
      assert_memory_equal(outs[0][j], outs[2][j], sz);
      assert_memory_equal(outs[1][j], outs[2][j], sz);
      for (int k = 0; k < 3; k++) free(outs[k][j]);
    }
    for (int i = 0; i < nl; i++) free((void *)lv[i]);
    free(lv);
    cg_free(ser);
  }
  for (int t = 0; t < NT; t++) cg_free(jobs[t].m);
  ir_func_free(fs[0]);
  ir_func_free(fs[1]);
}

/* A kernel split into units (modules optimised and compiled on threads
 * of their own, linked by the JIT) computes the same bits as one module:
 * each node's code is the same whatever unit it lands in. The gradient
 * of the mamba chain has enough node functions for 4 units. */
static void split_units_match(void **state) {
  (void)state;
  ir_func *f0 = mamba_graph(8, 4, 4);
  ir_func *f = ad_grad(f0, "loss", &E);
  if (!f) fail_msg("ad_grad: %s", E.msg);
  enum { NU = 4 };
  cg_module *ms[NU];
  for (int u = 0; u < NU; u++) {
    cg_options o = {.compile_threads = u + 1};
    ms[u] = cg_compile(f, &o, &E);
    if (!ms[u]) fail_msg("%d units: %s", u + 1, E.msg);
    assert_int_equal(cg_module_stats(ms[u])->n_units, u + 1);
  }
  int nl = cg_n_leaves(ms[0]);
  const void **lv = calloc((size_t)nl, sizeof *lv);
  for (int i = 0; i < nl; i++) {
    const ir_node *n = &f->nodes[cg_leaf_node(ms[0], i)];
    int64_t cnt = ir_numel(&n->type);
    void *p = calloc((size_t)cnt, 4);
    for (int64_t k = 0; k < cnt; k++)
      if (n->type.dtype == IR_F32) ((float *)p)[k] = (float)urand(-0.5, 0.5);
    lv[i] = p;
  }
  void **outs[NU];
  for (int u = 0; u < NU; u++) {
    outs[u] = calloc((size_t)f->n_outs, sizeof *outs[u]);
    void *arena = cg_arena_new(ms[u]);
    for (int j = 0; j < f->n_outs; j++)
      outs[u][j] = calloc((size_t)ir_numel(&f->nodes[f->outs[j].node].type), 4);
    assert_int_equal(cg_run(ms[u], lv, (void *const *)outs[u], arena), 0);
    free(arena);
  }
  for (int j = 0; j < f->n_outs; j++) {
    size_t sz = 4 * (size_t)ir_numel(&f->nodes[f->outs[j].node].type);
    for (int u = 1; u < NU; u++) assert_memory_equal(outs[u][j], outs[0][j], sz);
  }
  for (int u = 0; u < NU; u++) {
    for (int j = 0; j < f->n_outs; j++) free(outs[u][j]);
    free(outs[u]);
    cg_free(ms[u]);
  }
  for (int i = 0; i < nl; i++) free((void *)lv[i]);
  free(lv);
  /* and against the interpreter, split as this machine splits it */
  run_compare(f, 6, true, "mamba grad, split", TOL_GRAD);
  ir_func_free(f);
  ir_func_free(f0);
}

/* Profile counters: cycles land on materialised nodes only. */
static void profile_counts(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(32, 32));
  int e = un(f, IR_OP_EXP, x); /* a matmul reads it: a loop of its own */
  int m = mm(f, e, x, 0, 0);
  out(f, "y", op1(f, IR_OP_SUM, un(f, IR_OP_NEG, m), (ir_attrs){.axis = 1}));
  cg_options o = {.profile = true};
  cg_module *k = cg_compile(f, &o, &E);
  assert_non_null(k);
  cg_module *plain = cg_compile(f, NULL, &E);
  assert_null(cg_profile(plain));
  cg_free(plain);
  float xv[1024], yv[32];
  for (int i = 0; i < 1024; i++) xv[i] = (float)urand(-1, 1);
  const void *lv[] = {xv};
  void *ov[] = {yv};
  void *arena = cg_arena_new(k);
  for (int r = 0; r < 10; r++) assert_int_equal(cg_run(k, lv, ov, arena), 0);
  uint64_t *pc = cg_profile(k);
  assert_non_null(pc);
  assert_true(pc[e] > 0 && pc[m] > 0);
  assert_true(pc[x] == 0);
  assert_true(pc[m + 1] == 0); /* the neg: fused into the sum */
  assert_true(pc[m + 2] > 0);
  free(arena);
  cg_free(k);
  ir_func_free(f);
}

typedef struct {
  const cg_module *m;
  const float *x;
  float y[256];
  int rc;
} job;

static void *run_job(void *p) {
  job *j = p;
  void *arena = cg_arena_new(j->m);
  for (int k = 0; k < 200; k++) {
    const void *lv[] = {j->x};
    void *ov[] = {j->y};
    j->rc |= cg_run(j->m, lv, ov, arena);
  }
  free(arena);
  return NULL;
}

/* Two threads share one kernel with their own arenas. */
static void reentrant(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int x = input(f, "x", F(16, 16));
  int h = un(f, IR_OP_TANH, mm(f, x, x, 0, 0));
  out(f, "y", mm(f, h, x, 1, 0));
  cg_module *m = cg_compile(f, NULL, &E);
  assert_non_null(m);
  float xa[256], xb[256];
  for (int i = 0; i < 256; i++) xa[i] = (float)urand(-1, 1), xb[i] = (float)urand(-1, 1);
  job a = {m, xa, {0}, 0}, b = {m, xb, {0}, 0}, a1 = {m, xa, {0}, 0};
  pthread_t ta, tb;
  pthread_create(&ta, NULL, run_job, &a);
  pthread_create(&tb, NULL, run_job, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  run_job(&a1);
  assert_int_equal(a.rc | b.rc, 0);
  assert_memory_equal(a.y, a1.y, sizeof a.y);
  assert_memory_not_equal(a.y, b.y, sizeof a.y);
  cg_free(m);
  ir_func_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_op_has_a_case),
      cmocka_unit_test(every_op_matches_interp),
      cmocka_unit_test(fused_chain_matches),
      cmocka_unit_test(fusion_corners),
      cmocka_unit_test(softplus_sigmoid_siblings),
      cmocka_unit_test(sums_in_their_operands_loop),
      cmocka_unit_test(products_with_their_input),
      cmocka_unit_test(adds_folded_into_products),
      cmocka_unit_test(twins_share_a_function),
      cmocka_unit_test(upto_the_row_read),
      cmocka_unit_test(hoisted_work_prepared_once),
      cmocka_unit_test(outputs_accumulate),
      cmocka_unit_test(arena_reuses_slots),
      cmocka_unit_test(concat_in_place),
      cmocka_unit_test(scan_partial_rows),
      cmocka_unit_test(attention_layer),
      cmocka_unit_test(mamba_chain),
      cmocka_unit_test(gradients_match),
      cmocka_unit_test(causal_skips_masked_half),
      cmocka_unit_test(causal_scores_unread_past_diagonal),
      cmocka_unit_test(out_of_range_indices),
      cmocka_unit_test(cross_entropy_small_loss),
      cmocka_unit_test(null_leaves),
      cmocka_unit_test(approximations_vs_libm),
      cmocka_unit_test(approximations_flushed),
      cmocka_unit_test(scan_decay_vs_libm),
      cmocka_unit_test(llvm_ir_and_asm),
      cmocka_unit_test(interleave_hints),
      cmocka_unit_test(div_by_constant),
      cmocka_unit_test(compile_time),
      cmocka_unit_test(reentrant),
      cmocka_unit_test(parallel_compiles),
      cmocka_unit_test(split_units_match),
      cmocka_unit_test(profile_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
