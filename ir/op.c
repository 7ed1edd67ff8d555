/* op.c — the op table: for every op its name, arity, attributes and shape
 * rule (which also checks dtypes). Shape errors speak the user's terms. */
#include "ir.h"

#include <assert.h>
#include <stdarg.h>
#include <string.h>

void ir_err(ir_error *err, const char *fmt, ...) {
  if (!err) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
}

const char *ir_dtype_name(ir_dtype dt) { return dt == IR_I32 ? "i32" : "f32"; }

int64_t ir_numel(const ir_type *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dim[i];
  return n;
}

bool ir_type_eq(const ir_type *a, const ir_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return false;
  return true;
}

ir_type ir_type_make(ir_dtype dt, int rank, const int *dim) {
  ir_type t = {.dtype = dt, .rank = rank};
  for (int i = 0; i < rank && i < IR_MAX_RANK; i++) t.dim[i] = dim[i];
  return t;
}

char *ir_type_str(const ir_type *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", ir_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%d" : "%d", t->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int ir_broadcast(const ir_type *a, const ir_type *b, ir_type *out,
                 const char *opname, ir_error *err) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  out->rank = r;
  for (int i = 0; i < r; i++) {
    int ia = a->rank - r + i, ib = b->rank - r + i;
    int da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char sa[64], sb[64];
      ir_err(err, "%s: shapes %s and %s do not broadcast (axis %d: %d vs %d)",
             opname, ir_type_str(a, sa, sizeof sa), ir_type_str(b, sb, sizeof sb),
             i, da, db);
      return -1;
    }
    out->dim[i] = da == 1 ? db : da;
  }
  return 0;
}

/* ---- helpers for the rules ---- */

#define OPNAME(opname) static const char *const op_ = opname; (void)op

static int need_f32(const char *op, const ir_node *x, const char *what,
                    ir_error *err) {
  if (x->type.dtype == IR_F32) return 0;
  ir_err(err, "%s: %s must be f32, got i32", op, what);
  return -1;
}

static int need_i32(const char *op, const ir_node *x, const char *what,
                    ir_error *err) {
  if (x->type.dtype == IR_I32) return 0;
  ir_err(err, "%s: %s must be i32 (token or position ids), got f32", op, what);
  return -1;
}

static int need_rank(const char *op, const ir_node *x, const char *what,
                     int rank, ir_error *err) {
  if (x->type.rank == rank) return 0;
  char s[64];
  ir_err(err, "%s: %s must have rank %d, got %s", op, what, rank,
         ir_type_str(&x->type, s, sizeof s));
  return -1;
}

static int need_axis(const char *op, int axis, int rank, ir_error *err) {
  if (axis >= 0 && axis < rank) return 0;
  ir_err(err, "%s: axis %d out of range for rank %d", op, axis, rank);
  return -1;
}

static int need_dim(const char *op, const char *what, int got, int want,
                    ir_error *err) {
  if (got == want) return 0;
  ir_err(err, "%s: %s differ, %d vs %d", op, what, want, got);
  return -1;
}

/* ---- rules ---- */

static int rule_given(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                      ir_type *out, ir_error *err) {
  (void)op;
  (void)in, (void)n, (void)a, (void)err, (void)out;
  return 0; /* the declared type stands; func.c checks it is well-formed */
}

static int rule_unary(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                      ir_type *out, ir_error *err) {
  (void)n, (void)a;
  *out = in[0]->type;
  return need_f32(ir_op_name(op), in[0], "input", err);
}

static int rule_binary(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)n, (void)a;
  if (need_f32(ir_op_name(op), in[0], "left operand", err) ||
      need_f32(ir_op_name(op), in[1], "right operand", err))
    return -1;
  out->dtype = IR_F32;
  return ir_broadcast(&in[0]->type, &in[1]->type, out, ir_op_name(op), err);
}

