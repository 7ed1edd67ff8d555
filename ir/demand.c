/* demand.c — compute only what the outputs read.
 *
 * The study's models read one position: select_row(h, pos). Then the
 * last layer needs one row, not L: its norm, its projections, the query
 * side of its attention, and (in training) the gradient built from the
 * result is cut down alike.
 *
 * ir_pass_demand finds, for every node, the part of it that its users
 * read: all of it, a range [lo, hi) along one axis, or one row along an
 * axis at a position known only when the kernel runs (the row of a
 * select_row whose position is an input). A user asks its inputs through
 * a per-op rule (elementwise ops and views map the axis, matmul maps its
 * rows to its left operand's, reductions and softmax pass requests along
 * their other axes, ...). The requests of several users join (the hull
 * of static ranges along one axis, else everything). Then every node is
 * rebuilt over just its part, with slices (or row selects) where a whole
 * value meets a smaller request. Leaves are never cut. One rule looks
 * past an input: a scan read at some rows needs C = x W_C at those rows
 * only (splits_c).
 *
 * Causal softmax rows. A static suffix of the query rows keeps its mask
 * (key j of row i is masked when j > i + Lk - Lq, counted from the last
 * row): training reads the last position, pos = L-1, a constant once
 * ir_bind_scalar has made it one, and the one query row sees every key.
 * A row at a run-time position p (evaluation, a sequence padded to its
 * bucket and read at n-1) must not see the keys after p: it becomes a
 * plain softmax over scores + m, m[j] = -3e38 where j > p + Lk - Lq and
 * -0 elsewhere (built from onehot(p) and an iota const), whose masked
 * weights are exact zeros as the causal form's are. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int axis; /* -1: all of it (FULL); -2: nobody asked yet */
  int lo, hi;
  int dyn;  /* -1: static [lo, hi); else the i32 scalar node holding the
               row's position (lo, hi = 0, 1) */
} range;

static const range FULL = {-1, 0, 0, -1};

static bool is_full(range r) { return r.axis < 0; }
static bool same(range a, range b) {
  return a.axis == b.axis && a.lo == b.lo && a.hi == b.hi && a.dyn == b.dyn;
}

/* Joins request r into *d. */
static void join(range *d, range r) {
  if (d->axis == -2) {
    *d = r;
  } else if (is_full(*d) || is_full(r) || d->axis != r.axis || d->dyn != r.dyn) {
    *d = FULL;
  } else if (r.dyn < 0) {
    if (r.lo < d->lo) d->lo = r.lo;
    if (r.hi > d->hi) d->hi = r.hi;
  }
}

static range on(int axis, int lo, int hi) { return (range){axis, lo, hi, -1}; }
static range moved(range r, int axis) { /* the same part, along another axis */
  r.axis = axis;
  return r;
}

/* The constant index of select_row's position, or -1. */
static int const_pos(const ir_func *f, const ir_node *n) {
  const ir_node *p = &f->nodes[n->in[1]];
  if (p->op != IR_OP_FILL || p->type.dtype != IR_I32) return -1;
  int c = (int)p->attr.value;
  return c >= 0 && c < f->nodes[n->in[0]].type.dim[0] ? c : -1;
}

/* Input axis of a reshape that carries output axis a unchanged, or -1. */
static int reshape_axis(const ir_type *in, const ir_type *out, int a) {
  int64_t before = 1;
  for (int d = 0; d < a; d++) before *= out->dim[d];
  int64_t p = 1;
  for (int d = 0; d < in->rank; d++) {
    if (p == before && in->dim[d] == out->dim[a]) return d;
    p *= in->dim[d];
  }
  return -1;
}

/* Whether v can be computed over part r alone (r not FULL), and what
 * each input must then provide (req[i]). */
