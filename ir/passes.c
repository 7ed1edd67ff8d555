/* passes.c — graph rewrites, tinygrad style: the optimizer is a short list
 * of named passes run to a fixed point, and each pass is a list of small
 * named rules, run through the rewrite engine (rewrite.h: it rebuilds a
 * function node by node and offers each node to the rules). Precondition
 * of every pass: f verifies. */
#include "rewrite.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- dce ---- */

/* Drops every node no output depends on, fills included; input, param and
 * const nodes stay (callers bind them by position and name). */
ir_func *ir_pass_dce(const ir_func *f, ir_error *err) {
  bool *live = calloc((size_t)f->n_nodes + 1, sizeof *live);
  if (!live) abort();
  for (int i = 0; i < f->n_outs; i++)
    if (f->outs[i].node >= 0 && f->outs[i].node < f->n_nodes)
      live[f->outs[i].node] = true;
  for (int id = f->n_nodes - 1; id >= 0; id--) /* topological: one sweep */
    if (live[id])
      for (int k = 0; k < f->nodes[id].n_in; k++) {
        int x = f->nodes[id].in[k];
        if (x >= 0 && x < id) live[x] = true;
      }
  rw c = {.pass = "dce", .err = err};
  ir_func *g = rw_rebuild(&c, f, live);
  free(live);
  return g;
}

/* ---- cse ---- */

/* Merges nodes with the same op, inputs (after merging), used attributes
 * and type, fills with the same value bitwise included; one hash lookup per
 * node. Named leaves are never merged. */
ir_func *ir_pass_cse(const ir_func *f, ir_error *err) {
  rw c = {.pass = "cse", .cse = true, .err = err};
  return rw_rebuild(&c, f, NULL);
}

/* ---- fold: constant folding of uniform values ---- */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* An integer index in [0, n), as the interpreter would accept it. */
static bool index_ok(double v, int n) { return v >= 0 && v < n && v == floor(v); }

static bool all_finite(const double *v, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(v[i])) return false;
  return true;
}

/* The value of n when its inputs are fills of v[], if every element of the
 * result is that one value (with the interpreter's NaN rules); false when
 * the result is not uniform or the interpreter would report an error (a bad
 * index: folding must not hide it). No default: a new op must be listed
 * here (-Wswitch). */