static int rule_matmul(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)n;
  OPNAME("matmul");
  const ir_type *x = &in[0]->type, *y = &in[1]->type;
  if (need_f32(op_, in[0], "left operand", err) ||
      need_f32(op_, in[1], "right operand", err))
    return -1;
  if (x->rank < 2 || y->rank < 2) {
    ir_err(err, "matmul: operands need rank >= 2, got rank %d and %d",
           x->rank, y->rank);
    return -1;
  }
  if (x->rank != y->rank) {
    ir_err(err, "matmul: operand ranks differ, %d vs %d", x->rank, y->rank);
    return -1;
  }
  int r = x->rank;
  for (int i = 0; i < r - 2; i++)
    if (x->dim[i] != y->dim[i]) {
      ir_err(err, "matmul: batch sizes differ on axis %d, %d vs %d", i,
             x->dim[i], y->dim[i]);
      return -1;
    }
  int m = a->ta ? x->dim[r - 1] : x->dim[r - 2];
  int k1 = a->ta ? x->dim[r - 2] : x->dim[r - 1];
  int k2 = a->tb ? y->dim[r - 1] : y->dim[r - 2];
  int nn = a->tb ? y->dim[r - 2] : y->dim[r - 1];
  if (k1 != k2) {
    ir_err(err, "matmul: inner sizes differ, %d vs %d", k1, k2);
    return -1;
  }
  *out = *x;
  out->dim[r - 2] = m;
  out->dim[r - 1] = nn;
  return 0;
}

static int rule_permute(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                        ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *x = &in[0]->type;
  bool seen[IR_MAX_RANK] = {0};
  *out = *x;
  for (int i = 0; i < x->rank; i++) {
    int p = a->perm[i];
    if (p < 0 || p >= x->rank || seen[p]) {
      ir_err(err, "permute: perm is not a permutation of 0..%d", x->rank - 1);
      return -1;
    }
    seen[p] = true;
    out->dim[i] = x->dim[p];
  }
  return 0;
}

static int rule_reshape(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                        ir_type *out, ir_error *err) {
  (void)op;
  (void)n, (void)a;
  const ir_type *x = &in[0]->type;
  if (out->dtype != x->dtype) {
    ir_err(err, "reshape: cannot change dtype %s to %s", ir_dtype_name(x->dtype),
           ir_dtype_name(out->dtype));
    return -1;
  }
  if (ir_numel(out) != ir_numel(x)) {
    char s1[64], s2[64];
    ir_err(err, "reshape: element counts differ, %s has %lld, %s has %lld",
           ir_type_str(x, s1, sizeof s1), (long long)ir_numel(x),
           ir_type_str(out, s2, sizeof s2), (long long)ir_numel(out));
    return -1;
  }
  return 0;
}

static int rule_expand(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)op;
  (void)n, (void)a;
  const ir_type *x = &in[0]->type;
  char s1[64], s2[64];
  if (out->dtype != x->dtype || out->rank < x->rank) goto bad;
  for (int i = 0; i < x->rank; i++) {
    int d = x->dim[i], o = out->dim[out->rank - x->rank + i];
    if (d != o && d != 1) goto bad;
  }
  return 0;
bad:
  ir_err(err, "expand: cannot broadcast %s to %s", ir_type_str(x, s1, sizeof s1),
         ir_type_str(out, s2, sizeof s2));
  return -1;
}

static int rule_slice(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                      ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *x = &in[0]->type;
  if (need_axis("slice", a->axis, x->rank, err)) return -1;
  int d = x->dim[a->axis];
  if (a->start < 0 || a->end > d || a->start >= a->end) {
    ir_err(err, "slice: range [%d, %d) is empty or outside axis %d of size %d",
           a->start, a->end, a->axis, d);
    return -1;
  }
  *out = *x;
  out->dim[a->axis] = a->end - a->start;
  return 0;
}

static int rule_pad(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                    ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *x = &in[0]->type;
  if (need_axis("pad", a->axis, x->rank, err)) return -1;
  if (a->start < 0 || a->end < 0) {
    ir_err(err, "pad: negative padding %d, %d", a->start, a->end);
    return -1;
  }
  *out = *x;
  out->dim[a->axis] += a->start + a->end;
  return 0;
}

static int rule_concat(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)op;
  const ir_type *x = &in[0]->type;
  if (need_axis("concat", a->axis, x->rank, err)) return -1;
  *out = *x;
  for (int k = 1; k < n; k++) {
    const ir_type *y = &in[k]->type;
    if (y->dtype != x->dtype) {
      ir_err(err, "concat: dtypes differ, %s vs %s", ir_dtype_name(x->dtype),
             ir_dtype_name(y->dtype));
      return -1;
    }
    if (y->rank != x->rank) {
      ir_err(err, "concat: ranks differ, %d vs %d", x->rank, y->rank);
      return -1;
    }
    for (int i = 0; i < x->rank; i++)
      if (i != a->axis && y->dim[i] != x->dim[i]) {
        ir_err(err, "concat: sizes on axis %d differ, %d vs %d", i, x->dim[i],
               y->dim[i]);
        return -1;
      }
    out->dim[a->axis] += y->dim[a->axis];
  }
  return 0;
}

