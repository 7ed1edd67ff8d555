/* autodiff.c — reverse-mode autodiff on the IR. The backward pass is not
 * computed here: every VJP rule emits ordinary IR nodes (the ggml way), so
 * the gradient is printed, optimised, interpreted and compiled like any
 * forward function. ad_split cuts such a function in two for training. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  ir_func *f;
  ir_error *err;
  int *adj;   /* adjoint node of each forward node, -1 while none */
  bool *need; /* forward node on a path from a param to the loss */
  bool failed;
  int n_scalar; /* rank-0 fills emitted so far, reused by value */
  double scalar_val[16];
  int scalar_node[16];
} ad_ctx;

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) {
    fprintf(stderr, "recall: out of memory\n");
    abort();
  }
  return p;
}

/* "prefix<name>" in a fresh buffer. */
static char *prefixed(const char *prefix, const char *name) {
  size_t a = strlen(prefix), b = strlen(name);
  char *s = xcalloc(a + b + 1, 1);
  memcpy(s, prefix, a);
  memcpy(s + a, name, b + 1);
  return s;
}

/* ---- emitting nodes; an input of -1 (an earlier failure) propagates ---- */

static int emit(ad_ctx *c, ir_op op, const int *in, int n, const ir_attrs *a,
                const ir_type *t) {
  for (int i = 0; i < n; i++)
    if (in[i] < 0) return -1;
  return ir_add(c->f, op, in, n, a, t, NULL, c->err);
}

static ir_type type_of(ad_ctx *c, int x) { return c->f->nodes[x].type; }

static int un(ad_ctx *c, ir_op op, int x) { return emit(c, op, &x, 1, NULL, NULL); }

static int bin(ad_ctx *c, ir_op op, int a, int b) {
  int in[2] = {a, b};
  return emit(c, op, in, 2, NULL, NULL);
}

static int mul(ad_ctx *c, int a, int b) { return bin(c, IR_OP_MUL, a, b); }

/* A rank-0 fill (broadcasts against anything), one per value. */
static int scalar(ad_ctx *c, double v) {
  for (int k = 0; k < c->n_scalar; k++)
    if (c->scalar_val[k] == v) return c->scalar_node[k];
  ir_type t = {.dtype = IR_F32, .rank = 0};
  int id = ir_fill(c->f, v, t, c->err);
  if (id >= 0 && c->n_scalar < 16) {
    c->scalar_val[c->n_scalar] = v;
    c->scalar_node[c->n_scalar++] = id;
  }
  return id;
}

static int with_attrs(ad_ctx *c, ir_op op, int x, ir_attrs a) {
  return emit(c, op, &x, 1, &a, NULL);
}

static int reduce(ad_ctx *c, ir_op op, int x, int axis) {
  return with_attrs(c, op, x, (ir_attrs){.axis = axis});
}

static int slice(ad_ctx *c, int x, int axis, int start, int end) {
  return with_attrs(c, IR_OP_SLICE, x,
                    (ir_attrs){.axis = axis, .start = start, .end = end});
}

static int pad(ad_ctx *c, int x, int axis, int before, int after) {
  if (x >= 0 && before == 0 && after == 0) return x;
  return with_attrs(c, IR_OP_PAD, x,
                    (ir_attrs){.axis = axis, .start = before, .end = after});
}

/* reshape / expand to type t; no node when x already has it */
static int retype(ad_ctx *c, ir_op op, int x, const ir_type *t) {
  if (x < 0) return -1;
  ir_type tx = type_of(c, x);
  if (ir_type_eq(&tx, t)) return x;
  return emit(c, op, &x, 1, NULL, t);
}

static int matmul(ad_ctx *c, int a, int b, bool ta, bool tb) {
  int in[2] = {a, b};
  ir_attrs at = {.ta = ta, .tb = tb};
  return emit(c, IR_OP_MATMUL, in, 2, &at, NULL);
}

static int binary_n(ad_ctx *c, ir_op op, int a, int b, int n) {
  int in[2] = {a, b};
  ir_attrs at = {.n = n};
  return emit(c, op, in, 2, &at, NULL);
}

/* Sum g (an operand broadcast to g's shape) back to the operand type t:
 * sum over the stretched axes, then drop the missing leading ones. */