static bool fold_value(const rw *c, const cand *n, const double *v, double *r) {
  const ir_type *t0 = &rw_at(c, n->in[0])->type;
  int last = t0->rank - 1;
  switch (n->op) {
  case IR_OP_INPUT: case IR_OP_PARAM: case IR_OP_CONST: case IR_OP_FILL:
    return false;
  case IR_OP_NEG: *r = -v[0]; return true;
  case IR_OP_EXP: *r = exp(v[0]); return true;
  case IR_OP_LOG: *r = log(v[0]); return true;
  case IR_OP_SQRT: *r = sqrt(v[0]); return true;
  case IR_OP_RSQRT: *r = 1.0 / sqrt(v[0]); return true;
  case IR_OP_RECIP: *r = 1.0 / v[0]; return true;
  case IR_OP_SIGMOID: *r = sigmoid(v[0]); return true;
  case IR_OP_SILU: *r = v[0] * sigmoid(v[0]); return true;
  case IR_OP_SOFTPLUS: *r = fmax(v[0], 0) + log1p(exp(-fabs(v[0]))); return true;
  case IR_OP_TANH: *r = tanh(v[0]); return true;
  case IR_OP_RELU: *r = v[0] < 0 ? 0 : v[0]; return true; /* NaN stays */
  case IR_OP_ADD: *r = v[0] + v[1]; return true;
  case IR_OP_SUB: *r = v[0] - v[1]; return true;
  case IR_OP_MUL: *r = v[0] * v[1]; return true;
  case IR_OP_DIV: *r = v[0] / v[1]; return true;
  case IR_OP_MAX:
    *r = isnan(v[0]) || isnan(v[1]) ? NAN : v[0] >= v[1] ? v[0] : v[1];
    return true;
  case IR_OP_GT: *r = v[0] > v[1] ? 1 : 0; return true;
  case IR_OP_MATMUL: /* k equal products */
    *r = v[0] * v[1] * t0->dim[n->attr.ta ? last - 1 : last];
    return true;
  case IR_OP_PERMUTE: case IR_OP_RESHAPE: case IR_OP_EXPAND: case IR_OP_SLICE:
    *r = v[0];
    return true;
  case IR_OP_PAD: /* the padding is zeros */
    if (v[0] != 0 && (n->attr.start || n->attr.end)) return false;
    *r = v[0];
    return true;
  case IR_OP_CONCAT:
    for (int k = 1; k < n->n_in; k++)
      if (!(v[k] == v[0])) return false;
    *r = v[0];
    return true;
  case IR_OP_SUM: *r = v[0] * t0->dim[n->attr.axis]; return true;
  case IR_OP_MEAN: case IR_OP_AMAX: *r = v[0]; return true;
  case IR_OP_SOFTMAX: /* a causal mask leaves rows uniform only if Lq == 1 */
    if (!isfinite(v[0]) || (n->attr.causal && t0->dim[last - 1] != 1))
      return false;
    *r = 1.0 / t0->dim[last];
    return true;
  case IR_OP_GATHER: case IR_OP_SELECT_ROW:
    if (!index_ok(v[1], t0->dim[0])) return false;
    *r = v[0];
    return true;
  case IR_OP_SCATTER_ADD: { /* rows other than the index stay 0 */
    const ir_type *ti = &rw_at(c, n->in[1])->type;
    if (!index_ok(v[1], n->attr.n) || !isfinite(v[0])) return false;
    if (n->attr.n == 1) *r = v[0] * (double)ir_numel(ti);
    else if (v[0] == 0) *r = 0;
    else return false;
    return true;
  }
  case IR_OP_ONEHOT:
    if (n->attr.n != 1 || !index_ok(v[0], 1)) return false;
    *r = 1;
    return true;
  case IR_OP_CROSS_ENTROPY: /* logsumexp of K equal logits, minus one */
    if (!isfinite(v[0]) || !index_ok(v[1], t0->dim[last])) return false;
    *r = log((double)t0->dim[last]);
    return true;
  case IR_OP_CONV1D: case IR_OP_CONV1D_BWD_X: case IR_OP_CONV1D_BWD_W: {
    /* causal edges see fewer taps, so only a width-1 kernel or a zero
     * product is uniform */
    int W = n->op == IR_OP_CONV1D_BWD_W ? n->attr.n : rw_at(c, n->in[1])->type.dim[1];
    if (!all_finite(v, 2)) return false;
    if (W == 1)
      *r = v[0] * v[1] * (n->op == IR_OP_CONV1D_BWD_W ? t0->dim[0] : 1);
    else if (v[0] * v[1] == 0) *r = 0;
    else return false;
    return true;
  }
  case IR_OP_SCAN: /* zero u, delta or B keeps the state at 0 */
    if (!all_finite(v, 4) || (v[0] != 0 && v[1] != 0 && v[3] != 0)) return false;
    *r = 0;
    return true;
  case IR_OP_ROPE: /* x c -+ x s: uniform when sin is 0 */
    if (!all_finite(v, 3) || v[2] != 0) return false;
    *r = v[0] * v[1];
    return true;
  case IR_OP_SCAN_BWD: /* gradients of sum(dy * y) with dy = 0 */
    if (!all_finite(v, 4) || v[3] != 0) return false;
    *r = 0;
    return true;
  case IR_OP_COUNT:
    return false;
  }
  return false;
}

/* x as the f32 machine holds it; false if it overflows float (such a fill
 * or result is left alone rather than saturated). */
static bool as_f32(double *x) {
  if (isfinite(*x) && fabs(*x) > FLT_MAX) return false;
  *x = (float)*x;
  return true;
}

/* op(fill, ...) -> fill, when the result is uniform. f32 fill values and
 * the f32 result are rounded to float, so a fold is exact under
 * IR_PREC_F32 (the JIT's reference); under IR_PREC_F64 it is exact when the
 * values are floats (exp(fill 0) = fill 1), else within float rounding. */
