/* interp.c — the reference interpreter: the meaning of every op, written
 * for clarity. Every JIT kernel and every VJP rule is checked against it.
 *
 * Values are dense row-major double arrays, one per node. Each op is
 * computed in double; under IR_PREC_F32 every f32 result is then rounded to
 * float, so the interpreter models a float32 machine that is exact within
 * an op (i32 values are exact integers and are never rounded). Layout ops
 * view shapes left-padded to rank 4, so each is four nested loops. */
#include "ir.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { R4 = IR_MAX_RANK };

typedef struct {
  int64_t d[R4];
} dims4;

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) {
    fprintf(stderr, "recall: out of memory\n");
    abort();
  }
  return p;
}

/* The shape left-padded with 1s to rank 4. */
static dims4 pad4(const ir_type *t) {
  dims4 s;
  int off = R4 - t->rank;
  for (int i = 0; i < R4; i++) s.d[i] = i < off ? 1 : t->dim[i - off];
  return s;
}

/* Row-major strides of a padded shape. */
static void strides4(const dims4 *s, int64_t st[R4]) {
  st[R4 - 1] = 1;
  for (int i = R4 - 2; i >= 0; i--) st[i] = st[i + 1] * s->d[i + 1];
}

/* Strides that read `in` broadcast to `out` (0 along stretched axes). */
static void bcast4(const ir_type *in, const ir_type *out, int64_t st[R4]) {
  dims4 di = pad4(in), dout = pad4(out);
  strides4(&di, st);
  for (int i = 0; i < R4; i++)
    if (di.d[i] != dout.d[i]) st[i] = 0;
}

/* dst[dst_st . i] = src[src_st . i] for every index i of dims d. */
static void copy4(double *dst, const int64_t ds[R4], const double *src,
                  const int64_t ss[R4], const dims4 *d) {
  for (int64_t i = 0; i < d->d[0]; i++)
    for (int64_t j = 0; j < d->d[1]; j++)
      for (int64_t k = 0; k < d->d[2]; k++)
        for (int64_t l = 0; l < d->d[3]; l++)
          dst[i * ds[0] + j * ds[1] + k * ds[2] + l * ds[3]] =
              src[i * ss[0] + j * ss[1] + k * ss[2] + l * ss[3]];
}

/* Round to the nearest float (ties to even), saturating to ±inf the way a
 * float conversion does, without the undefined out-of-range cast. */
static double round_f32(double x) {
  if (isfinite(x) && fabs(x) > FLT_MAX) {
    /* the midpoint between FLT_MAX and 2^128 rounds to even, i.e. to inf */
    double mid = 0x1.ffffffp127;
    if (fabs(x) >= mid) return copysign(INFINITY, x);
    return copysign(FLT_MAX, x);
  }
  return (double)(float)x;
}

/* Reads an index value: an integer in [0, n) or an error such as
 * "gather: index 17 out of range for table of 16 rows (%5)". */
static int get_index(double x, int n, int *out, const char *op,
                     const char *what, const char *pre, const char *post,
                     int id, ir_error *err) {
  if (!(x >= 0 && x < n)) {
    ir_err(err, "%s: %s %g out of range for %s%d%s (%%%d)", op, what, x, pre, n,
           post, id);
    return -1;
  }
  if (x != floor(x)) {
    ir_err(err, "%s: %s %g is not an integer (%%%d)", op, what, x, id);
    return -1;
  }
  *out = (int)x;
  return 0;
}

/* ---- elementwise ---- */

static double sigmoid(double x) {
  if (x >= 0) return 1 / (1 + exp(-x));
  double e = exp(x); /* no overflow for very negative x */
  return e / (1 + e);
}

static double unary(ir_op op, double x) {
  switch (op) {
  case IR_OP_NEG: return -x;
  case IR_OP_EXP: return exp(x);
  case IR_OP_LOG: return log(x);
  case IR_OP_SQRT: return sqrt(x);
  case IR_OP_RSQRT: return 1 / sqrt(x);
  case IR_OP_RECIP: return 1 / x;
  case IR_OP_SIGMOID: return sigmoid(x);
  case IR_OP_SILU: return x * sigmoid(x);
  case IR_OP_SOFTPLUS: return fmax(x, 0) + log1p(exp(-fabs(x)));
  case IR_OP_TANH: return tanh(x);
  case IR_OP_RELU: return x < 0 ? 0.0 : x; /* NaN passes through */
  default: return NAN; /* not unary: unreachable, eval() dispatches */
  }
}

