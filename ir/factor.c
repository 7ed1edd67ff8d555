/* factor.c — the factor pass: a sum over rows of a product moved through
 * the matmuls behind it, where that makes those matmuls unnecessary.
 *
 * The case it exists for is the gradient of the first layer's norm when
 * nothing before the norm takes a gradient (the embedding is frozen):
 *   P   = sum_i A_i B_i          d(xn) [T,J], each term a projection's VJP
 *                                (A_i = d(xn W_i^T) [T,I], B_i = W_i [I,J])
 *   dw  = sum_rows(P * C)        C = xhat [T,J] (the norm's weight grad)
 *   db  = sum_rows(P)            (its bias grad, if it has one)
 *   M_i = A_i^T X                each projection's weight gradient, from
 *                                X = C w + b = xn (w, b rows broadcast)
 * Since sum_t (A B)[t,j] C[t,j] = sum_k B[k,j] (A^T C)[k,j], with
 * G_i = A_i^T C [I,J] and r_i = sum_rows(A_i) [1,I]:
 *   M_i = G_i w + r_i^T b,   dw = sum_i sum_rows(B_i * G_i),
 *   db  = sum_i r_i B_i,
 * so P, and the T I J multiply-adds of every A_i B_i, are not needed: a
 * matmul the size of M_i's (now G_i's) and a few [I,J] elementwise ops
 * instead of two. Mamba's first block at d 64: two of the training
 * kernel's twelve [64,64] x [64,128] products; the transformer's: three
 * [64,64] x [64,64].
 *
 * Each rewrite alone is an identity up to rounding; an analysis of the
 * whole function (plan) fires them together, and only where P then dies
 * and the FLOPs counted below drop. */
#include "rewrite.h"

#include <stdlib.h>

enum { MAX_TERMS = 8 };

/* what a node of f becomes */
enum { ROLE_NONE, ROLE_WEIGHT, ROLE_SUM_PRODUCT, ROLE_SUM };

typedef struct {
  int c;                   /* C, the rows that P is multiplied by */
  int n;                   /* terms of P */
  int a[MAX_TERMS], b[MAX_TERMS];
} group;

typedef struct {
  int role;
  int group; /* ROLE_SUM_PRODUCT, ROLE_SUM: its group */
  int c, w, b; /* ROLE_WEIGHT: X = C w + b (w, b -1 when absent) */
} mark;

typedef struct {
  mark *mark; /* per node of f */
  group *groups;
  int n_groups;
} plan;

/* ---- the analysis (on f) ---- */

typedef struct {
  const ir_func *f;
  int *first, *list; /* users of node v: list[first[v] .. first[v+1]) */
  bool *out;         /* v is an output */
} graph;

static const ir_node *at(const graph *g, int v) { return &g->f->nodes[v]; }
static int n_users(const graph *g, int v) { return g->first[v + 1] - g->first[v] + g->out[v]; }

static bool matrix(const ir_node *n) { return n->type.dtype == IR_F32 && n->type.rank == 2; }

/* v is a row of J values broadcast over rows: f32 [J] or [1,J] */
static bool row_of(const graph *g, int v, int64_t J) {
  const ir_type *t = &at(g, v)->type;
  if (t->dtype != IR_F32) return false;
  return (t->rank == 1 && t->dim[0] == J) || (t->rank == 2 && t->dim[0] == 1 && t->dim[1] == J);
}

/* X = C w + b, C w, C + b or C (C of X's type, w and b rows): C, w, b */
static void scaled(const graph *g, int x, int *c, int *w, int *b) {
  const ir_node *X = at(g, x);
  int64_t J = X->type.dim[1];
  *w = *b = -1;
  if (X->op == IR_OP_ADD)
    for (int j = 0; j < 2; j++)
      if (row_of(g, X->in[j], J) && ir_type_eq(&at(g, X->in[!j])->type, &X->type)) {
        *b = X->in[j], x = X->in[!j];
        break;
      }
  const ir_node *M = at(g, x);
  if (M->op == IR_OP_MUL)
    for (int j = 0; j < 2; j++)
      if (row_of(g, M->in[j], J) && ir_type_eq(&at(g, M->in[!j])->type, &X->type)) {
        *w = M->in[j], x = M->in[!j];
        break;
      }
  *c = x;
}