static int rule_reduce(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)n;
  const ir_type *x = &in[0]->type;
  if (need_f32(ir_op_name(op), in[0], "input", err) ||
      need_axis(ir_op_name(op), a->axis, x->rank, err))
    return -1;
  *out = *x;
  out->dim[a->axis] = 1;
  return 0;
}

static int rule_softmax(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                        ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *x = &in[0]->type;
  if (need_f32("softmax", in[0], "input", err)) return -1;
  if (x->rank < (a->causal ? 2 : 1)) {
    ir_err(err, "softmax: %s needs rank >= %d, got %d",
           a->causal ? "causal mask" : "input", a->causal ? 2 : 1, x->rank);
    return -1;
  }
  if (a->causal && x->dim[x->rank - 2] > x->dim[x->rank - 1]) {
    ir_err(err, "softmax: causal mask needs no more query rows than keys, "
                "%d vs %d", x->dim[x->rank - 2], x->dim[x->rank - 1]);
    return -1;
  }
  *out = *x;
  return 0;
}

static int rule_gather(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)op;
  (void)n, (void)a;
  const ir_type *t = &in[0]->type, *idx = &in[1]->type;
  if (need_i32("gather", in[1], "index", err)) return -1;
  if (t->rank < 1) {
    ir_err(err, "gather: table needs rank >= 1");
    return -1;
  }
  if (idx->rank + t->rank - 1 > IR_MAX_RANK) {
    ir_err(err, "gather: result rank %d exceeds %d", idx->rank + t->rank - 1,
           IR_MAX_RANK);
    return -1;
  }
  out->dtype = t->dtype;
  out->rank = idx->rank + t->rank - 1;
  for (int i = 0; i < idx->rank; i++) out->dim[i] = idx->dim[i];
  for (int i = 1; i < t->rank; i++) out->dim[idx->rank + i - 1] = t->dim[i];
  return 0;
}

static int rule_scatter_add(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                            ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *src = &in[0]->type, *idx = &in[1]->type;
  if (need_f32("scatter_add", in[0], "source", err) ||
      need_i32("scatter_add", in[1], "index", err))
    return -1;
  if (a->n < 1) {
    ir_err(err, "scatter_add: row count n must be >= 1, got %d", a->n);
    return -1;
  }
  if (idx->rank > src->rank || src->rank - idx->rank + 1 > IR_MAX_RANK) {
    ir_err(err, "scatter_add: index rank %d does not fit source rank %d",
           idx->rank, src->rank);
    return -1;
  }
  for (int i = 0; i < idx->rank; i++)
    if (need_dim("scatter_add", "index and source sizes", src->dim[i],
                 idx->dim[i], err))
      return -1;
  out->dtype = IR_F32;
  out->rank = src->rank - idx->rank + 1;
  out->dim[0] = a->n;
  for (int i = idx->rank; i < src->rank; i++)
    out->dim[i - idx->rank + 1] = src->dim[i];
  return 0;
}

static int rule_select_row(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                           ir_type *out, ir_error *err) {
  (void)op;
  (void)n, (void)a;
  const ir_type *x = &in[0]->type;
  if (need_i32("select_row", in[1], "position", err) ||
      need_rank("select_row", in[1], "position", 0, err))
    return -1;
  if (x->rank < 1) {
    ir_err(err, "select_row: input needs rank >= 1");
    return -1;
  }
  out->dtype = x->dtype;
  out->rank = x->rank - 1;
  for (int i = 1; i < x->rank; i++) out->dim[i - 1] = x->dim[i];
  return 0;
}