static int unbroadcast(ad_ctx *c, int g, const ir_type *t) {
  if (g < 0) return -1;
  ir_type tg = type_of(c, g);
  int off = tg.rank - t->rank;
  for (int i = 0; i < tg.rank; i++) {
    int d = i >= off ? t->dim[i - off] : 1;
    if (tg.dim[i] != d) g = reduce(c, IR_OP_SUM, g, i);
  }
  return retype(c, IR_OP_RESHAPE, g, t);
}

/* Adds the contribution g to x's adjoint (summing with add). */
static void acc(ad_ctx *c, int x, int g) {
  if (c->failed) return;
  if (g < 0) {
    c->failed = true;
    return;
  }
  ir_type tx = type_of(c, x), tg = type_of(c, g);
  if (!ir_type_eq(&tx, &tg)) { /* a wrong rule, not a user error */
    char s1[64], s2[64];
    ir_err(c->err, "internal: gradient of %%%d has type %s, expected %s", x,
           ir_type_str(&tg, s1, sizeof s1), ir_type_str(&tx, s2, sizeof s2));
    c->failed = true;
    return;
  }
  c->adj[x] = c->adj[x] < 0 ? g : bin(c, IR_OP_ADD, c->adj[x], g);
  if (c->adj[x] < 0) c->failed = true;
}

/* scan: one scan_bwd node over ud = [u | delta]; its packed result is
 * sliced into du, ddelta, dA, dbc (only those needed are emitted). */
static void vjp_scan(ad_ctx *c, const ir_node *n, int g) {
  ir_type tu = type_of(c, n->in[0]), tA = type_of(c, n->in[2]),
          tbc = type_of(c, n->in[3]);
  int ud_in[2] = {n->in[0], n->in[1]};
  ir_attrs cat = {.axis = 1};
  int ud = emit(c, IR_OP_CONCAT, ud_in, 2, &cat, NULL);
  int bw_in[4] = {ud, n->in[2], n->in[3], g};
  int packed = emit(c, IR_OP_SCAN_BWD, bw_in, 4, NULL, NULL);
  const ir_type *part[4] = {&tu, &tu, &tA, &tbc};
  int off = 0;
  for (int k = 0; k < 4; k++) {
    int len = (int)ir_numel(part[k]);
    if (c->need[n->in[k]])
      acc(c, n->in[k],
          retype(c, IR_OP_RESHAPE, slice(c, packed, 0, off, off + len), part[k]));
    off += len;
  }
}

/* rope(x, cos, sin): dx = rope(g, cos, -sin), the inverse rotation; the
 * tables, if they need gradients (learned frequencies), from the pairs:
 *   dcos[t,i] = sum_h g0 x0 + g1 x1,   dsin[t,i] = sum_h g1 x0 - g0 x1 */
static void vjp_rope(ad_ctx *c, const ir_node *n, int g) {
  int x = n->in[0], cs = n->in[1], sn = n->in[2];
  if (c->need[x]) {
    int in[3] = {g, cs, un(c, IR_OP_NEG, sn)};
    acc(c, x, emit(c, IR_OP_ROPE, in, 3, NULL, NULL));
  }
  if (!c->need[cs] && !c->need[sn]) return;
  ir_type tx = type_of(c, x), tt = type_of(c, cs);
  ir_type tp = {.dtype = IR_F32, .rank = 4,
                .dim = {tx.dim[0], tx.dim[1], tx.dim[2] / 2, 2}};
  int xp = retype(c, IR_OP_RESHAPE, x, &tp), gp = retype(c, IR_OP_RESHAPE, g, &tp);
  int x0 = slice(c, xp, 3, 0, 1), x1 = slice(c, xp, 3, 1, 2);
  int g0 = slice(c, gp, 3, 0, 1), g1 = slice(c, gp, 3, 1, 2);
  if (c->need[cs]) {
    int d = reduce(c, IR_OP_SUM, bin(c, IR_OP_ADD, mul(c, g0, x0), mul(c, g1, x1)), 1);
    acc(c, cs, retype(c, IR_OP_RESHAPE, d, &tt));
  }
  if (c->need[sn]) {
    int d = reduce(c, IR_OP_SUM, bin(c, IR_OP_SUB, mul(c, g1, x0), mul(c, g0, x1)), 1);
    acc(c, sn, retype(c, IR_OP_RESHAPE, d, &tt));
  }
}

/* Emits the VJP of node i, whose adjoint is c->adj[i]: contributions to
 * the adjoints of its needed inputs. One case per op, no default, so that
 * -Wswitch reports an op added to IR_OP_LIST without a rule. */