static double binary(ir_op op, double a, double b) {
  switch (op) {
  case IR_OP_ADD: return a + b;
  case IR_OP_SUB: return a - b;
  case IR_OP_MUL: return a * b;
  case IR_OP_DIV: return a / b;
  case IR_OP_MAX: return isnan(a) || isnan(b) ? NAN : a >= b ? a : b;
  case IR_OP_GT: return a > b ? 1.0 : 0.0;
  default: return NAN; /* not binary: unreachable, eval() dispatches */
  }
}

static void do_binary(ir_op op, const ir_type *ta, const double *a,
                      const ir_type *tb, const double *b, const ir_type *to,
                      double *out) {
  dims4 d = pad4(to);
  int64_t sa[R4], sb[R4];
  bcast4(ta, to, sa);
  bcast4(tb, to, sb);
  int64_t o = 0;
  for (int64_t i = 0; i < d.d[0]; i++)
    for (int64_t j = 0; j < d.d[1]; j++)
      for (int64_t k = 0; k < d.d[2]; k++)
        for (int64_t l = 0; l < d.d[3]; l++)
          out[o++] = binary(op, a[i * sa[0] + j * sa[1] + k * sa[2] + l * sa[3]],
                            b[i * sb[0] + j * sb[1] + k * sb[2] + l * sb[3]]);
}

/* ---- linear algebra and layout ---- */

static void do_matmul(const ir_type *ta, const double *a, const double *b,
                      const ir_type *to, bool tra, bool trb, double *out) {
  int r = to->rank;
  int64_t m = to->dim[r - 2], n = to->dim[r - 1];
  int64_t k = tra ? ta->dim[r - 2] : ta->dim[r - 1];
  int64_t batch = ir_numel(to) / (m * n);
  for (int64_t bi = 0; bi < batch; bi++) {
    const double *A = a + bi * m * k, *B = b + bi * k * n;
    double *C = out + bi * m * n;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int64_t p = 0; p < k; p++)
          s += (tra ? A[p * m + i] : A[i * k + p]) *
               (trb ? B[j * k + p] : B[p * n + j]);
        C[i * n + j] = s;
      }
  }
}

static void do_permute(const ir_type *ti, const double *x, const ir_type *to,
                       const int *perm, double *out) {
  dims4 di = pad4(ti), d = pad4(to);
  int64_t si[R4], ss[R4], so[R4];
  strides4(&di, si);
  strides4(&d, so);
  int off = R4 - ti->rank;
  for (int i = 0; i < R4; i++) ss[i] = i < off ? 0 : si[perm[i - off] + off];
  copy4(out, so, x, ss, &d);
}

static void do_expand(const ir_type *ti, const double *x, const ir_type *to,
                      double *out) {
  dims4 d = pad4(to);
  int64_t ss[R4], so[R4];
  bcast4(ti, to, ss);
  strides4(&d, so);
  copy4(out, so, x, ss, &d);
}

static void do_slice(const ir_type *ti, const double *x, const ir_type *to,
                     const ir_attrs *a, double *out) {
  dims4 di = pad4(ti), d = pad4(to);
  int64_t si[R4], so[R4];
  strides4(&di, si);
  strides4(&d, so);
  int ax = a->axis + R4 - ti->rank;
  copy4(out, so, x + a->start * si[ax], si, &d);
}

/* Copies x into out (already zero) at `start` along axis: pad and concat. */
static void place(const ir_type *ti, const double *x, const ir_type *to,
                  int axis, int64_t start, double *out) {
  dims4 di = pad4(ti), d = pad4(to);
  int64_t si[R4], so[R4];
  strides4(&di, si);
  strides4(&d, so);
  int ax = axis + R4 - ti->rank;
  copy4(out + start * so[ax], so, x, si, &di);
}

/* ---- reductions: view x as [outer, n, inner] ---- */

