/* passes.c — graph rewrites, tinygrad style: the optimizer is a short list
 * of named passes run to a fixed point, and each pass is a list of small
 * named rules.
 *
 * Every pass rebuilds the function front to back through one engine
 * (rebuild): input/param/const leaves are copied unchanged and in order (so
 * callers' bindings stay valid), every other node is remapped onto the new
 * function and offered to the pass's rules before it is added. Rules see
 * their inputs already rewritten, so a chain such as neg(neg(neg(neg(x))))
 * collapses in one sweep. A rule may replace the node by an existing one,
 * rewrite it into another node of the SAME type, or add helper nodes first.
 * Every added node goes through ir_add, so a faulty rule is an error, not
 * broken IR. Precondition of every pass: f verifies. */
#include "ir.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "recall: out of memory\n");
    abort();
  }
  return q;
}

static bool named_leaf(ir_op op) {
  return op == IR_OP_INPUT || op == IR_OP_PARAM || op == IR_OP_CONST;
}

/* ---- node keys: what makes two nodes the same computation ---- */

enum { KEY_LEN = 23 };

/* Op, type, inputs and the attributes the op uses (its IR_ATTR mask; the
 * fill value bitwise, so -0 and 0 stay apart and a NaN matches itself). */
static void key_of(ir_op op, int n_in, const int *in, const ir_attrs *a,
                   const ir_type *t, uint64_t k[KEY_LEN]) {
  unsigned m = ir_op_get(op)->attrs;
  memset(k, 0, sizeof(uint64_t) * KEY_LEN);
  k[0] = (uint64_t)op;
  k[1] = (uint64_t)t->dtype;
  k[2] = (uint64_t)t->rank;
  for (int i = 0; i < t->rank; i++) k[3 + i] = (uint64_t)t->dim[i];
  k[7] = (uint64_t)n_in;
  for (int i = 0; i < n_in; i++) k[8 + i] = (uint64_t)in[i];
  if (m & IR_ATTR_AXIS) k[12] = (uint64_t)a->axis;
  if (m & IR_ATTR_RANGE) k[13] = (uint64_t)a->start, k[14] = (uint64_t)a->end;
  if (m & IR_ATTR_N) k[15] = (uint64_t)a->n;
  if (m & IR_ATTR_PERM)
    for (int i = 0; i < t->rank; i++) k[16 + i] = (uint64_t)a->perm[i];
  if (m & IR_ATTR_TRANS) k[20] = (uint64_t)a->ta | (uint64_t)a->tb << 1;
  if (m & IR_ATTR_CAUSAL) k[21] = (uint64_t)a->causal;
  if (m & IR_ATTR_VALUE) memcpy(&k[22], &a->value, sizeof a->value);
}

static void key_node(const ir_node *n, uint64_t k[KEY_LEN]) {
  key_of(n->op, n->n_in, n->in, &n->attr, &n->type, k);
}

static uint64_t key_hash(const uint64_t k[KEY_LEN]) {
  uint64_t h = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < KEY_LEN; i++) {
    h ^= k[i] + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdu;
  }
  return h ^ (h >> 29);
}

/* Same nodes, same names, same outputs: "this pass changed nothing". */
static bool func_same(const ir_func *a, const ir_func *b) {
  if (a->n_nodes != b->n_nodes || a->n_outs != b->n_outs) return false;
  for (int i = 0; i < a->n_nodes; i++) {
    const ir_node *x = &a->nodes[i], *y = &b->nodes[i];
    uint64_t kx[KEY_LEN], ky[KEY_LEN];
    key_node(x, kx);
    key_node(y, ky);
    if (memcmp(kx, ky, sizeof kx) != 0) return false;
    if (!x->name != !y->name || (x->name && strcmp(x->name, y->name) != 0))
      return false;
  }
  for (int i = 0; i < a->n_outs; i++)
    if (a->outs[i].node != b->outs[i].node ||
        strcmp(a->outs[i].name, b->outs[i].name) != 0)
      return false;
  return true;
}

/* ---- the rewrite engine ---- */

/* A node not yet added: exactly what ir_add takes; from: 1 + the id in
 * the function being rebuilt of the node it rebuilds (0: a rule's helper). */
typedef struct {
  ir_op op;
  int n_in;
  int in[IR_MAX_INPUTS];
  ir_attrs attr;
  ir_type type;
  int from;
} cand;

/* A rule returns an existing node id that replaces the candidate, or: */
enum { RW_NONE = -1, RW_REWROTE = -2, RW_FAIL = -3 };