/* The terms A_i B_i of the sum P at v (a tree of adds over plain
 * matmuls, each node of it used once except the root) into q. */
static bool terms(const graph *g, int v, bool root, group *q) {
  const ir_node *n = at(g, v);
  if (!root && (n_users(g, v) != 1 || g->out[v])) return false;
  if (n->op == IR_OP_MATMUL && !n->attr.ta && !n->attr.tb && matrix(n) &&
      matrix(at(g, n->in[0])) && matrix(at(g, n->in[1]))) {
    if (q->n == MAX_TERMS) return false;
    q->a[q->n] = n->in[0], q->b[q->n] = n->in[1], q->n++;
    return true;
  }
  if (n->op != IR_OP_ADD) return false;
  for (int j = 0; j < 2; j++)
    if (!ir_type_eq(&at(g, n->in[j])->type, &n->type) || !terms(g, n->in[j], false, q))
      return false;
  return true;
}

static bool sum_rows(const ir_node *n) { return n->op == IR_OP_SUM && n->attr.axis == 0; }

/* Node m is A^T X with X = C w + b (the weight gradient of a term whose
 * A is a): its w and b. */
static bool weight_grad(const graph *g, int m, int a, int c, int *w, int *b) {
  const ir_node *M = at(g, m);
  if (M->op != IR_OP_MATMUL || !M->attr.ta || M->attr.tb || M->in[0] != a || !matrix(M) ||
      !matrix(at(g, M->in[1])))
    return false;
  int mc;
  scaled(g, M->in[1], &mc, w, b);
  return mc == c;
}

/* P at p: its users all sum its rows (D) or multiply it by C and have
 * their rows summed (Q, exactly one); every term's A_i has a weight
 * gradient A_i^T (C w + b). Marks S, the D and those M_i to be
 * rewritten, if that saves FLOPs (counted as the interpreter would). */
static void plan_sum(const graph *g, plan *pl, int p) {
  const ir_node *P = at(g, p);
  if (!matrix(P) || g->out[p] || (P->op != IR_OP_ADD && P->op != IR_OP_MATMUL)) return;
  int64_t T = P->type.dim[0], J = P->type.dim[1];
  int s = -1, c = -1, n_d = 0;
  for (int k = g->first[p]; k < g->first[p + 1]; k++) {
    int u = g->list[k];
    const ir_node *U = at(g, u);
    if (sum_rows(U)) {
      n_d++;
      continue;
    }
    int other = U->in[0] == p ? U->in[1] : U->in[0];
    if (U->op != IR_OP_MUL || s >= 0 || U->in[0] == U->in[1] ||
        !ir_type_eq(&at(g, other)->type, &P->type) || n_users(g, u) != 1 || g->out[u])
      return;
    int su = g->list[g->first[u]];
    if (!sum_rows(at(g, su))) return;
    s = su, c = other;
  }
  if (s < 0) return;
  group q = {.c = c};
  if (!terms(g, p, true, &q)) return;
  /* before: the terms' products, their adds, Q, S, the D; after: per
   * term B_i G_i and its sum, r_i B_i per D, G_i w and r_i^T b per M_i,
   * the terms added up (the matmul A_i^T costs the same as M_i's) */
  int64_t removed = (q.n + 1 + n_d) * T * J, added = q.n * (1 + n_d) * J;
  for (int i = 0; i < q.n; i++) {
    int64_t I = at(g, q.a[i])->type.dim[1];
    int found = 0;
    removed += 2 * T * I * J;
    added += 2 * I * J + n_d * (T * I + 2 * I * J);
    for (int m = 0; m < g->f->n_nodes; m++) {
      int w, b;
      if (!weight_grad(g, m, q.a[i], c, &w, &b)) continue;
      found++;
      added += (w >= 0) * I * J + (b >= 0) * (T * I + 3 * I * J);
    }
    if (!found) return;
  }
  if (added >= removed) return;
  group *ng = realloc(pl->groups, sizeof *ng * (size_t)(pl->n_groups + 1));
  if (!ng) return; /* no rewrite: still correct */
  pl->groups = ng;
  int id = pl->n_groups++;
  ng[id] = q;
  pl->mark[s] = (mark){.role = ROLE_SUM_PRODUCT, .group = id};
  for (int k = g->first[p]; k < g->first[p + 1]; k++)
    if (sum_rows(at(g, g->list[k])))
      pl->mark[g->list[k]] = (mark){.role = ROLE_SUM, .group = id};
  for (int i = 0; i < q.n; i++)
    for (int m = 0; m < g->f->n_nodes; m++) {
      int w, b;
      if (weight_grad(g, m, q.a[i], c, &w, &b) && (w >= 0 || b >= 0))
        pl->mark[m] = (mark){.role = ROLE_WEIGHT, .c = c, .w = w, .b = b};
    }
}