static void do_reduce(ir_op op, const ir_type *ti, int axis, const double *x,
                      double *out) {
  int64_t outer = 1, inner = 1, n = ti->dim[axis];
  for (int i = 0; i < axis; i++) outer *= ti->dim[i];
  for (int i = axis + 1; i < ti->rank; i++) inner *= ti->dim[i];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      const double *p = x + o * n * inner + in;
      double acc = p[0];
      for (int64_t j = 1; j < n; j++) {
        double v = p[j * inner];
        if (op == IR_OP_AMAX)
          acc = isnan(acc) || isnan(v) ? NAN : v > acc ? v : acc;
        else
          acc += v;
      }
      out[o * inner + in] = op == IR_OP_MEAN ? acc / (double)n : acc;
    }
}

/* ---- sequence-model ops ---- */

/* Softmax over the last axis, max-subtracted; with causal, row i of each
 * [Lq, Lk] matrix sees keys j <= i + (Lk - Lq), masked weights exactly 0. */
static void do_softmax(const ir_type *t, bool causal, const double *x,
                       double *out) {
  int64_t lk = t->dim[t->rank - 1];
  int64_t lq = causal ? t->dim[t->rank - 2] : 1;
  int64_t rows = ir_numel(t) / lk;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * lk;
    double *yr = out + r * lk;
    int64_t last = causal ? r % lq + (lk - lq) : lk - 1; /* inclusive */
    double m = xr[0];
    for (int64_t j = 1; j <= last; j++) m = xr[j] > m ? xr[j] : m;
    double s = 0;
    for (int64_t j = 0; j <= last; j++) s += yr[j] = exp(xr[j] - m);
    for (int64_t j = 0; j <= last; j++) yr[j] /= s;
    for (int64_t j = last + 1; j < lk; j++) yr[j] = 0;
  }
}

static int do_gather(const ir_type *tt, const double *table,
                     const ir_type *ti, const double *idx, double *out, int id,
                     ir_error *err) {
  int V = tt->dim[0];
  int64_t inner = ir_numel(tt) / V, n = ir_numel(ti);
  for (int64_t j = 0; j < n; j++) {
    int row;
    if (get_index(idx[j], V, &row, "gather", "index", "table of ", " rows", id,
                  err))
      return -1;
    memcpy(out + j * inner, table + row * inner, sizeof *out * (size_t)inner);
  }
  return 0;
}

static int do_scatter_add(const double *src, const ir_type *ti,
                          const double *idx, const ir_type *to, double *out,
                          int id, ir_error *err) {
  int rows = to->dim[0];
  int64_t inner = ir_numel(to) / rows, n = ir_numel(ti);
  for (int64_t j = 0; j < n; j++) {
    int row;
    if (get_index(idx[j], rows, &row, "scatter_add", "index", "result of ",
                  " rows", id, err))
      return -1;
    for (int64_t i = 0; i < inner; i++) out[row * inner + i] += src[j * inner + i];
  }
  return 0;
}

static int do_select_row(const ir_type *tx, const double *x, double p,
                         double *out, int id, ir_error *err) {
  int L = tx->dim[0], row;
  int64_t inner = ir_numel(tx) / L;
  if (get_index(p, L, &row, "select_row", "position", "input of ", " rows", id,
                err))
    return -1;
  memcpy(out, x + row * inner, sizeof *out * (size_t)inner);
  return 0;
}

static int do_onehot(const ir_type *ti, const double *idx, int n, double *out,
                     int id, ir_error *err) {
  int64_t cnt = ir_numel(ti);
  for (int64_t j = 0; j < cnt; j++) {
    int c;
    if (get_index(idx[j], n, &c, "onehot", "index", "", " classes", id, err))
      return -1;
    out[j * n + c] = 1;
  }
  return 0;
}

/* logsumexp(logits) - logits[label] = log(sum exp(x - m)) - (x[label] - m) */
static int do_cross_entropy(const ir_type *tl, const double *lg,
                            const double *lb, double *out, int id,
                            ir_error *err) {
  int K = tl->dim[tl->rank - 1];
  int64_t rows = ir_numel(tl) / K;
  for (int64_t r = 0; r < rows; r++) {
    const double *x = lg + r * K;
    int c;
    if (get_index(lb[r], K, &c, "cross_entropy", "label", "", " classes", id,
                  err))
      return -1;
    double m = x[0], s = 0;
    for (int j = 1; j < K; j++) m = x[j] > m ? x[j] : m;
    for (int j = 0; j < K; j++) s += exp(x[j] - m);
    out[r] = log(s) - (x[c] - m);
  }
  return 0;
}