static int vjp(ad_ctx *c, int i) {
  const ir_node n = c->f->nodes[i]; /* a copy: ir_add may move the array */
  int g = c->adj[i], y = i, x = n.in[0], b = n.in[1];
  bool nx = n.n_in > 0 && c->need[x], nb = n.n_in > 1 && c->need[b];
  ir_type tx = n.n_in > 0 ? type_of(c, x) : n.type;
  ir_type tb = n.n_in > 1 ? type_of(c, b) : n.type;
  switch (n.op) {
  case IR_OP_INPUT:
  case IR_OP_PARAM:
  case IR_OP_CONST:
  case IR_OP_FILL: /* leaves */
  case IR_OP_GT:   /* piecewise constant: zero gradient */
  case IR_OP_ONEHOT: /* its input is i32 */
    break;
  /* unary: from the output where that is cheaper */
  case IR_OP_NEG:
    acc(c, x, un(c, IR_OP_NEG, g));
    break;
  case IR_OP_EXP:
    acc(c, x, mul(c, g, y));
    break;
  case IR_OP_LOG:
    acc(c, x, bin(c, IR_OP_DIV, g, x));
    break;
  case IR_OP_SQRT: /* g * 0.5 / y */
    acc(c, x, bin(c, IR_OP_DIV, mul(c, g, scalar(c, 0.5)), y));
    break;
  case IR_OP_RSQRT: /* -0.5 * g * y^3 */
    acc(c, x, mul(c, mul(c, g, scalar(c, -0.5)), mul(c, mul(c, y, y), y)));
    break;
  case IR_OP_RECIP: /* -g * y^2 */
    acc(c, x, un(c, IR_OP_NEG, mul(c, g, mul(c, y, y))));
    break;
  case IR_OP_SIGMOID: /* g * y * (1 - y) */
    acc(c, x, mul(c, g, mul(c, y, bin(c, IR_OP_SUB, scalar(c, 1), y))));
    break;
  case IR_OP_SILU: { /* g * s * (1 + x * (1 - s)), s = sigmoid(x) */
    int s = un(c, IR_OP_SIGMOID, x);
    int t = mul(c, x, bin(c, IR_OP_SUB, scalar(c, 1), s));
    acc(c, x, mul(c, g, mul(c, s, bin(c, IR_OP_ADD, scalar(c, 1), t))));
    break;
  }
  case IR_OP_SOFTPLUS:
    acc(c, x, mul(c, g, un(c, IR_OP_SIGMOID, x)));
    break;
  case IR_OP_TANH: /* g * (1 - y^2) */
    acc(c, x, mul(c, g, bin(c, IR_OP_SUB, scalar(c, 1), mul(c, y, y))));
    break;
  case IR_OP_RELU:
    acc(c, x, mul(c, g, bin(c, IR_OP_GT, x, scalar(c, 0))));
    break;
  /* binary: the adjoint is summed back to each operand's shape */
  case IR_OP_ADD:
    if (nx) acc(c, x, unbroadcast(c, g, &tx));
    if (nb) acc(c, b, unbroadcast(c, g, &tb));
    break;
  case IR_OP_SUB:
    if (nx) acc(c, x, unbroadcast(c, g, &tx));
    if (nb) acc(c, b, unbroadcast(c, un(c, IR_OP_NEG, g), &tb));
    break;
  case IR_OP_MUL:
    if (nx) acc(c, x, unbroadcast(c, mul(c, g, b), &tx));
    if (nb) acc(c, b, unbroadcast(c, mul(c, g, x), &tb));
    break;
  case IR_OP_DIV: /* y = a / b: da = g / b, db = -g * y / b */
    if (nx) acc(c, x, unbroadcast(c, bin(c, IR_OP_DIV, g, b), &tx));
    if (nb)
      acc(c, b, unbroadcast(c, un(c, IR_OP_NEG, bin(c, IR_OP_DIV, mul(c, g, y), b)),
                            &tb));
    break;
  case IR_OP_MAX: { /* m = gt(b, a); ties go to a */
    int m = bin(c, IR_OP_GT, b, x);
    if (nx)
      acc(c, x, unbroadcast(c, mul(c, g, bin(c, IR_OP_SUB, scalar(c, 1), m)), &tx));
    if (nb) acc(c, b, unbroadcast(c, mul(c, g, m), &tb));
    break;
  }
  case IR_OP_MATMUL: { /* C = op(A) op(B): dop(A) = g op(B)^T, dop(B) = op(A)^T g */
    bool ta = n.attr.ta, tbb = n.attr.tb;
    if (nx) acc(c, x, ta ? matmul(c, b, g, tbb, true) : matmul(c, g, b, false, !tbb));
    if (nb) acc(c, b, tbb ? matmul(c, g, x, true, ta) : matmul(c, x, g, !ta, false));
    break;
  }
  case IR_OP_PERMUTE: {
    ir_attrs inv = {0};
    for (int k = 0; k < tx.rank; k++) inv.perm[n.attr.perm[k]] = k;
    acc(c, x, with_attrs(c, IR_OP_PERMUTE, g, inv));
    break;
  }
  case IR_OP_RESHAPE:
    acc(c, x, retype(c, IR_OP_RESHAPE, g, &tx));
    break;
  case IR_OP_EXPAND:
    acc(c, x, unbroadcast(c, g, &tx));
    break;
  case IR_OP_SLICE:
    acc(c, x, pad(c, g, n.attr.axis, n.attr.start,
                  tx.dim[n.attr.axis] - n.attr.end));
    break;
  case IR_OP_PAD:
    acc(c, x, slice(c, g, n.attr.axis, n.attr.start,
                    n.attr.start + tx.dim[n.attr.axis]));
    break;
  case IR_OP_CONCAT:
    for (int k = 0, off = 0; k < n.n_in; k++) {
      int len = type_of(c, n.in[k]).dim[n.attr.axis];
      if (c->need[n.in[k]]) acc(c, n.in[k], slice(c, g, n.attr.axis, off, off + len));
      off += len;
    }
    break;
  case IR_OP_SUM:
    acc(c, x, retype(c, IR_OP_EXPAND, g, &tx));
    break;
  case IR_OP_MEAN:
    acc(c, x, retype(c, IR_OP_EXPAND,
                     mul(c, g, scalar(c, 1.0 / tx.dim[n.attr.axis])), &tx));
    break;
  case IR_OP_AMAX: /* mask = 1 - gt(max, x) (broadcast): ties all get g */
    acc(c, x, mul(c, g, bin(c, IR_OP_SUB, scalar(c, 1), bin(c, IR_OP_GT, y, x))));
    break;
  case IR_OP_SOFTMAX: { /* y * (g - sum(g * y, last axis)); masked y are 0 */
    int s = reduce(c, IR_OP_SUM, mul(c, g, y), tx.rank - 1);
    acc(c, x, mul(c, y, bin(c, IR_OP_SUB, g, s)));
    break;
  }
  case IR_OP_GATHER: /* the table only: the index is i32 */
    if (nx) acc(c, x, binary_n(c, IR_OP_SCATTER_ADD, g, b, tx.dim[0]));
    break;
  case IR_OP_SCATTER_ADD:
    if (nx) acc(c, x, bin(c, IR_OP_GATHER, g, b));
    break;
  case IR_OP_SELECT_ROW: { /* scatter g as the one row p of [L, ...] */
    ir_type t1 = type_of(c, g), p1 = {.dtype = IR_I32, .rank = 1, .dim = {1}};
    for (int k = t1.rank; k > 0; k--) t1.dim[k] = t1.dim[k - 1];
    t1.dim[0] = 1;
    t1.rank++;
    acc(c, x, binary_n(c, IR_OP_SCATTER_ADD, retype(c, IR_OP_RESHAPE, g, &t1),
                       retype(c, IR_OP_RESHAPE, b, &p1), tx.dim[0]));
    break;
  }
  case IR_OP_CROSS_ENTROPY: { /* (softmax(z) - onehot(label)) * g[..., None] */
    int K = tx.dim[tx.rank - 1];
    ir_attrs oh = {.n = K};
    int d = bin(c, IR_OP_SUB, un(c, IR_OP_SOFTMAX, x),
                emit(c, IR_OP_ONEHOT, &b, 1, &oh, NULL));
    ir_type tg = type_of(c, g);
    tg.dim[tg.rank++] = 1;
    acc(c, x, mul(c, d, retype(c, IR_OP_RESHAPE, g, &tg)));
    break;
  }
  case IR_OP_CONV1D: /* y = conv1d(x, w) */
    if (nx) acc(c, x, bin(c, IR_OP_CONV1D_BWD_X, g, b));
    if (nb) acc(c, b, binary_n(c, IR_OP_CONV1D_BWD_W, g, x, tb.dim[1]));
    break;
  case IR_OP_CONV1D_BWD_X: /* y = conv1d_bwd_x(h, w), linear in h and in w */
    if (nx) acc(c, x, bin(c, IR_OP_CONV1D, g, b));
    if (nb) acc(c, b, binary_n(c, IR_OP_CONV1D_BWD_W, x, g, tb.dim[1]));
    break;
  case IR_OP_CONV1D_BWD_W: /* y = conv1d_bwd_w(h, v) {W}, linear in h and v */
    if (nx) acc(c, x, bin(c, IR_OP_CONV1D, b, g));
    if (nb) acc(c, b, bin(c, IR_OP_CONV1D_BWD_X, x, g));
    break;
  case IR_OP_SCAN:
    vjp_scan(c, &n, g);
    break;
  case IR_OP_ROPE:
    vjp_rope(c, &n, g);
    break;
  case IR_OP_SCAN_BWD:
    ir_err(c->err, "scan_bwd: second derivative not supported");
    return -1;
  case IR_OP_COUNT: /* not an op */
    ir_err(c->err, "unknown op %d", (int)n.op);
    return -1;
  }
  return c->failed ? -1 : 0;
}

