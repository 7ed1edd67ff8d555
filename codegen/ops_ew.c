/* ops_ew.c — one loop nest per fusion group (plan.c): the root's shape (a
 * reduction's input shape) is the iteration space; fused elementwise nodes are computed in registers,
 * fused views (permute, slice, expand) are folded into the strides of the
 * loads that read through them, fills become constants. A lone view or
 * fill is the same thing with a one-node expression: a strided copy. */
#include "cgint.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
  int base; /* a node with storage, or a fill (then a constant) */
  int64_t off;
  int64_t st[IR_MAX_RANK]; /* in the viewed node's coordinates */
} view;

typedef struct {
  int root;
  const ir_type *dom; /* the iteration space: root's shape, or a
                         reduction's input shape */
  int n_acc, cap;
  cg_access *acc;
  int *base;    /* access -> storage node */
  int *touched; /* nodes whose acc_of/memo to reset */
  int n_touched;
  LLVMValueRef *offs;
} group;

static bool in_group(cg_ctx *c, const group *g, int v) {
  return v == g->root || (c->p->node[v].kind == CG_FUSED &&
                          c->p->node[v].root == g->root);
}

/* Strides broadcast right-aligned from shape `from` into shape `to`. */
static void broadcast(const ir_type *from, const int64_t *st, const ir_type *to,
                      int64_t *out) {
  for (int d = 0; d < to->rank; d++) {
    int dv = d - (to->rank - from->rank);
    out[d] = dv < 0 || from->dim[dv] == 1 ? 0 : st[dv];
  }
}

/* How node v is addressed: through fused views down to storage. */
static void resolve(cg_ctx *c, const group *g, int v, view *o) {
  const ir_node *n = &c->f->nodes[v];
  if (!(cg_is_view(n->op) && in_group(c, g, v))) {
    cg_access a;
    cg_contig(&n->type, &a);
    o->base = v;
    o->off = 0;
    for (int d = 0; d < n->type.rank; d++) o->st[d] = a.st[d];
    return;
  }
  view in;
  resolve(c, g, n->in[0], &in);
  const ir_type *it = &c->f->nodes[n->in[0]].type;
  o->base = in.base;
  o->off = in.off;
  switch (n->op) {
  case IR_OP_PERMUTE:
    for (int d = 0; d < n->type.rank; d++) o->st[d] = in.st[n->attr.perm[d]];
    break;
  case IR_OP_SLICE:
    o->off += n->attr.start * in.st[n->attr.axis];
    for (int d = 0; d < n->type.rank; d++) o->st[d] = in.st[d];
    break;
  default: /* expand */
    broadcast(it, in.st, &n->type, o->st);
    break;
  }
}

static void touch(group *g, int v) { g->touched[g->n_touched++] = v; }

static void add_access(cg_ctx *c, group *g, int v, const view *w) {
  if (g->n_acc == g->cap) {
    g->cap *= 2;
    g->acc = realloc(g->acc, sizeof *g->acc * (size_t)g->cap);
    g->base = realloc(g->base, sizeof *g->base * (size_t)g->cap);
    if (!g->acc || !g->base) abort();
  }
  cg_access *a = &g->acc[g->n_acc];
  a->off = w->off;
  broadcast(&c->f->nodes[v].type, w->st, g->dom, a->st);
  g->base[g->n_acc] = w->base;
  c->acc_of[v] = g->n_acc++;
  touch(g, v);
}

/* acc_of: -1 unseen, -2 computed in registers, >= 0 an access. */
static void collect(cg_ctx *c, group *g, int v) {
  const ir_node *n = &c->f->nodes[v];
  if (c->acc_of[v] != -1 || n->op == IR_OP_FILL) return;
  if (in_group(c, g, v) && cg_is_ewise(n->op)) {
    c->acc_of[v] = -2;
    touch(g, v);
    for (int i = 0; i < n->n_in; i++) collect(c, g, n->in[i]);
    return;
  }
  view w;
  resolve(c, g, v, &w);
  if (c->f->nodes[w.base].op == IR_OP_FILL) {
    c->acc_of[v] = -2; /* a view of a fill: the fill's constant */
    touch(g, v);
    return;
  }
  add_access(c, g, v, &w);
}