static int rule_onehot(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)op;
  (void)n;
  const ir_type *idx = &in[0]->type;
  if (need_i32("onehot", in[0], "index", err)) return -1;
  if (a->n < 1) {
    ir_err(err, "onehot: class count n must be >= 1, got %d", a->n);
    return -1;
  }
  if (idx->rank >= IR_MAX_RANK) {
    ir_err(err, "onehot: index rank %d leaves no room for the class axis",
           idx->rank);
    return -1;
  }
  *out = *idx;
  out->dtype = IR_F32;
  out->dim[out->rank++] = a->n;
  return 0;
}

static int rule_cross_entropy(ir_op op, const ir_node *const *in, int n,
                              const ir_attrs *a, ir_type *out, ir_error *err) {
  (void)op;
  (void)n, (void)a;
  const ir_type *lg = &in[0]->type, *lb = &in[1]->type;
  if (need_f32("cross_entropy", in[0], "logits", err) ||
      need_i32("cross_entropy", in[1], "label", err))
    return -1;
  if (lg->rank < 1 || lb->rank != lg->rank - 1) {
    char s1[64], s2[64];
    ir_err(err, "cross_entropy: labels %s do not match logits %s",
           ir_type_str(lb, s1, sizeof s1), ir_type_str(lg, s2, sizeof s2));
    return -1;
  }
  for (int i = 0; i < lb->rank; i++)
    if (need_dim("cross_entropy", "batch sizes of logits and labels",
                 lb->dim[i], lg->dim[i], err))
      return -1;
  *out = *lb;
  out->dtype = IR_F32;
  return 0;
}

/* x[L,E] with w[E,W] (conv1d, conv1d_bwd_x) */
static int rule_conv1d(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                       ir_type *out, ir_error *err) {
  (void)n, (void)a;
  const char *op_ = ir_op_name(op);
  if (need_f32(op_, in[0], "input", err) || need_f32(op_, in[1], "weight", err) ||
      need_rank(op_, in[0], "input [L,E]", 2, err) ||
      need_rank(op_, in[1], "weight [E,W]", 2, err) ||
      need_dim(op_, "channel counts of input and weight", in[1]->type.dim[0],
               in[0]->type.dim[1], err))
    return -1;
  *out = in[0]->type;
  return 0;
}

static int rule_conv1d_bwd_w(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                             ir_type *out, ir_error *err) {
  (void)n;
  OPNAME("conv1d_bwd_w");
  if (need_f32(op_, in[0], "gradient", err) || need_f32(op_, in[1], "input", err) ||
      need_rank(op_, in[0], "gradient [L,E]", 2, err) ||
      need_rank(op_, in[1], "input [L,E]", 2, err))
    return -1;
  if (!ir_type_eq(&in[0]->type, &in[1]->type)) {
    ir_err(err, "conv1d_bwd_w: gradient and input shapes differ");
    return -1;
  }
  if (a->n < 1) {
    ir_err(err, "conv1d_bwd_w: kernel width n must be >= 1, got %d", a->n);
    return -1;
  }
  *out = (ir_type){.dtype = IR_F32, .rank = 2,
                   .dim = {in[0]->type.dim[1], a->n}};
  return 0;
}

/* x[L,H,D] with cos, sin [L,D/2], D even */
static int rule_rope(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                     ir_type *out, ir_error *err) {
  (void)n, (void)a;
  const char *op_ = ir_op_name(op);
  if (need_f32(op_, in[0], "input", err) || need_f32(op_, in[1], "cos", err) ||
      need_f32(op_, in[2], "sin", err) || need_rank(op_, in[0], "input [L,H,D]", 3, err) ||
      need_rank(op_, in[1], "cos [L,D/2]", 2, err) ||
      need_rank(op_, in[2], "sin [L,D/2]", 2, err))
    return -1;
  const int *x = in[0]->type.dim;
  if (x[2] % 2 != 0) {
    ir_err(err, "rope: head size %d is odd (pairs are rotated)", x[2]);
    return -1;
  }
  for (int k = 1; k <= 2; k++)
    if (need_dim(op_, "lengths of input and tables", in[k]->type.dim[0], x[0], err) ||
        need_dim(op_, "table width and half the head size", in[k]->type.dim[1],
                 x[2] / 2, err))
      return -1;
  *out = in[0]->type;
  return 0;
}