/* dep[i]: node i is f32 and depends on a param through differentiable ops;
 * need[i]: additionally the loss depends on it through such nodes. */
static void mark_paths(const ir_func *f, int loss, bool *dep, bool *need) {
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *n = &f->nodes[i];
    dep[i] = false;
    if (n->type.dtype != IR_F32 || n->op == IR_OP_GT) continue;
    if (n->op == IR_OP_PARAM) dep[i] = true;
    for (int k = 0; k < n->n_in; k++) dep[i] = dep[i] || dep[n->in[k]];
  }
  memset(need, 0, sizeof *need * (size_t)f->n_nodes);
  need[loss] = dep[loss];
  for (int i = loss; i >= 0; i--)
    if (need[i])
      for (int k = 0; k < f->nodes[i].n_in; k++)
        if (dep[f->nodes[i].in[k]]) need[f->nodes[i].in[k]] = true;
}

/* See ir.h. The upstream gradient "grad.<loss>" is node f->n_nodes (so
 * ad_split's n_fwd is f's node count); backward nodes follow, and outputs
 * grad.<param> come after f's outputs in param node order. Adjoints exist
 * only on param -> loss paths (i32 values and gt cut them). Ties: binary
 * max gives the gradient to its left operand, amax to every maximal
 * element. Fails on scan_bwd: no second derivative through a scan. */