static LLVMValueRef fill_const(cg_ctx *c, const ir_node *n) {
  if (n->type.dtype == IR_I32) return cg_i32c(c, (int32_t)n->attr.value);
  return cg_f32c(c, n->attr.value);
}

static LLVMValueRef unary(cg_ctx *c, ir_op op, LLVMValueRef x) {
  switch (op) {
  case IR_OP_NEG: return LLVMBuildFNeg(c->B, x, "");
  case IR_OP_EXP: return cg_exp(c, x);
  case IR_OP_LOG: return cg_log(c, x);
  case IR_OP_SQRT: return cg_intrin(c, "llvm.sqrt", c->f32, &x, 1);
  case IR_OP_RSQRT:
    return cg_fdiv(c, cg_f32c(c, 1.0), cg_intrin(c, "llvm.sqrt", c->f32, &x, 1));
  case IR_OP_RECIP: return cg_fdiv(c, cg_f32c(c, 1.0), x);
  case IR_OP_SIGMOID: return cg_sigmoid(c, x);
  case IR_OP_SILU: return cg_silu(c, x);
  case IR_OP_SOFTPLUS: return cg_softplus(c, x);
  case IR_OP_TANH: return cg_tanh(c, x);
  default: /* relu: x < 0 ? 0 : x, so NaN passes */
    return LLVMBuildSelect(
        c->B, LLVMBuildFCmp(c->B, LLVMRealOLT, x, cg_f32c(c, 0.0), ""),
        cg_f32c(c, 0.0), x, "");
  }
}

/* a / b; by a constant b (a fill: attention's 1/sqrt(d_head) scaling and
 * its VJP) as a * fl(1/b) when 1/b is a normal float: a multiply instead
 * of a divide, whose throughput is a seventh of it (the [64,64] score
 * scaling cost a third of the softmax). Within 1.5 ulp of a / b, not
 * exact: the interpreter divides (tests/test_codegen.c div_by_constant). */
static LLVMValueRef div_(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  if (LLVMIsAConstantFP(b)) {
    LLVMBool lost;
    float r = (float)(1.0 / LLVMConstRealGetDouble(b, &lost));
    if (isnormal(r)) return cg_fmul(c, a, cg_f32c(c, r), 0);
  }
  return cg_fdiv(c, a, b);
}

static LLVMValueRef binary(cg_ctx *c, ir_op op, LLVMValueRef a, LLVMValueRef b) {
  switch (op) {
  case IR_OP_ADD: return cg_fadd(c, a, b, 0);
  case IR_OP_SUB: return cg_fsub(c, a, b, 0);
  case IR_OP_MUL: return cg_fmul(c, a, b, 0);
  case IR_OP_DIV: return div_(c, a, b);
  case IR_OP_MAX: return cg_fmax(c, a, b, 0);
  default: /* gt */
    return LLVMBuildSelect(c->B, LLVMBuildFCmp(c->B, LLVMRealOGT, a, b, ""),
                           cg_f32c(c, 1.0), cg_f32c(c, 0.0), "");
  }
}