/* Checks A[E,N] and bc[L,2N] against L and E. */
static int check_scan_abc(const char *op, const ir_node *A, const ir_node *bc,
                          int L, int E, ir_error *err) {
  if (need_f32(op, A, "A", err) || need_f32(op, bc, "bc", err) ||
      need_rank(op, A, "A [E,N]", 2, err) ||
      need_rank(op, bc, "bc [L,2N]", 2, err) ||
      need_dim(op, "channel counts of u and A", A->type.dim[0], E, err) ||
      need_dim(op, "lengths of u and bc", bc->type.dim[0], L, err) ||
      need_dim(op, "state sizes 2N of A and bc", bc->type.dim[1],
               2 * A->type.dim[1], err))
    return -1;
  return 0;
}

static int rule_scan(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                     ir_type *out, ir_error *err) {
  (void)n, (void)a;
  OPNAME("scan");
  if (need_f32(op_, in[0], "u", err) || need_f32(op_, in[1], "delta", err) ||
      need_rank(op_, in[0], "u [L,E]", 2, err))
    return -1;
  if (!ir_type_eq(&in[0]->type, &in[1]->type)) {
    char s1[64], s2[64];
    ir_err(err, "scan: u %s and delta %s differ",
           ir_type_str(&in[0]->type, s1, sizeof s1),
           ir_type_str(&in[1]->type, s2, sizeof s2));
    return -1;
  }
  int L = in[0]->type.dim[0], E = in[0]->type.dim[1];
  if (check_scan_abc(op_, in[2], in[3], L, E, err)) return -1;
  *out = in[0]->type;
  return 0;
}

static int rule_scan_bwd(ir_op op, const ir_node *const *in, int n, const ir_attrs *a,
                         ir_type *out, ir_error *err) {
  (void)n, (void)a;
  OPNAME("scan_bwd");
  if (need_f32(op_, in[0], "ud", err) || need_f32(op_, in[3], "dy", err) ||
      need_rank(op_, in[0], "ud [L,2E]", 2, err) ||
      need_rank(op_, in[3], "dy [L,E]", 2, err))
    return -1;
  int L = in[3]->type.dim[0], E = in[3]->type.dim[1];
  if (need_dim(op_, "lengths of ud and dy", in[0]->type.dim[0], L, err) ||
      need_dim(op_, "widths 2E of ud and dy", in[0]->type.dim[1], 2 * E, err) ||
      check_scan_abc(op_, in[1], in[2], L, E, err))
    return -1;
  int N = in[1]->type.dim[1];
  *out = (ir_type){.dtype = IR_F32, .rank = 1,
                   .dim = {2 * L * E + E * N + 2 * L * N}};
  return 0;
}

/* ---- the table, generated from IR_OP_LIST ---- */

#define NAME IR_ATTR_NAME
#define TYPE IR_ATTR_TYPE
#define VALUE IR_ATTR_VALUE
#define TRANS IR_ATTR_TRANS
#define PERM IR_ATTR_PERM
#define AXIS IR_ATTR_AXIS
#define RANGE IR_ATTR_RANGE
#define CAUSAL IR_ATTR_CAUSAL
#define N IR_ATTR_N
static const ir_op_info op_table[] = {
#define IR_X_ROW(e, name, arity, attrs, rule) \
  [IR_OP_##e] = {#name, arity, attrs, rule_##rule},
    IR_OP_LIST(IR_X_ROW)
#undef IR_X_ROW
};
#undef NAME
#undef TYPE
#undef VALUE
#undef TRANS
#undef PERM
#undef AXIS
#undef RANGE
#undef CAUSAL
#undef N
static_assert(sizeof op_table / sizeof op_table[0] == IR_OP_COUNT,
              "one table row per op");

const ir_op_info *ir_op_get(ir_op op) {
  if ((int)op < 0 || op >= IR_OP_COUNT) return NULL;
  return &op_table[op];
}

const char *ir_op_name(ir_op op) {
  const ir_op_info *i = ir_op_get(op);
  return i ? i->name : "?";
}

int ir_op_from_name(const char *name) {
  for (int i = 0; i < IR_OP_COUNT; i++)
    if (strcmp(op_table[i].name, name) == 0) return i;
  return -1;
}

bool ir_op_is_leaf(ir_op op) { return op <= IR_OP_FILL; }
bool ir_op_is_unary(ir_op op) { return op >= IR_OP_NEG && op <= IR_OP_RELU; }
bool ir_op_is_binary(ir_op op) { return op >= IR_OP_ADD && op <= IR_OP_GT; }