static bool rule(const ir_func *f, int v, range r, range *req) {
  const ir_node *n = &f->nodes[v];
  int R = n->type.rank, a = r.axis;
  for (int i = 0; i < n->n_in; i++) req[i] = FULL;
  if (ir_op_is_unary(n->op)) {
    req[0] = r;
    return true;
  }
  if (ir_op_is_binary(n->op) || n->op == IR_OP_EXPAND) {
    for (int i = 0; i < n->n_in; i++) {
      const ir_type *t = &f->nodes[n->in[i]].type;
      int ai = a - (R - t->rank);
      if (ai >= 0 && t->dim[ai] != 1) req[i] = moved(r, ai);
    }
    return true;
  }
  switch (n->op) {
  case IR_OP_FILL: return true;
  case IR_OP_MATMUL:
    if (a == R - 2) req[0] = moved(r, n->attr.ta ? R - 1 : R - 2);
    else if (a == R - 1) req[1] = moved(r, n->attr.tb ? R - 2 : R - 1);
    else req[0] = req[1] = r;
    return true;
  case IR_OP_PERMUTE:
    req[0] = moved(r, n->attr.perm[a]);
    return true;
  case IR_OP_RESHAPE: {
    int ai = reshape_axis(&f->nodes[n->in[0]].type, &n->type, a);
    if (ai < 0) return false;
    req[0] = moved(r, ai);
    return true;
  }
  case IR_OP_SLICE:
    if (a != n->attr.axis) req[0] = r;
    else if (r.dyn < 0) req[0] = on(a, n->attr.start + r.lo, n->attr.start + r.hi);
    else return false; /* no integer arithmetic on the position */
    return true;
  case IR_OP_PAD:
  case IR_OP_SUM:
  case IR_OP_AMAX:
  case IR_OP_MEAN:
    if (a == n->attr.axis) return false;
    req[0] = r;
    return true;
  case IR_OP_CONCAT:
    if (a == n->attr.axis) return false;
    for (int i = 0; i < n->n_in; i++) req[i] = r;
    return true;
  case IR_OP_SOFTMAX:
    if (a == R - 1 ||
        (n->attr.causal && a == R - 2 && r.dyn < 0 && r.hi != n->type.dim[a]))
      return false;
    req[0] = r;
    return true;
  case IR_OP_GATHER:
    if (a >= f->nodes[n->in[1]].type.rank) return false;
    req[1] = r;
    return true;
  case IR_OP_ONEHOT:
    if (a >= f->nodes[n->in[0]].type.rank) return false;
    req[0] = r;
    return true;
  case IR_OP_CROSS_ENTROPY:
    req[0] = req[1] = r;
    return true;
  case IR_OP_ROPE: /* row by row: the tables' rows with x's */
    if (a >= 2) return false;
    req[0] = r;
    if (a == 0) req[1] = req[2] = r;
    return true;
  case IR_OP_CONV1D:
  case IR_OP_SCAN:
    if (a != 1) return false; /* time: every earlier step is needed */
    req[0] = req[1] = r;
    if (n->op == IR_OP_CONV1D) req[1] = moved(r, 0);
    else req[2] = moved(r, 0);
    return true;
  default: return false;
  }
}

/* What input i of v needs when v holds d (also for d FULL). */
static range needs(const ir_func *f, int v, range d, int i) {
  const ir_node *n = &f->nodes[v];
  range req[IR_MAX_INPUTS], r = FULL;
  if (!is_full(d)) {
    rule(f, v, d, req);
    r = req[i];
  } else if (n->op == IR_OP_SLICE) {
    r = on(n->attr.axis, n->attr.start, n->attr.end);
  } else if (n->op == IR_OP_SELECT_ROW && i == 0) {
    int c = const_pos(f, n);
    r = c >= 0 ? on(0, c, c + 1) : (range){0, 0, 1, n->in[1]};
  }
  return r;
}

typedef struct {
  ir_func *g;
  int *id; /* old node -> new node */
  ir_error *err;
} rw;

/* The row at position p along axis a of x (keeping the axis, size 1). */
static int dyn_row(rw *w, int x, int a, int p) {
  const ir_type t = w->g->nodes[x].type;
  if (a > 0) { /* bring the axis to the front */
    ir_attrs pa = {0};
    pa.perm[0] = a;
    for (int d = 0, k = 1; d < t.rank; d++)
      if (d != a) pa.perm[k++] = d;
    x = ir_add(w->g, IR_OP_PERMUTE, &x, 1, &pa, NULL, NULL, w->err);
    if (x < 0) return -1;
  }
  int in[2] = {x, p};
  int s = ir_add(w->g, IR_OP_SELECT_ROW, in, 2, NULL, NULL, NULL, w->err);
  if (s < 0) return -1;
  ir_type kept = t;
  kept.dim[a] = 1;
  return ir_add(w->g, IR_OP_RESHAPE, &s, 1, NULL, &kept, NULL, w->err);
}

