/* flops.c — the floating-point work one run of a function needs, counted
 * from its IR (`recall bench` divides it by the measured time).
 *
 * Per op, for output numel n (inputs' numel where said):
 *   matmul           2 m n k per batch
 *   unary, binary    1 per element; exp, log, sigmoid, silu, softplus,
 *                    tanh CG_FLOPS_EXP (10) each (range reduction and a
 *                    degree-6 polynomial, what the inline code costs)
 *   sum, mean, amax  1 per input element
 *   softmax          max 1 + sub 1 + exp + sum 1 + div 1 per element
 *   cross_entropy    the same per logit, plus a log per row
 *   conv1d (all 3)   2 per (t, e, tap) whose time index is in range
 *   scan             per (t, e, s): d*A 1, exp, h = a h + du B 3,
 *                    y += C h 2; plus d*u per (t, e)
 *   scan_bwd         the forward recurrence again (no y) and per
 *                    (t, e, s) 17 more for the reverse pass
 *   scatter_add      1 per source element
 *   everything else  0 (leaves, fills, views, layout, gathers, indices)
 * Causal attention counts only the unmasked triangle: the causal softmax
 * itself, a matmul whose left operand is a causal softmax (P V), and a
 * matmul whose result reaches one through elementwise ops (Q K^T): these
 * are the FLOPs actually needed, which the generated code skips. */
#include "codegen.h"

#include <stdlib.h>

enum { CG_FLOPS_EXP = 10 };

static double unary_cost(ir_op op) {
  switch (op) {
  case IR_OP_EXP:
  case IR_OP_LOG:
  case IR_OP_SIGMOID:
  case IR_OP_SILU:
  case IR_OP_SOFTPLUS:
  case IR_OP_TANH: return CG_FLOPS_EXP;
  default: return 1;
  }
}

/* Fraction of [.., Lq, Lk] left by the causal mask (key j of row i kept
 * when j <= i + Lk - Lq). */
static double causal_frac(const ir_type *t) {
  int r = t->rank;
  if (r < 2) return 1;
  int64_t Lq = t->dim[r - 2], Lk = t->dim[r - 1], kept = 0;
  for (int64_t i = 0; i < Lq; i++) {
    int64_t k = i + Lk - Lq + 1;
    kept += k < 0 ? 0 : k > Lk ? Lk : k;
  }
  return Lq > 0 && Lk > 0 ? (double)kept / (double)(Lq * Lk) : 1;
}

/* Does v reach a causal softmax through at most `depth` elementwise ops
 * of its shape? */
static bool feeds_causal(const ir_func *f, int v, int depth) {
  for (int w = v + 1; w < f->n_nodes; w++) {
    const ir_node *n = &f->nodes[w];
    bool uses = false;
    for (int i = 0; i < n->n_in; i++) uses |= n->in[i] == v;
    if (!uses) continue;
    if (n->op == IR_OP_SOFTMAX && n->attr.causal) return true;
    if ((ir_op_is_unary(n->op) || ir_op_is_binary(n->op)) &&
        ir_type_eq(&n->type, &f->nodes[v].type) && depth > 0 &&
        feeds_causal(f, w, depth - 1))
      return true;
  }
  return false;
}

static double node_flops(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  double numel = (double)ir_numel(&n->type);
  const ir_type *t0 = n->n_in > 0 ? &f->nodes[n->in[0]].type : NULL;
  if (ir_op_is_unary(n->op)) return numel * unary_cost(n->op);
  if (ir_op_is_binary(n->op)) return numel;
  switch (n->op) {
  case IR_OP_MATMUL: {
    int r = n->type.rank;
    double k = n->attr.ta ? t0->dim[r - 2] : t0->dim[r - 1];
    double fl = 2 * numel * k;
    const ir_node *a = &f->nodes[n->in[0]];
    if (a->op == IR_OP_SOFTMAX && a->attr.causal && !n->attr.ta)
      return fl * causal_frac(&a->type);
    if (feeds_causal(f, v, 3)) return fl * causal_frac(&n->type);
    return fl;
  }
  case IR_OP_SUM:
  case IR_OP_MEAN:
  case IR_OP_AMAX: return (double)ir_numel(t0);
  case IR_OP_SOFTMAX:
    return numel * (4 + CG_FLOPS_EXP) * (n->attr.causal ? causal_frac(&n->type) : 1);
  case IR_OP_CROSS_ENTROPY:
    return (double)ir_numel(t0) * (3 + CG_FLOPS_EXP) + numel * CG_FLOPS_EXP;
  case IR_OP_SCATTER_ADD: return (double)ir_numel(t0);
  case IR_OP_CONV1D:
  case IR_OP_CONV1D_BWD_X:
  case IR_OP_CONV1D_BWD_W: {
    int64_t L = t0->dim[0], E = t0->dim[1];
    int64_t W = n->op == IR_OP_CONV1D_BWD_W ? n->attr.n : f->nodes[n->in[1]].type.dim[1];
    int64_t taps = 0; /* (t, k) pairs with t-(W-1)+k in [0, L) */
    for (int64_t k = 0; k < W; k++) {
      int64_t lo = W - 1 - k;
      taps += lo < L ? L - lo : 0;
    }
    return 2.0 * (double)(taps * E);
  }
  case IR_OP_ROPE: return 3 * numel; /* per pair: 4 multiplies, 2 adds */
  case IR_OP_SCAN: {
    double L = n->type.dim[0], E = n->type.dim[1], N = f->nodes[n->in[2]].type.dim[1];
    return L * E * N * (6 + CG_FLOPS_EXP) + L * E;
  }
  case IR_OP_SCAN_BWD: {
    const ir_type *dy = &f->nodes[n->in[3]].type;
    double L = dy->dim[0], E = dy->dim[1], N = f->nodes[n->in[1]].type.dim[1];
    return L * E * N * (4 + CG_FLOPS_EXP + 17) + 3 * L * E;
  }
  default: return 0;
  }
}

double cg_flops(const ir_func *f) {
  /* only what the outputs need (what the kernel computes) */
  bool *live = calloc((size_t)f->n_nodes + 1, sizeof *live);
  if (!live) abort();
  for (int j = 0; j < f->n_outs; j++) live[f->outs[j].node] = true;
  double total = 0;
  for (int v = f->n_nodes - 1; v >= 0; v--) {
    if (!live[v]) continue;
    for (int i = 0; i < f->nodes[v].n_in; i++) live[f->nodes[v].in[i]] = true;
    total += node_flops(f, v);
  }
  free(live);
  return total;
}