static LLVMValueRef eval(cg_ctx *c, group *g, int v) {
  const ir_node *n = &c->f->nodes[v];
  if (c->memo[v]) return c->memo[v];
  LLVMValueRef r;
  if (n->op == IR_OP_FILL) {
    r = fill_const(c, n);
  } else if (c->acc_of[v] >= 0) {
    int k = c->acc_of[v];
    r = cg_load(c, cg_elty(c, &c->f->nodes[g->base[k]]), cg_ptr(c, g->base[k]),
                g->offs[k]);
  } else if (v == g->root && n->op == IR_OP_SOFTPLUS && c->p->node[v].sibling >= 0) {
    /* and its sibling sigmoid */
    LLVMValueRef sig;
    r = cg_softplus_sigmoid(c, eval(c, g, n->in[0]), &sig);
    c->memo[c->p->node[v].sibling] = sig;
  } else if (cg_is_ewise(n->op)) {
    LLVMValueRef a = eval(c, g, n->in[0]);
    r = n->n_in == 1 ? unary(c, n->op, a)
                     : binary(c, n->op, a, eval(c, g, n->in[1]));
  } else { /* a view of a fill */
    view w;
    resolve(c, g, v, &w);
    r = fill_const(c, &c->f->nodes[w.base]);
  }
  c->memo[v] = r;
  return r;
}

static void body(cg_ctx *c, LLVMValueRef *offs, void *ud) {
  group *g = ud;
  g->offs = offs;
  LLVMValueRef r = eval(c, g, g->root);
  cg_store(c, r, cg_ptr(c, g->root), offs[0]);
  int s = c->p->node[g->root].sibling;
  if (s < 0) return;
  const ir_node *sn = &c->f->nodes[s];
  if (sn->op == IR_OP_SIGMOID) { /* laid out as the root */
    cg_store(c, c->memo[s], cg_ptr(c, s), offs[0]);
  } else if (sn->op == IR_OP_MUL) { /* the root times its input, as binary() */
    LLVMValueRef x = c->memo[c->f->nodes[g->root].in[0]];
    LLVMValueRef m = sn->in[0] == g->root ? binary(c, IR_OP_MUL, r, x) : binary(c, IR_OP_MUL, x, r);
    cg_store(c, m, cg_ptr(c, s), offs[0]);
  } else { /* a sum over an outer axis: as reduce_body */
    LLVMValueRef at = offs[c->acc_of[s]], ps = cg_ptr(c, s);
    cg_store(c, cg_fadd(c, cg_loadf(c, ps, at), r, CG_ACC), ps, at);
  }
}

static void group_init(cg_ctx *c, group *g, int root, const ir_type *dom) {
  *g = (group){.root = root, .dom = dom, .cap = 8};
  g->acc = malloc(sizeof *g->acc * (size_t)g->cap);
  g->base = malloc(sizeof *g->base * (size_t)g->cap);
  g->touched = malloc(sizeof *g->touched * ((size_t)c->f->n_nodes + 1));
  if (!g->acc || !g->base || !g->touched) abort();
  g->base[0] = root; /* access 0: the destination */
  g->n_acc = 1;
}

static void group_done(cg_ctx *c, group *g) {
  for (int i = 0; i < g->n_touched; i++) c->acc_of[g->touched[i]] = -1;
  for (int i = 0; i < c->f->n_nodes; i++) c->memo[i] = NULL; /* fills too */
  free(g->acc);
  free(g->base);
  free(g->touched);
}

/* A group computing an exp or log (a long dependent chain per element)
 * runs INTERLEAVE vectors an iteration: the vectoriser alone takes one,
 * and then the chain's latency, not the arithmetic, sets the pace.
 * Measured (mamba d 64, softplus [64,128]): 20.6k cycles with 1, 16k
 * with 2, 12.2k with 4; compiling the mamba d 8 training kernel costs
 * 7% (2) or 14% (4) more instructions. 4 saves another ~0.5% of a
 * step, not worth 7% of the compile. */
enum { INTERLEAVE = 2 };

static bool has_chain(cg_ctx *c, const group *g) {
  for (int v = 0; v < c->f->n_nodes; v++) {
    if (!in_group(c, g, v)) continue;
    switch (c->f->nodes[v].op) {
    case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SIGMOID: case IR_OP_SILU:
    case IR_OP_SOFTPLUS: case IR_OP_TANH: return true;
    default: break;
    }
  }
  return false;
}