static int rule_fold(rw *c, cand *n) {
  if (ir_op_is_leaf(n->op)) return RW_NONE;
  double v[IR_MAX_INPUTS], r;
  for (int k = 0; k < n->n_in; k++) {
    const ir_node *x = rw_at(c, n->in[k]);
    if (x->op != IR_OP_FILL) return RW_NONE;
    v[k] = x->attr.value;
    if (x->type.dtype == IR_F32 && !as_f32(&v[k])) return RW_NONE;
  }
  if (!fold_value(c, n, v, &r)) return RW_NONE;
  if (n->type.dtype == IR_F32 && !as_f32(&r)) return RW_NONE;
  n->op = IR_OP_FILL;
  n->n_in = 0;
  n->attr = (ir_attrs){.value = r};
  return RW_REWROTE;
}

static const rule fold_rules[] = {{"fold", rule_fold}};

/* Replaces every node whose inputs are all fills, and whose result is
 * uniform, by a fill (see rule_fold for the rounding). */
ir_func *ir_pass_fold(const ir_func *f, ir_error *err) {
  rw c = {.pass = "fold", .rules = fold_rules, .n_rules = 1, .err = err};
  return rw_rebuild(&c, f, NULL);
}

/* ---- simplify: algebraic identities ---- */

/* n becomes x: x itself when the types agree, else x expanded to n's type
 * (x broadcast against a fill of a larger shape). */
static int become(rw *c, cand *n, int x) {
  if (ir_type_eq(&rw_at(c, x)->type, &n->type)) return x;
  n->op = IR_OP_EXPAND;
  n->n_in = 1;
  n->in[0] = x;
  n->attr = (ir_attrs){0};
  return RW_REWROTE;
}

/* x+0, 0+x */
static int rule_add_zero(rw *c, cand *n) {
  if (n->op != IR_OP_ADD) return RW_NONE;
  if (rw_is_fill(c, n->in[1], 0)) return become(c, n, n->in[0]);
  if (rw_is_fill(c, n->in[0], 0)) return become(c, n, n->in[1]);
  return RW_NONE;
}

/* x-0 */
static int rule_sub_zero(rw *c, cand *n) {
  if (n->op != IR_OP_SUB || !rw_is_fill(c, n->in[1], 0)) return RW_NONE;
  return become(c, n, n->in[0]);
}

/* x*1, 1*x */
static int rule_mul_one(rw *c, cand *n) {
  if (n->op != IR_OP_MUL) return RW_NONE;
  if (rw_is_fill(c, n->in[1], 1)) return become(c, n, n->in[0]);
  if (rw_is_fill(c, n->in[0], 1)) return become(c, n, n->in[1]);
  return RW_NONE;
}

/* x/1 */
static int rule_div_one(rw *c, cand *n) {
  if (n->op != IR_OP_DIV || !rw_is_fill(c, n->in[1], 1)) return RW_NONE;
  return become(c, n, n->in[0]);
}

/* x*0, 0*x -> fill 0. Assumes x finite (inf*0 is NaN), as ML compilers do. */
static int rule_mul_zero(rw *c, cand *n) {
  if (n->op != IR_OP_MUL ||
      !(rw_is_fill(c, n->in[0], 0) || rw_is_fill(c, n->in[1], 0)))
    return RW_NONE;
  n->op = IR_OP_FILL;
  n->n_in = 0;
  n->attr = (ir_attrs){.value = 0};
  return RW_REWROTE;
}

/* neg(neg(x)) -> x */
static int rule_neg_neg(rw *c, cand *n) {
  if (n->op != IR_OP_NEG || rw_at(c, n->in[0])->op != IR_OP_NEG) return RW_NONE;
  return rw_at(c, n->in[0])->in[0];
}

/* reshape or expand to the input's own type -> x */
static int rule_same_type(rw *c, cand *n) {
  if (n->op != IR_OP_RESHAPE && n->op != IR_OP_EXPAND) return RW_NONE;
  if (!ir_type_eq(&rw_at(c, n->in[0])->type, &n->type)) return RW_NONE;
  return n->in[0];
}