ir_func *ad_grad(const ir_func *f, const char *loss, ir_error *err) {
  ir_error local;
  if (!err) err = &local;
  int o = ir_find_output(f, loss);
  if (o < 0) {
    ir_err(err, "ad_grad: no output named \"%s\"", loss);
    return NULL;
  }
  int lnode = f->outs[o].node, nf = f->n_nodes;
  if (f->nodes[lnode].type.dtype != IR_F32) {
    ir_err(err, "ad_grad: loss \"%s\" is i32 and has no gradient", loss);
    return NULL;
  }
  ad_ctx c = {.f = ir_func_clone(f), .err = err};
  bool *dep = xcalloc((size_t)nf, sizeof *dep);
  c.need = xcalloc((size_t)nf, sizeof *c.need);
  c.adj = xcalloc((size_t)nf, sizeof *c.adj);
  for (int i = 0; i < nf; i++) c.adj[i] = -1;
  mark_paths(f, lnode, dep, c.need);

  char *name = prefixed("grad.", loss);
  int up = ir_leaf(c.f, IR_OP_INPUT, name, f->nodes[lnode].type, err);
  free(name);
  if (up < 0) goto fail;
  if (c.need[lnode]) c.adj[lnode] = up;
  for (int i = lnode; i >= 0; i--) {
    if (!c.need[i] || c.adj[i] < 0) continue;
    int first = c.f->n_nodes;
    int r = vjp(&c, i);
    for (int k = first; k < c.f->n_nodes; k++) /* trace back to the spec */
      c.f->nodes[k].line = f->nodes[i].line;
    if (r) {
      char m[IR_MSG_MAX];
      snprintf(m, sizeof m, "%s", err->msg);
      ir_err(err, "ad_grad: backward of %%%d (%s): %.400s", i,
             ir_op_name(f->nodes[i].op), m);
      goto fail;
    }
  }
  for (int i = 0; i < nf; i++) {
    if (f->nodes[i].op != IR_OP_PARAM) continue;
    int gi = c.adj[i] >= 0 ? c.adj[i] : ir_fill(c.f, 0, f->nodes[i].type, err);
    if (gi < 0) goto fail;
    name = prefixed("grad.", f->nodes[i].name);
    int r = ir_add_output(c.f, name, gi, err);
    free(name);
    if (r < 0) goto fail;
  }
  free(dep), free(c.need), free(c.adj);
  return c.f;
fail:
  free(dep), free(c.need), free(c.adj);
  ir_func_free(c.f);
  return NULL;
}