/* A prefix node's (cgint.h) rows to compute: of its domain's first dim
 * that is not 1; NULL for all. */
static LLVMValueRef prefix_rows(cg_ctx *c, int v, const ir_type *dom) {
  int d = cg_first_axis(dom);
  return c->p->node[v].prefix && d >= 0 ? cg_upto_rows(c, dom->dim[d]) : NULL;
}

void cg_emit_group(cg_ctx *c, int root) {
  const ir_node *n = &c->f->nodes[root];
  group g;
  group_init(c, &g, root, &n->type);
  cg_contig(&n->type, &g.acc[0]);
  collect(c, &g, root);
  int s = c->p->node[root].sibling;
  if (s >= 0 && c->f->nodes[s].op == IR_OP_SUM) { /* added up in this loop */
    const ir_type *st = &c->f->nodes[s].type;
    cg_loop l;
    LLVMValueRef i = cg_forn(c, &l, ir_numel(st));
    cg_store(c, cg_f32c(c, -0.0), cg_ptr(c, s), i); /* as cg_emit_reduce */
    cg_endfor(c, &l);
    cg_access a;
    cg_contig(st, &a);
    view w = {.base = s, .off = 0};
    for (int d = 0; d < st->rank; d++) w.st[d] = a.st[d];
    add_access(c, &g, s, &w); /* stride 0 along the axis */
  }
  cg_nest_rows(c, n->type.rank, n->type.dim, g.acc, g.n_acc, body, &g,
               has_chain(c, &g) ? INTERLEAVE : 0, prefix_rows(c, root, &n->type));
  group_done(c, &g);
}

/* ---- reductions: a group whose loop runs over the input's shape ---- */

static void reduce_body(cg_ctx *c, LLVMValueRef *offs, void *ud) {
  group *g = ud;
  g->offs = offs;
  const ir_node *n = &c->f->nodes[g->root];
  LLVMValueRef x = eval(c, g, n->in[0]), po = cg_ptr(c, g->root);
  LLVMValueRef o = cg_loadf(c, po, offs[0]);
  o = n->op == IR_OP_AMAX ? cg_fmax(c, o, x, CG_ACC) : cg_fadd(c, o, x, CG_ACC);
  cg_store(c, o, po, offs[0]);
}

/* sum, mean, amax over attr.axis: the output starts at the identity (-0
 * for sums, so that a sum of one -0 stays -0; -inf for amax), every input
 * element is combined into its output element (stride 0 along the axis),
 * mean divides at the end. The input expression (elementwise chains,
 * views) is computed inside this loop when the plan fused it. With the
 * axis innermost LLVM keeps the output element in a register. */
void cg_emit_reduce(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const ir_type *xt = &c->f->nodes[n->in[0]].type;
  int64_t cnt = ir_numel(&n->type), R = xt->dim[n->attr.axis];
  LLVMValueRef po = cg_ptr(c, v);
  cg_loop l;
  LLVMValueRef i = cg_forn(c, &l, cnt);
  cg_store(c, cg_f32c(c, n->op == IR_OP_AMAX ? -INFINITY : -0.0), po, i);
  cg_endfor(c, &l);
  group g;
  group_init(c, &g, v, xt);
  cg_access o;
  cg_contig(&n->type, &o);
  broadcast(&n->type, o.st, xt, g.acc[0].st); /* stride 0 along the axis */
  g.acc[0].off = 0;
  collect(c, &g, n->in[0]);
  cg_nest_rows(c, xt->rank, xt->dim, g.acc, g.n_acc, reduce_body, &g, 0, prefix_rows(c, v, xt));
  group_done(c, &g);
  if (n->op == IR_OP_MEAN) {
    i = cg_forn(c, &l, cnt);
    cg_store(c, cg_fdiv(c, cg_loadf(c, po, i), cg_f32c(c, (double)R)), po, i);
    cg_endfor(c, &l);
  }
}