/* reshape(reshape(x)) -> reshape(x); expand(expand(x)) -> expand(x): x
 * broadcasts to the outer shape whenever it does through the inner one */
static int rule_collapse(rw *c, cand *n) {
  if ((n->op != IR_OP_RESHAPE && n->op != IR_OP_EXPAND) ||
      rw_at(c, n->in[0])->op != n->op)
    return RW_NONE;
  n->in[0] = rw_at(c, n->in[0])->in[0];
  return RW_REWROTE;
}

/* permute with the identity perm -> x */
static int rule_permute_identity(rw *c, cand *n) {
  (void)c;
  if (n->op != IR_OP_PERMUTE) return RW_NONE;
  for (int i = 0; i < n->type.rank; i++)
    if (n->attr.perm[i] != i) return RW_NONE;
  return n->in[0];
}

/* permute(permute(x, p), q) -> permute(x, p∘q): out[i] = x.dim[p[q[i]]] */
static int rule_permute_permute(rw *c, cand *n) {
  if (n->op != IR_OP_PERMUTE) return RW_NONE; /* else in[0] may not exist */
  const ir_node *in = rw_at(c, n->in[0]);
  if (in->op != IR_OP_PERMUTE) return RW_NONE;
  int p[IR_MAX_RANK] = {0};
  for (int i = 0; i < n->type.rank; i++) p[i] = in->attr.perm[n->attr.perm[i]];
  memcpy(n->attr.perm, p, sizeof p);
  n->in[0] = in->in[0];
  return RW_REWROTE;
}

/* permute that keeps the order of the axes longer than 1 -> reshape: the
 * same elements in the same order (attention's [L,1,dh] <-> [1,L,dh]
 * with one head), which codegen then reads in place instead of copying */
static int rule_permute_reshape(rw *c, cand *n) {
  if (n->op != IR_OP_PERMUTE) return RW_NONE;
  const ir_type *t = &rw_at(c, n->in[0])->type;
  int last = -1;
  for (int i = 0; i < n->type.rank; i++) {
    int a = n->attr.perm[i];
    if (t->dim[a] == 1) continue;
    if (a < last) return RW_NONE;
    last = a;
  }
  n->op = IR_OP_RESHAPE;
  n->attr = (ir_attrs){0};
  return RW_REWROTE;
}

/* slice covering the whole axis -> x */
static int rule_slice_whole(rw *c, cand *n) {
  if (n->op != IR_OP_SLICE) return RW_NONE;
  const ir_type *t = &rw_at(c, n->in[0])->type;
  if (n->attr.start != 0 || n->attr.end != t->dim[n->attr.axis]) return RW_NONE;
  return n->in[0];
}

/* slice(slice(x, a, b), c, d) on one axis -> slice(x, a+c, a+d) */
static int rule_slice_slice(rw *c, cand *n) {
  if (n->op != IR_OP_SLICE) return RW_NONE; /* else in[0] may not exist */
  const ir_node *in = rw_at(c, n->in[0]);
  if (in->op != IR_OP_SLICE ||
      in->attr.axis != n->attr.axis)
    return RW_NONE;
  n->attr.start += in->attr.start;
  n->attr.end += in->attr.start;
  n->in[0] = in->in[0];
  return RW_REWROTE;
}

/* sum, mean or amax over an axis of size 1 -> x */
static int rule_reduce_unit(rw *c, cand *n) {
  if (n->op != IR_OP_SUM && n->op != IR_OP_MEAN && n->op != IR_OP_AMAX)
    return RW_NONE;
  if (rw_at(c, n->in[0])->type.dim[n->attr.axis] != 1) return RW_NONE;
  return n->in[0];
}

/* concat of one input -> x */
static int rule_concat_one(rw *c, cand *n) {
  (void)c;
  return n->op == IR_OP_CONCAT && n->n_in == 1 ? n->in[0] : RW_NONE;
}