typedef struct rw rw;
typedef struct {
  const char *name;
  int (*fn)(rw *c, cand *n);
} rule;

typedef struct {
  int id;
  uint64_t hash;
} slot;

struct rw {
  const char *pass;
  const ir_func *f;
  int *uses;          /* per node of f: its users, outputs counted */
  bool *matmul_users; /* per node of f: every user is a matmul */
  ir_func *g;
  const rule *rules;
  int n_rules;
  bool cse;
  slot *tab; /* open addressing, id -1 = empty; only when cse */
  int tab_cap, tab_used;
  int line;
  ir_error *err;
};

static const ir_node *at(const rw *c, int id) { return &c->g->nodes[id]; }

static bool is_fill(const rw *c, int id, double v) {
  const ir_node *n = at(c, id);
  return n->op == IR_OP_FILL && n->attr.value == v;
}

static void tab_put(rw *c, int id, uint64_t h) {
  size_t mask = (size_t)c->tab_cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask)
    if (c->tab[i].id < 0) {
      c->tab[i] = (slot){id, h};
      c->tab_used++;
      return;
    }
}

static void tab_grow(rw *c) {
  slot *old = c->tab;
  int old_cap = c->tab_cap;
  c->tab_cap = old_cap ? 2 * old_cap : 1024;
  c->tab = xrealloc(NULL, sizeof *c->tab * (size_t)c->tab_cap);
  for (int i = 0; i < c->tab_cap; i++) c->tab[i].id = -1;
  c->tab_used = 0;
  for (int i = 0; i < old_cap; i++)
    if (old[i].id >= 0) tab_put(c, old[i].id, old[i].hash);
  free(old);
}

/* The id of an added node equal to n, or -1. */
static int cse_find(rw *c, const cand *n, uint64_t k[KEY_LEN], uint64_t *h) {
  key_of(n->op, n->n_in, n->in, &n->attr, &n->type, k);
  *h = key_hash(k);
  if (!c->tab_cap) return -1;
  size_t mask = (size_t)c->tab_cap - 1;
  for (size_t i = *h & mask; c->tab[i].id >= 0; i = (i + 1) & mask) {
    if (c->tab[i].hash != *h) continue;
    uint64_t k2[KEY_LEN];
    key_node(at(c, c->tab[i].id), k2);
    if (memcmp(k, k2, sizeof k2) == 0) return c->tab[i].id;
  }
  return -1;
}

/* Rewrite n with the rules until none applies, then add it (or, under CSE,
 * find its twin). Returns the node's id in g, or RW_FAIL. Rules call this
 * too for helper nodes, which are rewritten the same way. */
static int emit(rw *c, cand *n) {
  const char *last = NULL; /* the last rule that fired, for messages */
  for (int round = 0;; round++) {
    if (round == 64) {
      ir_err(c->err, "%s: rules on %s do not settle", c->pass,
             ir_op_name(n->op));
      return RW_FAIL;
    }
    int r = RW_NONE, i;
    for (i = 0; i < c->n_rules && r == RW_NONE; i++) r = c->rules[i].fn(c, n);
    if (r == RW_NONE) break;
    last = c->rules[i - 1].name;
    if (r == RW_FAIL) return r;
    if (r >= 0 && !ir_type_eq(&at(c, r)->type, &n->type)) {
      char s1[64], s2[64];
      ir_err(c->err, "rule %s replaced %s by %s", last,
             ir_type_str(&n->type, s1, sizeof s1),
             ir_type_str(&at(c, r)->type, s2, sizeof s2));
      return RW_FAIL;
    }
    if (r >= 0) return r;
  }
  uint64_t k[KEY_LEN], h = 0;
  if (c->cse) {
    int twin = cse_find(c, n, k, &h);
    if (twin >= 0) return twin;
  }
  int id = ir_add(c->g, n->op, n->in, n->n_in, &n->attr, &n->type, NULL, c->err);
  if (id < 0) {
    if (last) {
      char m[IR_MSG_MAX];
      snprintf(m, sizeof m, "%s", c->err->msg);
      ir_err(c->err, "rule %s made a bad node: %.400s", last, m);
    }
    return RW_FAIL;
  }
  c->g->nodes[id].line = c->line;
  if (c->cse) {
    if (2 * (c->tab_used + 1) > c->tab_cap) tab_grow(c);
    tab_put(c, id, h);
  }
  return id;
}