/* y[t,e] = sum_k w[e,k] x[t-(W-1)+k, e], zero before t = 0 */
static void do_conv1d(const double *x, const double *w, int L, int E, int W,
                      double *y) {
  for (int t = 0; t < L; t++)
    for (int e = 0; e < E; e++) {
      double s = 0;
      for (int k = 0; k < W; k++) {
        int ti = t - (W - 1) + k;
        if (ti >= 0) s += w[e * W + k] * x[ti * E + e];
      }
      y[t * E + e] = s;
    }
}

/* ir.h: the pairs of x[t][h] rotated by row t of the tables */
static void do_rope(const double *x, const double *cs, const double *sn, int L, int H,
                    int D, double *y) {
  for (int t = 0; t < L; t++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) {
        const double *p = x + ((int64_t)t * H + h) * D + 2 * i;
        double c = cs[t * (D / 2) + i], s = sn[t * (D / 2) + i];
        double *q = y + ((int64_t)t * H + h) * D + 2 * i;
        q[0] = p[0] * c - p[1] * s;
        q[1] = p[0] * s + p[1] * c;
      }
}

/* dx[s,e] = sum_k w[e,k] g[s+(W-1)-k, e], zero from t = L on */
static void do_conv1d_bwd_x(const double *g, const double *w, int L, int E,
                            int W, double *dx) {
  for (int s = 0; s < L; s++)
    for (int e = 0; e < E; e++) {
      double acc = 0;
      for (int k = 0; k < W; k++) {
        int t = s + (W - 1) - k;
        if (t < L) acc += w[e * W + k] * g[t * E + e];
      }
      dx[s * E + e] = acc;
    }
}

/* dw[e,k] = sum_t g[t,e] x[t-(W-1)+k, e] */
static void do_conv1d_bwd_w(const double *g, const double *x, int L, int E,
                            int W, double *dw) {
  for (int e = 0; e < E; e++)
    for (int k = 0; k < W; k++) {
      double acc = 0;
      for (int t = 0; t < L; t++) {
        int ti = t - (W - 1) + k;
        if (ti >= 0) acc += g[t * E + e] * x[ti * E + e];
      }
      dw[e * W + k] = acc;
    }
}

/* The selective scan (see ir.h). u and delta are read with row stride ld,
 * so scan_bwd can pass its packed ud. If hs is non-NULL it receives every
 * state h[t][e][s] ([L,E,N]); y may be NULL. */
static void scan_fwd(const double *u, const double *delta, int ld,
                     const double *A, const double *bc, int L, int E, int N,
                     double *y, double *hs) {
  double *h = xcalloc((size_t)E * N, sizeof *h);
  for (int t = 0; t < L; t++) {
    const double *B = bc + (size_t)t * 2 * N, *C = B + N;
    for (int e = 0; e < E; e++) {
      double dt = delta[t * ld + e], x = u[t * ld + e], acc = 0;
      for (int s = 0; s < N; s++) {
        double *hp = &h[e * N + s];
        *hp = exp(dt * A[e * N + s]) * *hp + dt * B[s] * x;
        acc += C[s] * *hp;
      }
      if (y) y[t * E + e] = acc;
    }
    if (hs) memcpy(hs + (size_t)t * E * N, h, sizeof *h * (size_t)E * N);
  }
  free(h);
}

/* Gradients of sum(dy * y) for y = scan(u, delta, A, [B|C]), packed as
 * du [L,E], ddelta [L,E], dA [E,N], dbc [L,2N]. With a_t = exp(delta_t A)
 * and g_t the adjoint of h_t,
 *   g_t = dy_t C_t + a_{t+1} g_{t+1}
 *   dC_t = sum_e dy_t h_t               du_t = sum_s g_t delta_t B_t
 *   dB_t = sum_e g_t delta_t u_t        dA   = sum_t g_t h_{t-1} delta_t a_t
 *   ddelta_t = sum_s g_t (h_{t-1} A a_t + B_t u_t). */