/* Does slice node b continue slice node a of the same value on axis? */
static bool slices_meet(const ir_node *a, const ir_node *b, int axis) {
  return a->op == IR_OP_SLICE && b->op == IR_OP_SLICE && a->in[0] == b->in[0] &&
         a->attr.axis == axis && b->attr.axis == axis && a->attr.end == b->attr.start;
}

/* concat(..., slice(x,a,b), slice(x,b,c), ...) along the slices' axis ->
 * concat(..., slice(x,a,c), ...); the whole concat becomes the slice (then
 * x, by slice_whole) when every input joins one run. */
static int rule_concat_slices(rw *c, cand *n) {
  if (n->op != IR_OP_CONCAT) return RW_NONE;
  int axis = n->attr.axis, out[IR_MAX_INPUTS], m = 0;
  bool merged = false;
  for (int k = 0; k < n->n_in;) {
    int e = k + 1; /* run k..e-1 */
    while (e < n->n_in && slices_meet(rw_at(c, n->in[e - 1]), rw_at(c, n->in[e]), axis)) e++;
    if (e - k == 1) {
      out[m++] = n->in[k++];
      continue;
    }
    const ir_node *first = rw_at(c, n->in[k]);
    cand s = {.op = IR_OP_SLICE, .n_in = 1, .in = {first->in[0]},
              .attr = {.axis = axis, .start = first->attr.start,
                       .end = rw_at(c, n->in[e - 1])->attr.end},
              .type = first->type};
    s.type.dim[axis] = s.attr.end - s.attr.start;
    merged = true;
    if (k == 0 && e == n->n_in) { /* the whole concat is that slice */
      *n = s;
      return RW_REWROTE;
    }
    int id = rw_emit(c, &s);
    if (id < 0) return RW_FAIL;
    out[m++] = id;
    k = e;
  }
  if (!merged) return RW_NONE;
  n->n_in = m;
  memcpy(n->in, out, sizeof(int) * (size_t)m);
  return RW_REWROTE;
}

/* add(pad(a), pad(b)) on one axis where a's region ends where b's begins
 * (or the other way round) -> concat(a, b), padded by what is left: the
 * gradient of a weight used in parts (nn.linear_parts) is a concat, not
 * a sum of zero-padded copies. */
static int rule_add_pads(rw *c, cand *n) {
  if (n->op != IR_OP_ADD) return RW_NONE;
  const ir_node *p = rw_at(c, n->in[0]), *q = rw_at(c, n->in[1]);
  if (p->op != IR_OP_PAD || q->op != IR_OP_PAD || p->attr.axis != q->attr.axis ||
      !ir_type_eq(&p->type, &n->type) || !ir_type_eq(&q->type, &n->type))
    return RW_NONE;
  int axis = p->attr.axis, size = n->type.dim[axis];
  if (size - q->attr.end == p->attr.start) { /* q's region, then p's */
    const ir_node *t = p;
    p = q, q = t;
  } else if (size - p->attr.end != q->attr.start) {
    return RW_NONE;
  }
  cand cat = {.op = IR_OP_CONCAT, .n_in = 2, .in = {p->in[0], q->in[0]},
              .attr = {.axis = axis}, .type = n->type};
  cat.type.dim[axis] = size - p->attr.start - q->attr.end;
  int start = p->attr.start, end = q->attr.end;
  if (start == 0 && end == 0) {
    *n = cat;
    return RW_REWROTE;
  }
  int id = rw_emit(c, &cat);
  if (id < 0) return RW_FAIL;
  n->op = IR_OP_PAD;
  n->n_in = 1;
  n->in[0] = id;
  n->attr = (ir_attrs){.axis = axis, .start = start, .end = end};
  return RW_REWROTE;
}

/* The constant of a scaling by a uniform fill, x / v or x * v (either
 * side): false if n is none; else the input index of x in *k. */