/* The plan for f: every node's mark (ROLE_NONE for most). */
static bool make_plan(const ir_func *f, plan *pl) {
  int n = f->n_nodes;
  graph g = {.f = f, .first = calloc((size_t)n + 2, sizeof(int)),
             .out = calloc((size_t)n + 1, sizeof(bool))};
  pl->mark = calloc((size_t)n + 1, sizeof *pl->mark);
  pl->groups = NULL, pl->n_groups = 0;
  int total = 0;
  for (int v = 0; v < n; v++) total += f->nodes[v].n_in;
  g.list = malloc(sizeof(int) * ((size_t)total + 1));
  if (!g.first || !g.out || !pl->mark || !g.list) {
    free(g.first), free(g.out), free(g.list), free(pl->mark);
    return false;
  }
  for (int i = 0; i < f->n_outs; i++) g.out[f->outs[i].node] = true;
  for (int v = 0; v < n; v++)
    for (int k = 0; k < f->nodes[v].n_in; k++) g.first[f->nodes[v].in[k] + 2]++;
  for (int v = 0; v < n; v++) g.first[v + 2] += g.first[v + 1];
  for (int v = 0; v < n; v++) /* counting sort: users in order */
    for (int k = 0; k < f->nodes[v].n_in; k++) g.list[g.first[f->nodes[v].in[k] + 1]++] = v;
  for (int p = 0; p < n; p++) plan_sum(&g, pl, p);
  free(g.first), free(g.out), free(g.list);
  return true;
}

/* ---- the rules (on the function being built) ---- */

static int emit(rw *c, ir_op op, int a, int b, ir_attrs at, ir_type t) {
  cand n = {.op = op, .n_in = b >= 0 ? 2 : 1, .in = {a, b}, .attr = at, .type = t};
  return rw_emit(c, &n);
}

static ir_type f32_2(int64_t r, int64_t k) {
  int d[4] = {(int)r, (int)k, 0, 0};
  return ir_type_make(IR_F32, 2, d);
}

static int dim(const rw *c, int id, int k) { return (int)rw_at(c, id)->type.dim[k]; }

/* sum_rows(x) [1, cols] */
static int row_sum(rw *c, int x) {
  return emit(c, IR_OP_SUM, x, -1, (ir_attrs){.axis = 0}, f32_2(1, dim(c, x, 1)));
}

/* a + b, either -1 for none */
static int plus(rw *c, int a, int b) {
  if (a < 0 || b < 0) return a < 0 ? b : a;
  return emit(c, IR_OP_ADD, a, b, (ir_attrs){0}, rw_at(c, a)->type);
}

static const mark *marked(const rw *c, const cand *n, int role) {
  const plan *pl = c->ud;
  if (!n->from) return NULL;
  const mark *m = &pl->mark[n->from - 1];
  return m->role == role ? m : NULL;
}