/* x (holding `has`) cut down to `want` (within `has`). */
static int fetch(rw *w, int x, range has, range want) {
  if (is_full(want) || same(has, want)) return x;
  if (want.dyn >= 0) return dyn_row(w, x, want.axis, w->id[want.dyn]);
  int base = is_full(has) ? 0 : has.lo;
  ir_attrs a = {.axis = want.axis, .start = want.lo - base, .end = want.hi - base};
  return ir_add(w->g, IR_OP_SLICE, &x, 1, &a, NULL, NULL, w->err);
}

static int copy_leaf(ir_func *g, const ir_node *o, ir_error *err) {
  ir_attrs a = o->attr;
  int id = ir_add(g, o->op, NULL, 0, &a, &o->type, o->name, err);
  if (id >= 0 && o->data && ir_set_const_data(g, id, o->data, err) < 0) return -1;
  return id;
}

static int fill(rw *w, double value, int n) {
  ir_type t = ir_type_make(IR_F32, 1, &n);
  return ir_fill(w->g, value, t, w->err);
}

static int bin(rw *w, ir_op op, int a, int b) {
  return a < 0 || b < 0 ? -1 : ir_binary(w->g, op, a, b, w->err);
}

/* The causal softmax of x's row at run-time position p (module comment):
 * x1 [.., 1, Lk] is that row of the scores; Lq their rows. */
static int softmax_row(rw *w, int x1, int p, int Lq) {
  int Lk = w->g->nodes[x1].type.dim[w->g->nodes[x1].type.rank - 1];
  char name[48];
  snprintf(name, sizeof name, "demand.iota.%d", Lk);
  int iota = ir_find_leaf(w->g, name);
  if (iota < 0) {
    ir_type t = ir_type_make(IR_F32, 1, &Lk);
    if ((iota = ir_add(w->g, IR_OP_CONST, NULL, 0, NULL, &t, name, w->err)) < 0) return -1;
    float *d = malloc(sizeof *d * (size_t)Lk);
    if (!d) abort();
    for (int j = 0; j < Lk; j++) d[j] = (float)j;
    int rc = ir_set_const_data(w->g, iota, d, w->err);
    free(d);
    if (rc < 0) return -1;
  }
  ir_attrs oa = {.n = Lq}, sa = {.axis = 0, .start = 0, .end = Lq}, ra = {.axis = 0};
  int oh = ir_add(w->g, IR_OP_ONEHOT, &p, 1, &oa, NULL, NULL, w->err);
  int iq = ir_add(w->g, IR_OP_SLICE, &iota, 1, &sa, NULL, NULL, w->err);
  int pm = bin(w, IR_OP_MUL, oh, iq);
  int pf = pm < 0 ? -1 : ir_add(w->g, IR_OP_SUM, &pm, 1, &ra, NULL, NULL, w->err);
  int last = Lk == Lq ? pf : bin(w, IR_OP_ADD, pf, fill(w, Lk - Lq, 1));
  int m = bin(w, IR_OP_MUL, bin(w, IR_OP_GT, iota, last), fill(w, -3e38, 1));
  int xm = bin(w, IR_OP_ADD, x1, m);
  ir_attrs none = {0};
  return xm < 0 ? -1 : ir_add(w->g, IR_OP_SOFTMAX, &xm, 1, &none, NULL, NULL, w->err);
}

/* Is v a scan read only at the static rows d (along time) whose bc is a
 * product x W (W maybe transposed) that nothing else reads? Then the
 * rows' y need C at those rows alone: y[t] reads C[t], and the state h
 * reads B only. The scan is kept whole (the codegen computes y at the
 * rows read, plan.c first_row) but takes
 *   bc' = concat(B, pad(C at d)),  B = bc's first N columns,
 *   C at d = x[d] W_C:  a product of |d| rows instead of L,
 * whose gradient is as small (training's last layer: x_proj's C part
 * and both its VJP products shrink from L rows to one). bc' equals bc on
 * every row that a read y depends on. */