static bool scaling(const rw *c, const cand *n, int *k, double *v) {
  if (n->op != IR_OP_DIV && n->op != IR_OP_MUL) return false;
  for (int j = 0; j < 2; j++) {
    const ir_node *q = rw_at(c, n->in[j]);
    if (q->op != IR_OP_FILL || !isfinite(q->attr.value) || q->attr.value == 0) continue;
    if (j == 0 && n->op == IR_OP_DIV) continue; /* v / x is no scaling */
    if (!ir_type_eq(&rw_at(c, n->in[!j])->type, &n->type)) continue;
    *k = !j;
    *v = q->attr.value;
    return true;
  }
  return false;
}

/* op(x, fill v) of x's own type, op the scaling's (div or mul) */
static int scaled(rw *c, ir_op op, int x, double v) {
  cand fill = {.op = IR_OP_FILL, .attr = {.value = v}, .type = rw_at(c, x)->type};
  int fid = rw_emit(c, &fill);
  if (fid < 0) return fid;
  cand m = {.op = op, .n_in = 2, .in = {x, fid}, .type = rw_at(c, x)->type};
  return rw_emit(c, &m);
}

/* The node of f that n rebuilds, if n still has its op and inputs' order
 * (no earlier rule rewrote it), else NULL. */
static const ir_node *source(const rw *c, const cand *n) {
  if (!n->from) return NULL;
  const ir_node *o = &c->f->nodes[n->from - 1];
  return o->op == n->op && o->n_in == n->n_in ? o : NULL;
}

/* scale(matmul(a, b)) -> matmul(scale(a), b) (or b), when the operand is
 * smaller than the product and the product has no other user: attention's
 * scores / sqrt(d) scale q [L, d] instead of the scores [L, L] (the same
 * value up to rounding). */
static int rule_scale_operand(rw *c, cand *n) {
  int k;
  double v;
  const ir_node *o = source(c, n);
  if (!o || !scaling(c, n, &k, &v)) return RW_NONE;
  const ir_node *mm = rw_at(c, n->in[k]);
  if (mm->op != IR_OP_MATMUL || c->uses[o->in[k]] != 1) return RW_NONE;
  /* copied: emitting nodes below may move g's node array */
  cand r = {.op = IR_OP_MATMUL, .n_in = 2, .in = {mm->in[0], mm->in[1]}, .attr = mm->attr,
            .type = n->type};
  int64_t na = ir_numel(&rw_at(c, r.in[0])->type), nb = ir_numel(&rw_at(c, r.in[1])->type);
  int side = nb < na ? 1 : 0;
  if ((side ? nb : na) >= ir_numel(&n->type)) return RW_NONE;
  int s = scaled(c, n->op, r.in[side], v);
  if (s < 0) return RW_FAIL;
  r.in[side] = s;
  *n = r;
  return RW_REWROTE;
}

/* matmul(scale(x), b) -> scale(matmul(x, b)) (or on b's side), when the
 * product is smaller than x and every user of the scaling is a matmul (so
 * that it dies): the gradient of the scores scales dq and dk [L, d], not
 * the [L, L] it came from. */
static int rule_scale_result(rw *c, cand *n) {
  const ir_node *o = n->op == IR_OP_MATMUL ? source(c, n) : NULL;
  if (!o) return RW_NONE;
  for (int j = 0; j < 2; j++) {
    const ir_node *sn = rw_at(c, n->in[j]); /* copied into sc: emit moves nodes */
    cand sc = {.op = sn->op, .n_in = sn->n_in, .type = sn->type};
    memcpy(sc.in, sn->in, sizeof sc.in);
    int k;
    double v;
    if (!scaling(c, &sc, &k, &v) || !c->matmul_users[o->in[j]] ||
        ir_numel(&n->type) >= ir_numel(&sc.type))
      continue;
    cand m = *n;
    m.in[j] = sc.in[k];
    m.from = 0;
    int id = rw_emit(c, &m);
    if (id < 0) return RW_FAIL;
    int s = scaled(c, sc.op, id, v);
    return s < 0 ? RW_FAIL : s;
  }
  return RW_NONE;
}