/* Copies an input/param/const node as is (name and data included). */
static int copy_leaf(ir_func *g, const ir_node *o) {
  if (g->n_nodes == g->cap_nodes) {
    g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 32;
    g->nodes = xrealloc(g->nodes, sizeof *g->nodes * (size_t)g->cap_nodes);
  }
  ir_node *n = &g->nodes[g->n_nodes];
  *n = *o;
  if (o->name) {
    size_t sz = strlen(o->name) + 1;
    n->name = memcpy(xrealloc(NULL, sz), o->name, sz);
  }
  if (o->data) {
    size_t sz = sizeof(float) * (size_t)ir_numel(&o->type);
    n->data = memcpy(xrealloc(NULL, sz), o->data, sz);
  }
  return g->n_nodes++;
}

/* Prefixes the message with the pass and the node being rebuilt. */
static ir_func *fail(rw *c, int id, int *map) {
  char m[IR_MSG_MAX];
  snprintf(m, sizeof m, "%s", c->err->msg);
  ir_err(c->err, "%s: %%%d: %.400s", c->pass, id, m);
  free(map);
  free(c->uses), free(c->matmul_users);
  free(c->tab);
  ir_func_free(c->g);
  return NULL;
}

/* The engine: f rebuilt through c's rules; keep (if non-NULL) says which
 * nodes survive (input/param/const always do). */
static ir_func *rebuild(rw *c, const ir_func *f, const bool *keep) {
  ir_error local;
  if (!c->err) c->err = &local;
  c->f = f;
  c->g = ir_func_new();
  c->uses = xrealloc(NULL, sizeof *c->uses * ((size_t)f->n_nodes + 1));
  c->matmul_users = xrealloc(NULL, sizeof *c->matmul_users * ((size_t)f->n_nodes + 1));
  for (int id = 0; id < f->n_nodes; id++) c->uses[id] = 0, c->matmul_users[id] = true;
  for (int id = 0; id < f->n_nodes; id++)
    for (int k = 0; k < f->nodes[id].n_in && k < IR_MAX_INPUTS; k++) {
      int x = f->nodes[id].in[k];
      if (x < 0 || x >= f->n_nodes) continue;
      c->uses[x]++;
      if (f->nodes[id].op != IR_OP_MATMUL) c->matmul_users[x] = false;
    }
  for (int i = 0; i < f->n_outs; i++)
    if (f->outs[i].node >= 0 && f->outs[i].node < f->n_nodes) {
      c->uses[f->outs[i].node]++;
      c->matmul_users[f->outs[i].node] = false;
    }
  int *map = xrealloc(NULL, sizeof *map * (size_t)f->n_nodes);
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *o = &f->nodes[id];
    map[id] = -1;
    c->line = o->line;
    if (named_leaf(o->op)) {
      map[id] = copy_leaf(c->g, o);
      continue;
    }
    if (keep && !keep[id]) continue;
    cand n = {.op = o->op, .n_in = o->n_in, .attr = o->attr, .type = o->type, .from = id + 1};
    if (o->n_in < 0 || o->n_in > IR_MAX_INPUTS) {
      ir_err(c->err, "%s: bad input count %d", ir_op_name(o->op), o->n_in);
      return fail(c, id, map);
    }
    for (int k = 0; k < o->n_in; k++) {
      int x = o->in[k];
      if (x < 0 || x >= id || map[x] < 0) {
        ir_err(c->err, "%s: input %d (%%%d) is not available", ir_op_name(o->op),
               k, x);
        return fail(c, id, map);
      }
      n.in[k] = map[x];
    }
    int r = emit(c, &n);
    if (r < 0) return fail(c, id, map);
    if (!ir_type_eq(&c->g->nodes[r].type, &o->type)) {
      char s1[64], s2[64];
      ir_err(c->err, "%s: rewritten to %s but has type %s", ir_op_name(o->op),
             ir_type_str(&c->g->nodes[r].type, s1, sizeof s1),
             ir_type_str(&o->type, s2, sizeof s2));
      return fail(c, id, map);
    }
    map[id] = r;
  }
  for (int i = 0; i < f->n_outs; i++) {
    int x = f->outs[i].node;
    if (x < 0 || x >= f->n_nodes || map[x] < 0) {
      ir_err(c->err, "output \"%s\" refers to a missing node", f->outs[i].name);
      return fail(c, x, map);
    }
    if (ir_add_output(c->g, f->outs[i].name, map[x], c->err) < 0)
      return fail(c, x, map);
  }
  free(map);
  free(c->uses), free(c->matmul_users);
  free(c->tab);
  c->tab = NULL;
  return c->g;
}

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
  ir_func *g = rebuild(&c, f, live);
  free(live);
  return g;
}