/* ---- ad_split ---- */

/* Appends a copy of node n (inputs already remapped into in) to d. */
static int copy_node(ir_func *d, const ir_node *n, const int *in, ir_error *err) {
  int id = ir_add(d, n->op, in, n->n_in, &n->attr, &n->type, n->name, err);
  if (id < 0) return -1;
  if (n->data && ir_set_const_data(d, id, n->data, err)) return -1;
  d->nodes[id].line = n->line;
  return id;
}

/* See ir.h. Nodes below n_fwd are forward, the rest backward; outputs go
 * with the half their node is in. The forward keeps its node ids, so a
 * forward value %i the backward reads becomes output "saved.<i>" of fwd
 * and input "saved.<i>" (same type) of bwd. Leaves the backward reads
 * (input, param, const with its data, fill) are re-declared in bwd with
 * the same op and name; then comes "grad.<loss>", then the backward nodes.
 * Both halves are verified. On error *fwd and *bwd are NULL. */
int ad_split(const ir_func *g, int n_fwd, ir_func **fwd, ir_func **bwd,
             ir_error *err) {
  ir_error local;
  if (!err) err = &local;
  *fwd = *bwd = NULL;
  if (n_fwd < 0 || n_fwd >= g->n_nodes || g->nodes[n_fwd].op != IR_OP_INPUT ||
      strncmp(g->nodes[n_fwd].name, "grad.", 5) != 0) {
    ir_err(err, "ad_split: node %d is not the upstream-gradient input "
                "\"grad.<loss>\" of a function made by ad_grad", n_fwd);
    return -1;
  }
  int rc = -1;
  ir_func *F = ir_func_new(), *B = ir_func_new();
  int *map = xcalloc((size_t)g->n_nodes, sizeof *map); /* g id -> B id */
  bool *read = xcalloc((size_t)n_fwd, sizeof *read);   /* fwd nodes B reads */
  for (int i = n_fwd; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] < n_fwd) read[g->nodes[i].in[k]] = true;

  /* forward: the original nodes (same ids) and outputs, plus saved.<id> */
  for (int i = 0; i < n_fwd; i++)
    if (copy_node(F, &g->nodes[i], g->nodes[i].in, err) < 0) goto fail;
  for (int i = 0; i < g->n_outs; i++)
    if (g->outs[i].node < n_fwd &&
        ir_add_output(F, g->outs[i].name, g->outs[i].node, err) < 0)
      goto fail;
  /* backward: leaves re-declared, saved values as inputs, in forward order */
  for (int i = 0; i < n_fwd; i++) {
    if (!read[i]) continue;
    const ir_node *n = &g->nodes[i];
    if (ir_op_is_leaf(n->op)) {
      map[i] = copy_node(B, n, NULL, err);
    } else {
      char name[32];
      snprintf(name, sizeof name, "saved.%d", i);
      map[i] = ir_leaf(B, IR_OP_INPUT, name, n->type, err);
      if (map[i] >= 0 && ir_add_output(F, name, i, err) < 0) map[i] = -1;
    }
    if (map[i] < 0) goto fail;
  }
  for (int i = n_fwd; i < g->n_nodes; i++) {
    int in[IR_MAX_INPUTS];
    for (int k = 0; k < g->nodes[i].n_in; k++) in[k] = map[g->nodes[i].in[k]];
    if ((map[i] = copy_node(B, &g->nodes[i], in, err)) < 0) goto fail;
  }
  for (int i = 0; i < g->n_outs; i++)
    if (g->outs[i].node >= n_fwd &&
        ir_add_output(B, g->outs[i].name, map[g->outs[i].node], err) < 0)
      goto fail;
  if (ir_verify(F, err) || ir_verify(B, err)) goto fail;
  *fwd = F, *bwd = B;
  rc = 0;
fail:
  free(map), free(read);
  if (rc) {
    char m[IR_MSG_MAX];
    snprintf(m, sizeof m, "%s", err->msg);
    ir_err(err, "ad_split: %.480s", m);
    ir_func_free(F), ir_func_free(B);
  }
  return rc;
}