/* silu(x) -> x sigmoid(x) where the function also takes sigmoid(x)
 * later (a gradient: silu's and softplus's VJPs do): the two sigmoids
 * then meet in CSE, and the backward reads the forward's instead of
 * computing it again (mamba d 8 training kernel -2%, hybrid -3%). The
 * product rounds once more than silu: ~1 ulp. */
static int rule_silu_shared(rw *c, cand *n) {
  if (n->op != IR_OP_SILU || n->from < 1) return RW_NONE;
  int x = c->f->nodes[n->from - 1].in[0];
  bool found = false;
  for (int v = n->from; v < c->f->n_nodes && !found; v++)
    found = c->f->nodes[v].op == IR_OP_SIGMOID && c->f->nodes[v].in[0] == x;
  if (!found) return RW_NONE;
  cand s = {.op = IR_OP_SIGMOID, .n_in = 1, .in = {n->in[0]}, .type = n->type};
  int sid = rw_emit(c, &s);
  if (sid < 0) return sid;
  n->op = IR_OP_MUL;
  n->n_in = 2;
  n->in[1] = sid;
  n->attr = (ir_attrs){0};
  return RW_REWROTE;
}

static const rule simplify_rules[] = {
    {"add_zero", rule_add_zero},
    {"sub_zero", rule_sub_zero},
    {"mul_one", rule_mul_one},
    {"div_one", rule_div_one},
    {"mul_zero", rule_mul_zero},
    {"neg_neg", rule_neg_neg},
    {"same_type", rule_same_type},
    {"collapse", rule_collapse},
    {"permute_identity", rule_permute_identity},
    {"permute_permute", rule_permute_permute},
    {"permute_reshape", rule_permute_reshape},
    {"slice_whole", rule_slice_whole},
    {"slice_slice", rule_slice_slice},
    {"reduce_unit", rule_reduce_unit},
    {"concat_one", rule_concat_one},
    {"concat_slices", rule_concat_slices},
    {"add_pads", rule_add_pads},
    {"scale_operand", rule_scale_operand},
    {"scale_result", rule_scale_result},
    {"silu_shared", rule_silu_shared},
};

/* Algebraic identities (table above). sub(x, x) is deliberately kept:
 * inf - inf is NaN, not 0. */
ir_func *ir_pass_simplify(const ir_func *f, ir_error *err) {
  rw c = {.pass = "simplify",
          .rules = simplify_rules,
          .n_rules = (int)(sizeof simplify_rules / sizeof simplify_rules[0]),
          .err = err};
  return rw_rebuild(&c, f, NULL);
}

/* ---- the pipeline ---- */

/* simplify first (it exposes fills and dead nodes), factor on its
 * result, fold next (on the fills simplify made), then cse (merged nodes
 * become dead) and dce last, so the result of every round carries no
 * dead nodes. */
static const ir_pass pipeline[] = {
    {"simplify", ir_pass_simplify},
    {"factor", ir_pass_factor},
    {"fold", ir_pass_fold},
    {"cse", ir_pass_cse},
    {"dce", ir_pass_dce},
};

const ir_pass *ir_passes(int *count) {
  if (count) *count = (int)(sizeof pipeline / sizeof pipeline[0]);
  return pipeline;
}

enum { MAX_ROUNDS = 32 };

/* Runs the pipeline until a whole round changes nothing (at most
 * MAX_ROUNDS rounds; the function is valid after any round). */
ir_func *ir_optimize(const ir_func *f, FILE *trace, ir_error *err) {
  if (ir_verify(f, err)) return NULL;
  int n;
  const ir_pass *ps = ir_passes(&n);
  ir_func *cur = ir_func_clone(f);
  for (int round = 0; round < MAX_ROUNDS; round++) {
    bool changed = false;
    for (int i = 0; i < n; i++) {
      ir_func *g = ps[i].run(cur, err);
      if (!g) {
        ir_func_free(cur);
        return NULL;
      }
      if (!rw_same_func(cur, g)) {
        changed = true;
        if (trace) {
          fprintf(trace, "# after %s\n", ps[i].name);
          ir_print(trace, g);
        }
      }
      ir_func_free(cur);
      cur = g;
    }
    if (!changed) break;
  }
  return cur;
}