static void do_scan_bwd(const double *ud, const double *A, const double *bc,
                        const double *dy, int L, int E, int N, double *out) {
  const double *u = ud, *delta = ud + E;
  size_t en = (size_t)E * N;
  double *hs = xcalloc((size_t)L * en, sizeof *hs);
  double *carry = xcalloc(en, sizeof *carry); /* a_{t+1} g_{t+1} */
  scan_fwd(u, delta, 2 * E, A, bc, L, E, N, NULL, hs);
  double *du = out, *dd = out + (size_t)L * E, *dA = dd + (size_t)L * E;
  double *dbc = dA + en;
  for (int t = L - 1; t >= 0; t--) {
    const double *B = bc + (size_t)t * 2 * N, *C = B + N;
    const double *h = hs + t * en, *hp = t > 0 ? h - en : NULL;
    double *dB = dbc + (size_t)t * 2 * N, *dC = dB + N;
    for (int e = 0; e < E; e++) {
      double dt = delta[t * 2 * E + e], x = u[t * 2 * E + e];
      double g_y = dy[t * E + e], sdu = 0, sdd = 0;
      for (int s = 0; s < N; s++) {
        size_t i = (size_t)e * N + s;
        double a = exp(dt * A[i]), hprev = hp ? hp[i] : 0;
        double g = g_y * C[s] + carry[i];
        dC[s] += g_y * h[i];
        dB[s] += g * dt * x;
        sdu += g * dt * B[s];
        sdd += g * (hprev * A[i] * a + B[s] * x);
        dA[i] += g * hprev * dt * a;
        carry[i] = a * g;
      }
      du[t * E + e] = sdu;
      dd[t * E + e] = sdd;
    }
  }
  free(carry);
  free(hs);
}

/* ---- the evaluator ---- */

static int leaf(const ir_func *f, int id, const double *const *leaves,
                double *out, ir_error *err) {
  const ir_node *n = &f->nodes[id];
  int64_t cnt = ir_numel(&n->type);
  const double *src = leaves ? leaves[id] : NULL;
  if (src) {
    memcpy(out, src, sizeof *out * (size_t)cnt);
    return 0;
  }
  if (n->op == IR_OP_CONST && n->data) {
    for (int64_t i = 0; i < cnt; i++) out[i] = n->data[i];
    return 0;
  }
  ir_err(err, "%s \"%s\" (%%%d) has no value%s", ir_op_name(n->op),
         n->name ? n->name : "?", id,
         n->op == IR_OP_CONST ? ": neither bound nor given data" : "");
  return -1;
}

