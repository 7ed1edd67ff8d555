/* rewrite.c — the rewrite engine of the IR passes (contract in
 * rewrite.h): node keys and their hash (CSE, "did a pass change
 * anything"), the rebuild that offers every node to a pass's rules, and
 * the CSE table. */
#include "rewrite.h"

#include <stdio.h>
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
bool rw_same_func(const ir_func *a, const ir_func *b) {
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

static void tab_put(rw *c, int id, uint64_t h) {
  size_t mask = (size_t)c->tab_cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask)
    if (c->tab[i].id < 0) {
      c->tab[i] = (rw_slot){id, h};
      c->tab_used++;
      return;
    }
}

static void tab_grow(rw *c) {
  rw_slot *old = c->tab;
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
    key_node(rw_at(c, c->tab[i].id), k2);
    if (memcmp(k, k2, sizeof k2) == 0) return c->tab[i].id;
  }
  return -1;
}

/* Rewrite n with the rules until none applies, then add it (or, under CSE,
 * find its twin). Returns the node's id in g, or RW_FAIL. Rules call this
 * too for helper nodes, which are rewritten the same way. */
int rw_emit(rw *c, cand *n) {
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
    if (r >= 0 && !ir_type_eq(&rw_at(c, r)->type, &n->type)) {
      char s1[64], s2[64];
      ir_err(c->err, "rule %s replaced %s by %s", last,
             ir_type_str(&n->type, s1, sizeof s1),
             ir_type_str(&rw_at(c, r)->type, s2, sizeof s2));
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
  c->map = NULL;
  free(c->uses), free(c->matmul_users);
  free(c->tab);
  ir_func_free(c->g);
  return NULL;
}

/* The engine: f rebuilt through c's rules; keep (if non-NULL) says which
 * nodes survive (input/param/const always do). */
ir_func *rw_rebuild(rw *c, const ir_func *f, const bool *keep) {
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
  int *map = xrealloc(NULL, sizeof *map * ((size_t)f->n_nodes + 1));
  for (int id = 0; id < f->n_nodes; id++) map[id] = -1;
  c->map = map;
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *o = &f->nodes[id];
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
    int r = rw_emit(c, &n);
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
  c->map = NULL;
  free(c->uses), free(c->matmul_users);
  free(c->tab);
  c->tab = NULL;
  return c->g;
}