/* M = A^T (C w + b) -> (A^T C) w + sum_rows(A)^T b */
static int rule_weight(rw *c, cand *n) {
  const mark *m = marked(c, n, ROLE_WEIGHT);
  if (!m) return RW_NONE;
  int a = n->in[0], C = c->map[m->c];
  ir_type t = n->type;
  int r = emit(c, IR_OP_MATMUL, a, C, (ir_attrs){.ta = 1}, t);
  if (r >= 0 && m->w >= 0) r = emit(c, IR_OP_MUL, r, c->map[m->w], (ir_attrs){0}, t);
  if (r >= 0 && m->b >= 0) {
    int b = c->map[m->b], s = row_sum(c, a);
    if (s >= 0 && rw_at(c, b)->type.rank == 1)
      b = emit(c, IR_OP_RESHAPE, b, -1, (ir_attrs){0}, f32_2(1, dim(c, b, 0)));
    int o = s < 0 || b < 0 ? RW_FAIL : emit(c, IR_OP_MATMUL, s, b, (ir_attrs){.ta = 1}, t);
    r = o < 0 ? RW_FAIL : plus(c, r, o);
  }
  return r < 0 ? RW_FAIL : r;
}

/* The sum over the terms of the group of n (marked role) of term(i), a
 * node of n's type [1,J] each. */
typedef int (*term_fn)(rw *c, const group *q, int i, const ir_type *t);
static int sum_terms(rw *c, cand *n, int role, term_fn term) {
  const mark *m = marked(c, n, role);
  if (!m) return RW_NONE;
  const group *q = &((const plan *)c->ud)->groups[m->group];
  int r = -1;
  for (int i = 0; i < q->n && r != RW_FAIL; i++) {
    int s = term(c, q, i, &n->type);
    r = s < 0 ? RW_FAIL : plus(c, r, s);
  }
  return r;
}

/* sum_rows(B_i (A_i^T C)) */
static int product_term(rw *c, const group *q, int i, const ir_type *t) {
  (void)t;
  int a = c->map[q->a[i]], b = c->map[q->b[i]];
  int G = emit(c, IR_OP_MATMUL, a, c->map[q->c], (ir_attrs){.ta = 1}, rw_at(c, b)->type);
  int p = G < 0 ? G : emit(c, IR_OP_MUL, b, G, (ir_attrs){0}, rw_at(c, b)->type);
  return p < 0 ? p : row_sum(c, p);
}

/* sum_rows(A_i) B_i */
static int sum_term(rw *c, const group *q, int i, const ir_type *t) {
  int s = row_sum(c, c->map[q->a[i]]);
  return s < 0 ? s : emit(c, IR_OP_MATMUL, s, c->map[q->b[i]], (ir_attrs){0}, *t);
}

/* S = sum_rows((sum_i A_i B_i) C) -> sum_i sum_rows(B_i (A_i^T C)) */
static int rule_sum_product(rw *c, cand *n) {
  return sum_terms(c, n, ROLE_SUM_PRODUCT, product_term);
}

/* D = sum_rows(sum_i A_i B_i) -> sum_i sum_rows(A_i) B_i */
static int rule_sum(rw *c, cand *n) { return sum_terms(c, n, ROLE_SUM, sum_term); }

static const rule factor_rules[] = {
    {"factor_weight", rule_weight},
    {"factor_sum_product", rule_sum_product},
    {"factor_sum", rule_sum},
};

/* The rewrites the plan of f marks. The weight gradient's A_i^T C and
 * the norm gradient's are two nodes until the cse pass that follows. */
ir_func *ir_pass_factor(const ir_func *f, ir_error *err) {
  plan pl;
  if (!make_plan(f, &pl)) {
    ir_err(err, "factor: out of memory");
    return NULL;
  }
  rw c = {.pass = "factor",
          .rules = factor_rules,
          .n_rules = (int)(sizeof factor_rules / sizeof factor_rules[0]),
          .ud = &pl,
          .err = err};
  ir_func *g = rw_rebuild(&c, f, NULL);
  free(pl.mark), free(pl.groups);
  return g;
}