/* ---- cse ---- */

/* Merges nodes with the same op, inputs (after merging), used attributes
 * and type, fills with the same value bitwise included; one hash lookup per
 * node. Named leaves are never merged. */
ir_func *ir_pass_cse(const ir_func *f, ir_error *err) {
  rw c = {.pass = "cse", .cse = true, .err = err};
  return rebuild(&c, f, NULL);
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
  const ir_type *t0 = &at(c, n->in[0])->type;
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
    const ir_type *ti = &at(c, n->in[1])->type;
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
    int W = n->op == IR_OP_CONV1D_BWD_W ? n->attr.n : at(c, n->in[1])->type.dim[1];
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
    const ir_node *x = at(c, n->in[k]);
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
  return rebuild(&c, f, NULL);
}

/* ---- simplify: algebraic identities ---- */

/* n becomes x: x itself when the types agree, else x expanded to n's type
 * (x broadcast against a fill of a larger shape). */
static int become(rw *c, cand *n, int x) {
  if (ir_type_eq(&at(c, x)->type, &n->type)) return x;
  n->op = IR_OP_EXPAND;
  n->n_in = 1;
  n->in[0] = x;
  n->attr = (ir_attrs){0};
  return RW_REWROTE;
}

/* x+0, 0+x */
static int rule_add_zero(rw *c, cand *n) {
  if (n->op != IR_OP_ADD) return RW_NONE;
  if (is_fill(c, n->in[1], 0)) return become(c, n, n->in[0]);
  if (is_fill(c, n->in[0], 0)) return become(c, n, n->in[1]);
  return RW_NONE;
}

/* x-0 */
static int rule_sub_zero(rw *c, cand *n) {
  if (n->op != IR_OP_SUB || !is_fill(c, n->in[1], 0)) return RW_NONE;
  return become(c, n, n->in[0]);
}

/* x*1, 1*x */
static int rule_mul_one(rw *c, cand *n) {
  if (n->op != IR_OP_MUL) return RW_NONE;
  if (is_fill(c, n->in[1], 1)) return become(c, n, n->in[0]);
  if (is_fill(c, n->in[0], 1)) return become(c, n, n->in[1]);
  return RW_NONE;
}

/* x/1 */
static int rule_div_one(rw *c, cand *n) {
  if (n->op != IR_OP_DIV || !is_fill(c, n->in[1], 1)) return RW_NONE;
  return become(c, n, n->in[0]);
}

/* x*0, 0*x -> fill 0. Assumes x finite (inf*0 is NaN), as ML compilers do. */
static int rule_mul_zero(rw *c, cand *n) {
  if (n->op != IR_OP_MUL ||
      !(is_fill(c, n->in[0], 0) || is_fill(c, n->in[1], 0)))
    return RW_NONE;
  n->op = IR_OP_FILL;
  n->n_in = 0;
  n->attr = (ir_attrs){.value = 0};
  return RW_REWROTE;
}

/* neg(neg(x)) -> x */
static int rule_neg_neg(rw *c, cand *n) {
  if (n->op != IR_OP_NEG || at(c, n->in[0])->op != IR_OP_NEG) return RW_NONE;
  return at(c, n->in[0])->in[0];
}

/* reshape or expand to the input's own type -> x */
static int rule_same_type(rw *c, cand *n) {
  if (n->op != IR_OP_RESHAPE && n->op != IR_OP_EXPAND) return RW_NONE;
  if (!ir_type_eq(&at(c, n->in[0])->type, &n->type)) return RW_NONE;
  return n->in[0];
}

/* reshape(reshape(x)) -> reshape(x); expand(expand(x)) -> expand(x): x
 * broadcasts to the outer shape whenever it does through the inner one */
static int rule_collapse(rw *c, cand *n) {
  if ((n->op != IR_OP_RESHAPE && n->op != IR_OP_EXPAND) ||
      at(c, n->in[0])->op != n->op)
    return RW_NONE;
  n->in[0] = at(c, n->in[0])->in[0];
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
  const ir_node *in = at(c, n->in[0]);
  if (in->op != IR_OP_PERMUTE) return RW_NONE;
  int p[IR_MAX_RANK] = {0};
  for (int i = 0; i < n->type.rank; i++) p[i] = in->attr.perm[n->attr.perm[i]];
  memcpy(n->attr.perm, p, sizeof p);
  n->in[0] = in->in[0];
  return RW_REWROTE;
}

