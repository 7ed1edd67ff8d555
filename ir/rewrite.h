/* rewrite.h — the rewrite engine the IR passes share (private to ir/:
 * rewrite.c is the engine, passes.c the passes and their rules).
 *
 * A pass rebuilds a function front to back (rw_rebuild): input/param/const
 * leaves are copied unchanged and in order (so callers' bindings stay
 * valid), every other node is remapped onto the new function and offered
 * to the pass's rules before it is added. Rules see their inputs already
 * rewritten, so a chain such as neg(neg(neg(neg(x)))) collapses in one
 * sweep. A rule may replace the node by an existing one, rewrite it into
 * another node of the SAME type, or add helper nodes first (rw_emit).
 * Every added node goes through ir_add, so a faulty rule is an error, not
 * broken IR. */
#ifndef RECALL_IR_REWRITE_H
#define RECALL_IR_REWRITE_H

#include "ir.h"

#include <stdint.h>

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
} rw_slot;

/* One pass over one function: its rules and the state of the rebuild.
 * Passes set pass, rules/n_rules, cse, err and ud; the engine the rest. */
struct rw {
  const char *pass;
  const ir_func *f;
  int *uses;          /* per node of f: its users, outputs counted */
  bool *matmul_users; /* per node of f: every user is a matmul */
  ir_func *g;
  const rule *rules;
  int n_rules;
  bool cse;
  const int *map;     /* per node of f: its id in g, -1 until rebuilt */
  const void *ud;     /* the pass's own data for its rules, or NULL */
  rw_slot *tab; /* open addressing, id -1 = empty; only when cse */
  int tab_cap, tab_used;
  int line;
  ir_error *err;
};

/* f rebuilt through c's rules (c->pass, rules, n_rules, cse, err set by
 * the caller); keep (if non-NULL) says which nodes survive (input/param/
 * const always do). Returns the new function, or NULL with c->err set
 * ("PASS: %ID: what"). Precondition: f verifies. */
ir_func *rw_rebuild(rw *c, const ir_func *f, const bool *keep);

/* Rewrites n with the rules until none applies, then adds it (under CSE,
 * finds its twin instead). Returns the node's id in the new function, or
 * RW_FAIL. Rules call it for helper nodes, which are rewritten the same
 * way. */
int rw_emit(rw *c, cand *n);

/* Same nodes, same names, same outputs: "this pass changed nothing". */
bool rw_same_func(const ir_func *a, const ir_func *b);

/* Node id of the function being built. */
static inline const ir_node *rw_at(const rw *c, int id) { return &c->g->nodes[id]; }

/* Whether node id of the function being built is fill(v). */
static inline bool rw_is_fill(const rw *c, int id, double v) {
  const ir_node *n = rw_at(c, id);
  return n->op == IR_OP_FILL && n->attr.value == v;
}

#endif