static bool splits_c(const ir_func *f, int v, range d, const int *users) {
  const ir_node *n = &f->nodes[v];
  if (n->op != IR_OP_SCAN || is_full(d) || d.axis != 0 || d.dyn >= 0) return false;
  const ir_node *bc = &f->nodes[n->in[3]];
  return bc->op == IR_OP_MATMUL && !bc->attr.ta && bc->type.rank == 2 &&
         users[n->in[3]] == 1;
}

/* The requests of a splits_c scan v (d its rows): u, delta and A whole;
 * bc its B columns; for C, x's rows d and W's C part. */
static void split_requests(const ir_func *f, int v, range d, range *dem) {
  const ir_node *n = &f->nodes[v], *bc = &f->nodes[n->in[3]];
  int N = bc->type.dim[1] / 2;
  for (int i = 0; i < 3; i++) join(&dem[n->in[i]], FULL);
  join(&dem[n->in[3]], on(1, 0, N));
  join(&dem[bc->in[0]], on(0, d.lo, d.hi));
  join(&dem[bc->in[1]], on(bc->attr.tb ? 0 : 1, N, 2 * N));
}

/* Rebuilds splits_c scan v of f read at rows d (see there). */
static int split_scan(rw *w, const ir_func *f, int v, range d, const range *dem) {
  const ir_node *n = &f->nodes[v], *bc = &f->nodes[n->in[3]];
  int N = bc->type.dim[1] / 2, L = bc->type.dim[0], x = bc->in[0], W = bc->in[1];
  int in[4], mm[2], pieces[2];
  for (int i = 0; i < 3; i++) in[i] = w->id[n->in[i]];
  if ((pieces[0] = fetch(w, w->id[n->in[3]], dem[n->in[3]], on(1, 0, N))) < 0 ||
      (mm[0] = fetch(w, w->id[x], dem[x], on(0, d.lo, d.hi))) < 0 ||
      (mm[1] = fetch(w, w->id[W], dem[W], on(bc->attr.tb ? 0 : 1, N, 2 * N))) < 0)
    return -1;
  ir_attrs ma = bc->attr, pa = {.axis = 0, .start = d.lo, .end = L - d.hi}, ca = {.axis = 1};
  int c = ir_add(w->g, IR_OP_MATMUL, mm, 2, &ma, NULL, NULL, w->err);
  if (c < 0 || (pieces[1] = ir_add(w->g, IR_OP_PAD, &c, 1, &pa, NULL, NULL, w->err)) < 0 ||
      (in[3] = ir_add(w->g, IR_OP_CONCAT, pieces, 2, &ca, NULL, NULL, w->err)) < 0)
    return -1;
  ir_attrs sa = n->attr;
  return ir_add(w->g, IR_OP_SCAN, in, 4, &sa, NULL, NULL, w->err);
}

