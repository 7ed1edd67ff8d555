/* sink.c — the sink pass: row-wise work after a gather done on the
 * table's rows instead, where the table has fewer rows than the gather
 * makes.
 *
 * A model's first layer reads x = gather(V, tokens): L rows, but only K
 * different ones (V is the [K,d] embedding). Whatever it does to each row
 * on its own (a norm, the projections x W^T, an activation) gives the
 * same rows computed on V's K rows and gathered after:
 *   f(gather(T, i)) = gather(f(T), i)        f row-wise
 * At K 16, L 64 that is a quarter of the first layer's projections (and,
 * once the gradient is taken, of their weight gradients: the gather's
 * VJP sums the rows of equal tokens before the product); at the
 * evaluation lengths up to 3L, a twelfth.
 *
 * Row-wise here: unary ops; binary ops between gathers of the same index
 * or with an operand broadcast across the index's axes; sums, maxima,
 * means, slices and pads along an axis of the row; a softmax without the
 * causal mask (the mask depends on the row's position); a matmul whose
 * left operand is the gather (one index axis, its rows). Everything that
 * mixes positions (conv1d, scan, rope, causal softmax, select_row) stops
 * it, and so does an operand that differs by position (a learned
 * positional table added to x). Each rewrite is exact per row: the values
 * equal the unrewritten ones up to the summation order of the matmuls'
 * gradients. */
#include "rewrite.h"

/* x (a node of g) is gather(T, i) with fewer table rows than index
 * entries: T, i and the index's rank. */
static bool gathered(const rw *c, int x, int *t, int *i, int *k) {
  const ir_node *n = rw_at(c, x);
  if (n->op != IR_OP_GATHER) return false;
  const ir_node *T = rw_at(c, n->in[0]), *I = rw_at(c, n->in[1]);
  if (T->type.dim[0] >= ir_numel(&I->type)) return false;
  *t = n->in[0], *i = n->in[1], *k = I->type.rank;
  return true;
}

/* Operand x of a binary op whose result has n's type broadcasts across
 * the k index axes, as an operand of the table-sized op too: it spans at
 * most the last index axis (there, the table's rows), with size 1 in
 * every index axis it spans. */
static bool across_index(const rw *c, int x, const ir_type *t, int k) {
  const ir_type *xt = &rw_at(c, x)->type;
  if (xt->rank > t->rank - k + 1) return false;
  for (int a = 0; a < xt->rank; a++)
    if (t->rank - xt->rank + a < k && xt->dim[a] != 1) return false;
  return true;
}

/* f(gather(T, i), ...) -> gather(f(T, ...), i) for the row-wise f above. */
static int rule_sink(rw *c, cand *n) {
  int t, idx, k, r = n->type.rank;
  cand m = *n;
  m.from = 0;
  if (ir_op_is_unary(n->op) || (n->op == IR_OP_SOFTMAX && !n->attr.causal)) {
    if (!gathered(c, n->in[0], &t, &idx, &k) || (n->op == IR_OP_SOFTMAX && r == k))
      return RW_NONE; /* a softmax along an index axis mixes positions */
    m.in[0] = t;
  } else if (ir_op_is_binary(n->op)) {
    int found = -1;
    for (int j = 0; j < 2 && found < 0; j++)
      if (gathered(c, n->in[j], &t, &idx, &k)) found = j;
    if (found < 0) return RW_NONE;
    int rows = rw_at(c, t)->type.dim[0];
    for (int j = 0; j < 2; j++) {
      int tj, ij, kj;
      if (gathered(c, n->in[j], &tj, &ij, &kj) && ij == idx &&
          rw_at(c, tj)->type.dim[0] == rows)
        m.in[j] = tj;
      else if (across_index(c, n->in[j], &n->type, k))
        m.in[j] = n->in[j];
      else
        return RW_NONE;
    }
  } else if (n->op == IR_OP_SUM || n->op == IR_OP_AMAX || n->op == IR_OP_MEAN ||
             n->op == IR_OP_SLICE || n->op == IR_OP_PAD) {
    if (!gathered(c, n->in[0], &t, &idx, &k) || n->attr.axis < k) return RW_NONE;
    m.in[0] = t;
    m.attr.axis = n->attr.axis - k + 1;
  } else if (n->op == IR_OP_MATMUL) {
    if (n->attr.ta || r != 2 || !gathered(c, n->in[0], &t, &idx, &k) || k != 1 ||
        rw_at(c, t)->type.rank != 2)
      return RW_NONE;
    m.in[0] = t;
  } else {
    return RW_NONE;
  }
  /* m's type: n's with the index axes replaced by the table's rows */
  m.type.rank = r - k + 1;
  m.type.dim[0] = rw_at(c, t)->type.dim[0];
  for (int a = 1; a < m.type.rank; a++) m.type.dim[a] = n->type.dim[a + k - 1];
  ir_type inferred;
  ir_error quiet;
  if (ir_infer_type(c->g, m.op, m.in, m.n_in, &m.attr, NULL, c->g->n_nodes, &inferred,
                    &quiet) < 0 ||
      !ir_type_eq(&inferred, &m.type))
    return RW_NONE; /* an operand that stretches the table's rows */
  int s = rw_emit(c, &m);
  if (s < 0) return s;
  cand g = {.op = IR_OP_GATHER, .n_in = 2, .in = {s, idx}, .type = n->type};
  return rw_emit(c, &g);
}

static const rule sink_rules[] = {
    {"sink_gather", rule_sink},
};

/* The rewrite, then the gathers it left without readers dropped. */
ir_func *ir_pass_sink(const ir_func *f, ir_error *err) {
  rw c = {.pass = "sink",
          .rules = sink_rules,
          .n_rules = (int)(sizeof sink_rules / sizeof sink_rules[0]),
          .cse = true,
          .err = err};
  ir_func *g = rw_rebuild(&c, f, NULL);
  if (!g) return NULL;
  ir_func *d = ir_pass_dce(g, err);
  ir_func_free(g);
  return d;
}