static int eval(const ir_func *f, int id, double **v,
                const double *const *leaves, double *out, ir_error *err) {
  const ir_node *n = &f->nodes[id];
  const ir_attrs *a = &n->attr;
  const ir_type *to = &n->type;
  const ir_type *t0 = n->n_in > 0 ? &f->nodes[n->in[0]].type : NULL;
  const ir_type *t1 = n->n_in > 1 ? &f->nodes[n->in[1]].type : NULL;
  const double *x0 = n->n_in > 0 ? v[n->in[0]] : NULL;
  const double *x1 = n->n_in > 1 ? v[n->in[1]] : NULL;
  int64_t cnt = ir_numel(to);
  switch (n->op) {
  case IR_OP_INPUT:
  case IR_OP_PARAM:
  case IR_OP_CONST:
    return leaf(f, id, leaves, out, err);
  case IR_OP_FILL:
    for (int64_t i = 0; i < cnt; i++) out[i] = a->value;
    return 0;
  case IR_OP_NEG:
  case IR_OP_EXP:
  case IR_OP_LOG:
  case IR_OP_SQRT:
  case IR_OP_RSQRT:
  case IR_OP_RECIP:
  case IR_OP_SIGMOID:
  case IR_OP_SILU:
  case IR_OP_SOFTPLUS:
  case IR_OP_TANH:
  case IR_OP_RELU:
    for (int64_t i = 0; i < cnt; i++) out[i] = unary(n->op, x0[i]);
    return 0;
  case IR_OP_ADD:
  case IR_OP_SUB:
  case IR_OP_MUL:
  case IR_OP_DIV:
  case IR_OP_MAX:
  case IR_OP_GT:
    do_binary(n->op, t0, x0, t1, x1, to, out);
    return 0;
  case IR_OP_MATMUL:
    do_matmul(t0, x0, x1, to, a->ta, a->tb, out);
    return 0;
  case IR_OP_PERMUTE:
    do_permute(t0, x0, to, a->perm, out);
    return 0;
  case IR_OP_RESHAPE:
    memcpy(out, x0, sizeof *out * (size_t)cnt);
    return 0;
  case IR_OP_EXPAND:
    do_expand(t0, x0, to, out);
    return 0;
  case IR_OP_SLICE:
    do_slice(t0, x0, to, a, out);
    return 0;
  case IR_OP_PAD:
    place(t0, x0, to, a->axis, a->start, out);
    return 0;
  case IR_OP_CONCAT: {
    int64_t at = 0;
    for (int k = 0; k < n->n_in; k++) {
      const ir_type *tk = &f->nodes[n->in[k]].type;
      place(tk, v[n->in[k]], to, a->axis, at, out);
      at += tk->dim[a->axis];
    }
    return 0;
  }
  case IR_OP_SUM:
  case IR_OP_AMAX:
  case IR_OP_MEAN:
    do_reduce(n->op, t0, a->axis, x0, out);
    return 0;
  case IR_OP_SOFTMAX:
    do_softmax(t0, a->causal, x0, out);
    return 0;
  case IR_OP_GATHER:
    return do_gather(t0, x0, t1, x1, out, id, err);
  case IR_OP_SCATTER_ADD:
    return do_scatter_add(x0, t1, x1, to, out, id, err);
  case IR_OP_SELECT_ROW:
    return do_select_row(t0, x0, x1[0], out, id, err);
  case IR_OP_ONEHOT:
    return do_onehot(t0, x0, a->n, out, id, err);
  case IR_OP_CROSS_ENTROPY:
    return do_cross_entropy(t0, x0, x1, out, id, err);
  case IR_OP_CONV1D:
    do_conv1d(x0, x1, t0->dim[0], t0->dim[1], t1->dim[1], out);
    return 0;
  case IR_OP_CONV1D_BWD_X:
    do_conv1d_bwd_x(x0, x1, t0->dim[0], t0->dim[1], t1->dim[1], out);
    return 0;
  case IR_OP_CONV1D_BWD_W:
    do_conv1d_bwd_w(x0, x1, t0->dim[0], t0->dim[1], a->n, out);
    return 0;
  case IR_OP_ROPE:
    do_rope(x0, x1, v[n->in[2]], t0->dim[0], t0->dim[1], t0->dim[2], out);
    return 0;
  case IR_OP_SCAN: {
    const ir_type *tA = &f->nodes[n->in[2]].type;
    scan_fwd(x0, x1, t0->dim[1], v[n->in[2]], v[n->in[3]], t0->dim[0],
             t0->dim[1], tA->dim[1], out, NULL);
    return 0;
  }
  case IR_OP_SCAN_BWD: {
    const ir_type *tA = t1, *tdy = &f->nodes[n->in[3]].type;
    do_scan_bwd(x0, x1, v[n->in[2]], v[n->in[3]], tdy->dim[0], tdy->dim[1],
                tA->dim[1], out);
    return 0;
  }
  case IR_OP_COUNT:
    break;
  }
  ir_err(err, "interp: unknown op %d (%%%d)", (int)n->op, id);
  return -1;
}

/* Evaluates every node of f in order (f must be verified). leaves[i] holds
 * the values of input/param node i (and optionally const node i); leaves
 * itself may be NULL when f has no input or param. Returns f->n_nodes
 * malloc'd arrays (free with ir_values_free), or NULL with a message naming
 * the node on a missing leaf or an out-of-range index. */
double **ir_interp(const ir_func *f, ir_precision prec,
                   const double *const *leaves, ir_error *err) {
  double **v = xcalloc((size_t)f->n_nodes, sizeof *v);
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *n = &f->nodes[id];
    int64_t cnt = ir_numel(&n->type);
    v[id] = xcalloc((size_t)cnt, sizeof **v);
    if (eval(f, id, v, leaves, v[id], err)) {
      ir_values_free(f, v);
      return NULL;
    }
    if (prec == IR_PREC_F32 && n->type.dtype == IR_F32)
      for (int64_t i = 0; i < cnt; i++) v[id][i] = round_f32(v[id][i]);
  }
  return v;
}

/* Frees what ir_interp returned (NULL is fine). */
void ir_values_free(const ir_func *f, double **vals) {
  if (!vals) return;
  for (int i = 0; i < f->n_nodes; i++) free(vals[i]);
  free(vals);
}