/* slice covering the whole axis -> x */
static int rule_slice_whole(rw *c, cand *n) {
  if (n->op != IR_OP_SLICE) return RW_NONE;
  const ir_type *t = &at(c, n->in[0])->type;
  if (n->attr.start != 0 || n->attr.end != t->dim[n->attr.axis]) return RW_NONE;
  return n->in[0];
}

/* slice(slice(x, a, b), c, d) on one axis -> slice(x, a+c, a+d) */
static int rule_slice_slice(rw *c, cand *n) {
  if (n->op != IR_OP_SLICE) return RW_NONE; /* else in[0] may not exist */
  const ir_node *in = at(c, n->in[0]);
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
  if (at(c, n->in[0])->type.dim[n->attr.axis] != 1) return RW_NONE;
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
    while (e < n->n_in && slices_meet(at(c, n->in[e - 1]), at(c, n->in[e]), axis)) e++;
    if (e - k == 1) {
      out[m++] = n->in[k++];
      continue;
    }
    const ir_node *first = at(c, n->in[k]);
    cand s = {.op = IR_OP_SLICE, .n_in = 1, .in = {first->in[0]},
              .attr = {.axis = axis, .start = first->attr.start,
                       .end = at(c, n->in[e - 1])->attr.end},
              .type = first->type};
    s.type.dim[axis] = s.attr.end - s.attr.start;
    merged = true;
    if (k == 0 && e == n->n_in) { /* the whole concat is that slice */
      *n = s;
      return RW_REWROTE;
    }
    int id = emit(c, &s);
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
  const ir_node *p = at(c, n->in[0]), *q = at(c, n->in[1]);
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
  int id = emit(c, &cat);
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
    const ir_node *q = at(c, n->in[j]);
    if (q->op != IR_OP_FILL || !isfinite(q->attr.value) || q->attr.value == 0) continue;
    if (j == 0 && n->op == IR_OP_DIV) continue; /* v / x is no scaling */
    if (!ir_type_eq(&at(c, n->in[!j])->type, &n->type)) continue;
    *k = !j;
    *v = q->attr.value;
    return true;
  }
  return false;
}

/* op(x, fill v) of x's own type, op the scaling's (div or mul) */
static int scaled(rw *c, ir_op op, int x, double v) {
  cand fill = {.op = IR_OP_FILL, .attr = {.value = v}, .type = at(c, x)->type};
  int fid = emit(c, &fill);
  if (fid < 0) return fid;
  cand m = {.op = op, .n_in = 2, .in = {x, fid}, .type = at(c, x)->type};
  return emit(c, &m);
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
  const ir_node *mm = at(c, n->in[k]);
  if (mm->op != IR_OP_MATMUL || c->uses[o->in[k]] != 1) return RW_NONE;
  /* copied: emitting nodes below may move g's node array */
  cand r = {.op = IR_OP_MATMUL, .n_in = 2, .in = {mm->in[0], mm->in[1]}, .attr = mm->attr,
            .type = n->type};
  int64_t na = ir_numel(&at(c, r.in[0])->type), nb = ir_numel(&at(c, r.in[1])->type);
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
    const ir_node *sn = at(c, n->in[j]); /* copied into sc: emit moves nodes */
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
    int id = emit(c, &m);
    if (id < 0) return RW_FAIL;
    int s = scaled(c, sc.op, id, v);
    return s < 0 ? RW_FAIL : s;
  }
  return RW_NONE;
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
    {"slice_whole", rule_slice_whole},
    {"slice_slice", rule_slice_slice},
    {"reduce_unit", rule_reduce_unit},
    {"concat_one", rule_concat_one},
    {"concat_slices", rule_concat_slices},
    {"add_pads", rule_add_pads},
    {"scale_operand", rule_scale_operand},
    {"scale_result", rule_scale_result},
};

/* Algebraic identities (table above). sub(x, x) is deliberately kept:
 * inf - inf is NaN, not 0. */
ir_func *ir_pass_simplify(const ir_func *f, ir_error *err) {
  rw c = {.pass = "simplify",
          .rules = simplify_rules,
          .n_rules = (int)(sizeof simplify_rules / sizeof simplify_rules[0]),
          .err = err};
  return rebuild(&c, f, NULL);
}

/* ---- the pipeline ---- */

/* simplify first (it exposes fills and dead nodes), fold next (on the fills
 * simplify made), then cse (merged nodes become dead) and dce last, so the
 * result of every round carries no dead nodes. */
static const ir_pass pipeline[] = {
    {"simplify", ir_pass_simplify},
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
      if (!func_same(cur, g)) {
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