ir_func *ir_pass_demand(const ir_func *f, ir_error *err) {
  int n = f->n_nodes;
  range *dem = malloc(sizeof *dem * ((size_t)n + 1));
  range *split = malloc(sizeof *split * ((size_t)n + 1)); /* splits_c rows */
  int *id = malloc(sizeof *id * ((size_t)n + 1));
  int *users = calloc((size_t)n + 1, sizeof *users);
  if (!dem || !split || !id || !users) abort();
  for (int v = 0; v < n; v++)
    for (int i = 0; i < f->nodes[v].n_in; i++) users[f->nodes[v].in[i]]++;
  for (int j = 0; j < f->n_outs; j++) users[f->outs[j].node]++;
  for (int v = 0; v < n; v++) dem[v] = (range){-2, 0, 0, -1};
  for (int j = 0; j < f->n_outs; j++) dem[f->outs[j].node] = FULL;
  for (int v = n - 1; v >= 0; v--) {
    const ir_node *nd = &f->nodes[v];
    range d = dem[v].axis == -2 ? FULL : dem[v];
    range req[IR_MAX_INPUTS];
    split[v] = FULL;
    if (!is_full(d) && d.dyn < 0 && d.lo == 0 && d.hi == nd->type.dim[d.axis]) d = FULL;
    if (!is_full(d) && d.dyn >= 0 && nd->type.dim[d.axis] == 1) d = FULL;
    if (!is_full(d) && ir_op_is_leaf(nd->op) && nd->op != IR_OP_FILL) d = FULL;
    /* a run-time row of v: its inputs' rows are selected at v, after the
     * position (a user selects the row of a whole v itself) */
    if (!is_full(d) && d.dyn >= v) d = FULL;
    if (splits_c(f, v, d, users)) {
      split[v] = d;
      dem[v] = FULL;
      split_requests(f, v, d, dem);
      continue;
    }
    if (!is_full(d) && !rule(f, v, d, req)) d = FULL;
    dem[v] = d;
    for (int i = 0; i < nd->n_in; i++) join(&dem[nd->in[i]], needs(f, v, d, i));
  }

  rw w = {.g = ir_func_new(), .id = id, .err = err};
  int rc = 0;
  for (int v = 0; v < n && rc == 0; v++) {
    const ir_node *nd = &f->nodes[v];
    range d = dem[v];
    if (ir_op_is_leaf(nd->op) && nd->op != IR_OP_FILL) {
      rc = (id[v] = copy_leaf(w.g, nd, err)) < 0 ? -1 : 0;
      continue;
    }
    int in[IR_MAX_INPUTS];
    for (int i = 0; i < nd->n_in && rc == 0; i++) {
      int u = nd->in[i];
      if ((in[i] = fetch(&w, id[u], dem[u], needs(f, v, d, i))) < 0) rc = -1;
    }
    if (rc) break;
    int R = nd->type.rank;
    if (!is_full(split[v])) {
      id[v] = split_scan(&w, f, v, split[v], dem);
    } else if (nd->op == IR_OP_SELECT_ROW) { /* needs() fetched x's row: [1, ...] */
      ir_type t = nd->type;
      id[v] = ir_add(w.g, IR_OP_RESHAPE, in, 1, NULL, &t, NULL, err);
    } else if (nd->op == IR_OP_SLICE && (is_full(d) || d.axis == nd->attr.axis)) {
      id[v] = in[0]; /* needs() asked for exactly this range */
    } else if (nd->op == IR_OP_SOFTMAX && nd->attr.causal && !is_full(d) &&
               d.dyn >= 0 && d.axis == R - 2) {
      id[v] = softmax_row(&w, in[0], id[d.dyn], nd->type.dim[R - 2]);
    } else {
      ir_type t = nd->type;
      if (!is_full(d)) t.dim[d.axis] = d.hi - d.lo;
      ir_attrs a = nd->attr;
      bool typed = ir_op_get(nd->op)->attrs & IR_ATTR_TYPE;
      id[v] = ir_add(w.g, nd->op, in, nd->n_in, &a, typed ? &t : NULL, NULL, err);
    }
    if (id[v] < 0) rc = -1;
    else w.g->nodes[id[v]].line = nd->line;
  }
  for (int j = 0; j < f->n_outs && rc == 0; j++)
    if (ir_add_output(w.g, f->outs[j].name, id[f->outs[j].node], err) < 0) rc = -1;
  free(dem);
  free(split);
  free(id);
  free(users);
  if (rc) {
    ir_func_free(w.g);
    return NULL;
  }
  return w.g;
}

ir_func *ir_bind_scalar(const ir_func *f, const char *name, double value,
                        ir_error *err) {
  int v = ir_find_leaf(f, name);
  if (v < 0 || f->nodes[v].op != IR_OP_INPUT || f->nodes[v].type.rank != 0) {
    ir_err(err, "bind: no scalar input \"%s\"", name);
    return NULL;
  }
  ir_func *g = ir_func_clone(f);
  ir_node *n = &g->nodes[v];
  free(n->name);
  n->name = NULL;
  n->op = IR_OP_FILL;
  n->attr = (ir_attrs){.value = value};
  return g;
}
