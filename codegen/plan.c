/* plan.c — decides, for every node, where its value lives: a leaf
 * pointer, an output buffer, an arena slot, its input's bytes (reshape,
 * or a slice that is a contiguous block of its input), a region of the
 * concat that reads it (place_concats), or nowhere (fused into a
 * consumer's loop, or dead). Then packs the arena:
 * slots are disjoint regions, each reused by values whose lifetimes do not
 * overlap (best fit, growing a free slot rather than adding one).
 *
 * Fusion: elementwise ops and strided views (permute, slice, expand) whose
 * every user sits in the same loop are computed there, in registers (a
 * reduction's loop, over its input's shape, counts as such a loop):
 *  - an elementwise node joins when all its users are elementwise nodes of
 *    one group and it has the group's shape (so nothing is recomputed);
 *  - a view joins when all its users are in one group (it is only an
 *    address computation, whatever its shape);
 *  - a fill never needs memory unless a non-loop op reads it;
 *  - scan_bwd reads the concat(u, delta) of its operands in place.
 * The group is emitted at its root's position (the last node). A later
 * node may be made in an earlier group's loop as well, its sibling
 * (mark_siblings): a softplus's VJP sigmoid from its exp, a product of
 * a unary result with its input (silu), a column sum of the group's
 * result; its slot then lives from the group on. */
#include "cgint.h"

#include <stdlib.h>
#include <string.h>

bool cg_is_view(ir_op op) {
  return op == IR_OP_PERMUTE || op == IR_OP_SLICE || op == IR_OP_EXPAND;
}

bool cg_is_ewise(ir_op op) { return ir_op_is_unary(op) || ir_op_is_binary(op); }

bool cg_is_reduce(ir_op op) {
  return op == IR_OP_SUM || op == IR_OP_AMAX || op == IR_OP_MEAN;
}

/* A slice whose axes before `axis` all have size 1 is a contiguous block
 * of its input: an alias at an offset, never a copy. */
bool cg_slice_is_offset(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  if (n->op != IR_OP_SLICE) return false;
  for (int d = 0; d < n->attr.axis; d++)
    if (n->type.dim[d] != 1) return false;
  return true;
}

/* Scratch of the scans (ops_scan.c), in floats, with S = N*E, blocks of
 * [N,E] B = cg_scan_block(S) apart:
 *   scan      0: A^T [N,E] (+ the state and one step's decays [N,E] each
 *             when unpaired);
 *             1, 2 (paired): every state H [L+1 blocks], every decay a [L]
 *             (or block by block of channels: kept_floats)
 *   scan_bwd  0: A^T, the carry G, dA^T [N,E] each, partial sums
 *             [L 2N, CG_SCAN_PART] (a row pair per step; or per step
 *             of one pass: CG_SCAN_STEPS);
 *             1, 2 (unpaired): its own H and a */
/* Floats of each kept array (states, decays) of a scan over L steps of
 * E channels and N states, in either layout (cg_scan_by_block); the
 * decays' slot has 4 KiB more (ops_scan.c kept_arrays). */
static int64_t kept_floats(int64_t L, int64_t E, int64_t N) {
  int64_t steps = (L + 1) * cg_scan_block(N * E), blocks = (L + 1) * N * ((E + 15) / 16 * 16);
  return steps > blocks ? steps : blocks;
}

int64_t cg_scratch_bytes(const ir_func *f, const cg_plan *p, int v, int k) {
  const ir_node *n = &f->nodes[v];
  bool paired = p->node[v].pair >= 0;
  if (n->op == IR_OP_MATMUL) return k == 0 ? cg_matmul_scratch(f, v) : 0;
  if (n->op == IR_OP_CONV1D || n->op == IR_OP_CONV1D_BWD_X ||
      n->op == IR_OP_CONV1D_BWD_W)
    return k == 0 ? cg_conv_scratch(f, v) : 0;
  if (n->op == IR_OP_SCAN) {
    int64_t L = n->type.dim[0], E = n->type.dim[1], N = f->nodes[n->in[2]].type.dim[1];
    int64_t S = E * N, B = cg_scan_block(S);
    if (k == 0) return 4 * (paired ? S : 2 * B + S);
    return paired ? 4 * (kept_floats(L, E, N) + (k == 2 ? 1024 : 0)) : 0;
  }
  if (n->op == IR_OP_SCAN_BWD) {
    const ir_type *dy = &f->nodes[n->in[3]].type;
    int64_t L = dy->dim[0], N = f->nodes[n->in[1]].type.dim[1], S = dy->dim[1] * N;
    int64_t B = cg_scan_block(S);
    int64_t rows = L > CG_SCAN_STEPS ? L : CG_SCAN_STEPS; /* a row pair per step, or per pass */
    if (k == 0) return 4 * (3 * B + rows * 2 * N * CG_SCAN_PART);
    return paired ? 0 : 4 * (kept_floats(L, dy->dim[1], N) + (k == 2 ? 1024 : 0));
  }
  return 0;
}

/* The scan whose inputs scan_bwd w differentiates: w = scan_bwd(concat(u,
 * delta), A, bc, dy) for v = scan(u, delta, A, bc); -1 if none. */
static int scan_of(const ir_func *f, const cg_plan *p, int w) {
  const ir_node *b = &f->nodes[w], *ud = &f->nodes[b->in[0]];
  if (ud->op != IR_OP_CONCAT || ud->n_in != 2 || ud->attr.axis != 1) return -1;
  for (int v = 0; v < w; v++) {
    const ir_node *n = &f->nodes[v];
    if (n->op == IR_OP_SCAN && p->node[v].kind == CG_MAT && p->node[v].pair < 0 &&
        n->in[0] == ud->in[0] && n->in[1] == ud->in[1] && n->in[2] == b->in[1] &&
        n->in[3] == b->in[2])
      return v;
  }
  return -1;
}

int cg_copied_operand(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  switch (n->op) {
  case IR_OP_MATMUL: return cg_matmul_copied(f, v);
  case IR_OP_SCAN: return n->in[2];
  case IR_OP_SCAN_BWD: return n->in[1];
  case IR_OP_CONV1D: case IR_OP_CONV1D_BWD_X: return n->in[1]; /* w^T */
  default: return -1;
  }
}

/* ---- hoist and prep (cgint.h): work that is the same for every example ----
 * A training step runs the kernel once per example with the same params:
 * A = -exp(A_log), the transposed copies of weights a matmul reads (y =
 * x W^T), the scans' A^T and the convolutions' w^T would be made 64
 * times over. With
 * cg_options.hoist the prep entry makes them once per batch (per arena)
 * and the kernel reads them. A node is param-only when no input leaf
 * reaches it; it is hoisted when it is materialised (not an output, not
 * placed in a concat, not cut at the row an input names) and everything
 * its loop reads is ready in the prep entry: leaves, hoisted nodes,
 * aliases of them, fused param-only nodes. */
static void mark_hoist(const ir_func *f, cg_plan *p, const bool *is_out) {
  int n = f->n_nodes;
  bool *ready = calloc((size_t)n + 1, sizeof *ready);
  if (!ready) abort();
  for (int v = 0; v < n; v++) {
    const ir_node *nd = &f->nodes[v];
    cg_node_plan *q = &p->node[v];
    if (nd->op == IR_OP_INPUT || q->kind == CG_DEAD) continue;
    bool ok = true;
    for (int i = 0; i < nd->n_in; i++) ok = ok && ready[nd->in[i]];
    switch (q->kind) {
    case CG_LEAF: ready[v] = true; break;
    case CG_ALIAS: ready[v] = ok; break;
    case CG_FUSED: ready[v] = ok; break; /* computed in its root's loop */
    case CG_MAT: /* (upto and prefix nodes read the row of an input) */
      q->hoist = ready[v] = ok && !is_out[v] && q->into < 0 && !q->upto && !q->prefix;
      break;
    default: break;
    }
  }
  for (int v = 0; v < n; v++) {
    cg_node_plan *q = &p->node[v];
    int u = q->kind == CG_MAT && !q->hoist ? cg_copied_operand(f, v) : -1;
    q->prep = u >= 0 && ready[u];
    p->n_hoisted += q->hoist || q->prep;
  }
  free(ready);
}

static int64_t round64(int64_t b) { return (b + 63) & ~(int64_t)63; }

typedef struct {
  int n, cap;
  int64_t *bytes;
  bool *busy;
} slots;

static int slot_get(slots *s, int64_t bytes) {
  int best = -1, big = -1;
  for (int i = 0; i < s->n; i++) {
    if (s->busy[i]) continue;
    if (s->bytes[i] >= bytes && (best < 0 || s->bytes[i] < s->bytes[best]))
      best = i;
    if (big < 0 || s->bytes[i] > s->bytes[big]) big = i;
  }
  if (best < 0 && big >= 0) { /* grow the largest free slot */
    best = big;
    s->bytes[best] = bytes;
  }
  if (best < 0) {
    if (s->n == s->cap) {
      s->cap = s->cap ? 2 * s->cap : 16;
      s->bytes = realloc(s->bytes, sizeof *s->bytes * (size_t)s->cap);
      s->busy = realloc(s->busy, sizeof *s->busy * (size_t)s->cap);
      if (!s->bytes || !s->busy) abort();
    }
    best = s->n++;
    s->bytes[best] = bytes;
  }
  s->busy[best] = true;
  return best;
}

/* Node u's value gets a slot from now until its last use lu[u], where the
 * list bucket[lu[u]] (linked by next) frees it. */
static void take_slot(const ir_func *f, cg_plan *p, slots *s, const int *lu, int *bucket,
                      int *next, int u) {
  p->node[u].slot = slot_get(s, round64(4 * ir_numel(&f->nodes[u].type)));
  next[u] = bucket[lu[u]];
  bucket[lu[u]] = u;
}

/* The group a (group-capable) node belongs to, or -2 if none. */
static int group_of(const ir_func *f, const cg_plan *p, int w) {
  const cg_node_plan *q = &p->node[w];
  if (q->kind == CG_FUSED) return q->root;
  ir_op op = f->nodes[w].op;
  if (q->kind == CG_MAT && (cg_is_ewise(op) || cg_is_view(op) || cg_is_reduce(op)))
    return w;
  return -2;
}

/* The shape a group's loop runs over. */
static const ir_type *domain(const ir_func *f, int g) {
  const ir_node *n = &f->nodes[g];
  return cg_is_reduce(n->op) ? &f->nodes[n->in[0]].type : &n->type;
}

static bool same_dims(const ir_type *a, const ir_type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return false;
  return true;
}

/* Is v the concat(u, delta) that only scan_bwd w reads (w = scan_bwd(v,
 * ...))? Then w reads u and delta where they are (ops_scan.c): v is fused
 * into w, which keeps u and delta alive until it runs. */
static bool scan_operands(const ir_func *f, const cg_plan *p, int v,
                          int **users, const int *n_users, const bool *is_out) {
  const ir_node *n = &f->nodes[v];
  if (n->op != IR_OP_CONCAT || n->n_in != 2 || n->attr.axis != 1 || is_out[v] ||
      n_users[v] != 1)
    return false;
  int w = users[v][0];
  if (f->nodes[w].op != IR_OP_SCAN_BWD || f->nodes[w].in[0] != v || p->node[w].kind != CG_MAT)
    return false;
  return 2 * f->nodes[n->in[0]].type.dim[1] == n->type.dim[1];
}

/* Is v the pad of dy's last rows that only scan_bwd w reads (w =
 * scan_bwd(.., v): the last layer's gradient, read at the last row)? w
 * reads dy only in its rows from the pad's start on (ops_scan.c), so
 * it reads them where the pad's input has them: v is fused into w, the
 * zeros are never written. */
static bool scan_dy_pad(const ir_func *f, const cg_plan *p, int v, int **users,
                        const int *n_users, const bool *is_out) {
  const ir_node *n = &f->nodes[v];
  if (n->op != IR_OP_PAD || n->attr.axis != 0 || n->attr.end != 0 || n->attr.start <= 0 ||
      n->type.rank != 2 || is_out[v] || n_users[v] != 1)
    return false;
  int w = users[v][0];
  return f->nodes[w].op == IR_OP_SCAN_BWD && f->nodes[w].in[3] == v &&
         f->nodes[w].in[0] != v && p->node[w].kind == CG_MAT;
}

/* sibling (cgint.h): the softplus's VJP is g sigmoid(x), whose exp the
 * forward softplus(x) already computes. A sigmoid s whose input x a
 * materialised softplus p earlier reads too is materialised and made in
 * p's loop (ops_ew.c), from p's exp: its readers load it instead of
 * running the exp again. x must have storage, so that nothing else is
 * fused into s; neither is an output, placed, hoisted or cut at a row.
 * Also a product of a unary result with its own input (silu), made in
 * the result's loop, and a sum of such a result over an outer axis,
 * added up in its loop. A fusion: not with cg_options.no_fuse. */
/* v may take part in a sibling pair: not placed in a concat, not made by
 * the prep entry, not cut at a row, not in a pair already */
static bool unbound(const cg_plan *p, int v) {
  const cg_node_plan *q = &p->node[v];
  return q->into < 0 && !q->hoist && !q->upto && !q->prefix && q->sibling < 0;
}

static void mark_siblings(const ir_func *f, cg_plan *p, bool fuse, const bool *is_out,
                          int **users, const int *n_users) {
  for (int v = 0; v < f->n_nodes; v++) p->node[v].sibling = -1;
  if (!fuse) return;
  for (int s = 0; s < f->n_nodes; s++) {
    const ir_node *n = &f->nodes[s];
    cg_node_plan *q = &p->node[s];
    int x = n->in[0];
    if (n->op != IR_OP_SIGMOID || q->kind == CG_DEAD || is_out[s] || !unbound(p, s) ||
        p->node[x].kind == CG_FUSED)
      continue;
    for (int k = 0; k < n_users[x]; k++) {
      int w = users[x][k];
      cg_node_plan *r = &p->node[w];
      if (w < s && f->nodes[w].op == IR_OP_SOFTPLUS && r->kind == CG_MAT &&
          !is_out[w] && unbound(p, w) && same_dims(&f->nodes[w].type, &n->type)) {
        q->kind = CG_MAT, q->root = -1;
        q->sibling = w, r->sibling = s;
        p->n_siblings++;
        break;
      }
    }
  }
  /* a product of a materialised unary result with that result's own
   * input (silu x sigmoid(x), the sigmoid kept apart for the backward):
   * the same multiply, so the same bits */
  for (int s = 0; s < f->n_nodes; s++) {
    const ir_node *n = &f->nodes[s];
    cg_node_plan *q = &p->node[s];
    if (n->op != IR_OP_MUL || q->kind != CG_MAT || is_out[s] || !unbound(p, s)) continue;
    for (int i = 0; i < 2; i++) {
      int r = n->in[i];
      const ir_node *u = &f->nodes[r];
      cg_node_plan *rq = &p->node[r];
      if (ir_op_is_unary(u->op) && u->in[0] == n->in[1 - i] && u->type.dtype == IR_F32 &&
          rq->kind == CG_MAT && !is_out[r] && unbound(p, r) && same_dims(&u->type, &n->type)) {
        q->sibling = r, rq->sibling = s;
        p->n_siblings++;
        break;
      }
    }
  }
  /* the sums over an outer axis of a materialised elementwise result
   * (bias gradients): in the order of their own loop, so the same bits */
  for (int s = 0; s < f->n_nodes; s++) {
    const ir_node *n = &f->nodes[s];
    cg_node_plan *q = &p->node[s], *r = &p->node[n->in[0]];
    const ir_node *x = &f->nodes[n->in[0]];
    if (n->op != IR_OP_SUM || q->kind != CG_MAT || is_out[s] || !unbound(p, s) ||
        n->attr.axis >= x->type.rank - 1)
      continue;
    if (cg_is_ewise(x->op) && x->type.dtype == IR_F32 && r->kind == CG_MAT &&
        unbound(p, n->in[0])) {
      q->sibling = n->in[0], r->sibling = s;
      p->n_siblings++;
    }
  }
}

/* Mamba's skip term: x = u * D (D a row [E]), read by an add with
 * scan(u, ...) alone: the scan adds u D as it stores y (ops_scan.c), x
 * is not made at all. The row D, or -1. */
static int skip_term(const ir_func *f, const cg_plan *p, int m, int x, const int *n_users,
                     const bool *is_out) {
  const ir_node *s = &f->nodes[m], *n = &f->nodes[x];
  if (s->op != IR_OP_SCAN || n->op != IR_OP_MUL || n_users[x] != 1 || is_out[x] ||
      p->node[x].sibling >= 0 || (p->node[x].kind != CG_FUSED && p->node[x].kind != CG_MAT))
    return -1;
  for (int i = 0; i < 2; i++) {
    int u = n->in[i], D = n->in[1 - i];
    const ir_type *dt = &f->nodes[D].type;
    cg_kind dk = p->node[D].kind;
    if (u == s->in[0] && dt->dim[dt->rank - 1] == s->type.dim[1] && ir_numel(dt) == s->type.dim[1] &&
        (dk == CG_LEAF || (dk == CG_MAT && (D < m || p->node[D].hoist))))
      return D;
  }
  return -1;
}

/* An add of a matmul's product (the add its one reader) and a value in
 * memory before the matmul runs (a bias row, the residual stream, an
 * earlier such sum): the matmul adds it to each tile as it stores it,
 * and the add becomes its product's bytes (CG_ALIAS, folded): one pass
 * over the result fewer, the same bits (the sum over p, then the
 * addend, as the add did). So too a convolution's (conv1d + bias), and
 * a scan's with its skip term (skip_term). Not where rows are cut
 * (upto, prefix), the causal mask shapes the product, or another plan
 * already claims either node. */
static void fold_adds(const ir_func *f, cg_plan *p, const bool *is_out, const int *n_users) {
  for (int a = 0; a < f->n_nodes; a++) {
    const ir_node *n = &f->nodes[a];
    cg_node_plan *qa = &p->node[a];
    if (n->op != IR_OP_ADD || n->type.dtype != IR_F32 || is_out[a] ||
        (qa->kind != CG_MAT && qa->kind != CG_FUSED) || qa->sibling >= 0 || qa->into >= 0 ||
        qa->hoist || qa->upto || qa->prefix || qa->lower)
      continue;
    for (int i = 0; i < 2; i++) {
      int m = n->in[i], x = n->in[1 - i];
      cg_node_plan *qm = &p->node[m];
      const ir_type *xt = &f->nodes[x].type, *t = &n->type;
      cg_kind xk = p->node[x].kind;
      bool row = xt->dim[xt->rank - 1] == t->dim[t->rank - 1] &&
                 ir_numel(xt) == t->dim[t->rank - 1];
      int D = skip_term(f, p, m, x, n_users, is_out);
      bool ok;
      if (D >= 0) /* the scan makes the skip term itself */
        ok = qm->kind == CG_MAT && n_users[m] == 1 && !is_out[m] && !qm->upto &&
             !qm->prefix && qm->read_at < 0 && qm->addend < 0;
      else
        ok = (f->nodes[m].op == IR_OP_MATMUL ? cg_matmul_can_add(f, m) : cg_conv_can_add(f, m)) &&
             qm->kind == CG_MAT && n_users[m] == 1 && !is_out[m] && qm->into < 0 &&
             qm->sibling < 0 && !qm->hoist && !qm->upto && !qm->prefix && !qm->lower &&
             qm->addend < 0 && same_dims(&f->nodes[m].type, t) &&
             (x < m || xk == CG_LEAF || p->node[x].hoist) && (same_dims(xt, t) || row) &&
             (xk == CG_MAT || xk == CG_LEAF || xk == CG_ALIAS);
      if (!ok) continue;
      qm->addend = D >= 0 ? D : x;
      if (D >= 0) p->node[x].kind = CG_DEAD, p->node[x].root = -1;
      qa->kind = CG_ALIAS, qa->root = -1, qa->folded = m;
      p->n_folded++;
      break;
    }
  }
}

/* Kinds, in reverse order so that every user is decided first. */
static void decide_kinds(const ir_func *f, cg_plan *p, const bool *live,
                         const bool *is_out, int **users, const int *n_users,
                         bool fuse) {
  for (int v = f->n_nodes - 1; v >= 0; v--) {
    const ir_node *n = &f->nodes[v];
    cg_node_plan *q = &p->node[v];
    q->root = -1;
    if (!live[v]) {
      q->kind = CG_DEAD;
    } else if (ir_op_is_leaf(n->op) && n->op != IR_OP_FILL) {
      q->kind = CG_LEAF;
    } else if (n->op == IR_OP_RESHAPE || cg_slice_is_offset(f, v)) {
      q->kind = CG_ALIAS;
    } else if (n->op == IR_OP_FILL) {
      bool mem = is_out[v]; /* unless every user is a loop that inlines it */
      for (int k = 0; k < n_users[v]; k++) {
        int w = users[v][k];
        ir_op uop = f->nodes[w].op;
        if (!cg_is_ewise(uop) && !(cg_is_view(uop) && p->node[w].kind != CG_ALIAS))
          mem = true;
      }
      q->kind = mem ? CG_MAT : CG_FUSED; /* fused fill: an inline constant */
    } else if (fuse && (scan_operands(f, p, v, users, n_users, is_out) ||
                        scan_dy_pad(f, p, v, users, n_users, is_out))) {
      q->kind = CG_FUSED;
      q->root = users[v][0];
    } else if (fuse && !is_out[v] && n_users[v] > 0 &&
               (cg_is_ewise(n->op) || cg_is_view(n->op))) {
      int g = group_of(f, p, users[v][0]);
      bool ok = g >= 0;
      for (int k = 0; ok && k < n_users[v]; k++) {
        int w = users[v][k];
        ir_op uop = f->nodes[w].op;
        ok = group_of(f, p, w) == g &&
             (cg_is_ewise(uop) || (cg_is_view(n->op) && cg_is_view(uop)) ||
              cg_is_reduce(uop)); /* then w == g: its input */
      }
      if (ok && cg_is_ewise(n->op)) ok = same_dims(&n->type, domain(f, g));
      q->kind = ok ? CG_FUSED : CG_MAT;
      if (ok) q->root = g;
    } else {
      q->kind = CG_MAT;
    }
  }
}

/* A concat that is an output and joins contiguous blocks (every axis
 * before its own of size 1) has its inputs computed in place, in its
 * buffer, when the concat is their only user and they own their storage:
 * the weight gradient of nn.linear_parts is written where it belongs, not
 * copied there. (Outputs only: their buffers exist for the whole kernel,
 * so the inputs' lifetimes need no arena planning.) */
static void place_concats(const ir_func *f, cg_plan *p, const bool *is_out,
                          const int *n_users) {
  for (int w = 0; w < f->n_nodes; w++) {
    const ir_node *n = &f->nodes[w];
    if (n->op != IR_OP_CONCAT || !is_out[w] || p->node[w].kind != CG_MAT) continue;
    bool contiguous = true;
    for (int d = 0; d < n->attr.axis; d++) contiguous &= n->type.dim[d] == 1;
    if (!contiguous) continue;
    cg_access a;
    cg_contig(&n->type, &a);
    int64_t at = 0;
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      bool once = true;
      for (int j = 0; j < n->n_in; j++) once &= j == k || n->in[j] != v;
      if (once && !is_out[v] && n_users[v] == 1 && p->node[v].kind == CG_MAT &&
          p->node[v].into < 0) {
        p->node[v].into = w;
        p->node[v].into_off = at * a.st[n->attr.axis];
      }
      at += f->nodes[v].type.dim[n->attr.axis];
    }
  }
}

/* first_row (cgint.h) of scan v. */
static int64_t first_row(const ir_func *f, int v, int **users, const int *n_users,
                         const bool *is_out) {
  if (is_out[v]) return 0;
  int64_t from = f->nodes[v].type.dim[0];
  for (int k = 0; k < n_users[v]; k++) {
    const ir_node *u = &f->nodes[users[v][k]];
    if (u->op != IR_OP_SLICE || u->attr.axis != 0) return 0;
    if (u->attr.start < from) from = u->attr.start;
  }
  return from;
}

/* read_at (cgint.h) of scan v. */
static int read_at(const ir_func *f, const cg_plan *p, int v, int **users,
                   const int *n_users, const bool *is_out) {
  if (is_out[v] || n_users[v] != 1) return -1;
  const ir_node *u = &f->nodes[users[v][0]];
  if (u->op != IR_OP_SELECT_ROW || u->in[0] != v) return -1;
  return p->node[u->in[1]].kind == CG_LEAF ? u->in[1] : -1;
}

/* tri and lower (cgint.h), for matmul to skip the causal mask's half. */
static void causal_shapes(const ir_func *f, cg_plan *p, const bool *is_out,
                          int **users, const int *n_users) {
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    const ir_node *a = n->n_in > 0 ? &f->nodes[n->in[0]] : NULL;
    const ir_node *b = n->n_in > 1 ? &f->nodes[n->in[1]] : NULL;
    bool t = false;
    if (n->op == IR_OP_SOFTMAX) t = n->attr.causal;
    else if (n->op == IR_OP_NEG) t = p->node[n->in[0]].tri;
    else if (n->op == IR_OP_MUL)
      t = (p->node[n->in[0]].tri && same_dims(&a->type, &n->type)) ||
          (p->node[n->in[1]].tri && same_dims(&b->type, &n->type));
    else if (n->op == IR_OP_DIV) /* by a nonzero constant */
      t = p->node[n->in[0]].tri && same_dims(&a->type, &n->type) &&
          b->op == IR_OP_FILL && b->attr.value != 0;
    p->node[v].tri = t && n->type.rank >= 2;
  }
  for (int v = f->n_nodes - 1; v >= 0; v--) {
    const ir_node *n = &f->nodes[v];
    bool ok = !is_out[v] && n_users[v] > 0 && n->type.rank >= 2;
    for (int k = 0; ok && k < n_users[v]; k++) {
      const ir_node *w = &f->nodes[users[v][k]];
      const cg_node_plan *q = &p->node[users[v][k]];
      if (!same_dims(&w->type, &n->type)) ok = false;
      else if (w->op == IR_OP_SOFTMAX) ok = w->attr.causal;
      else if (!cg_is_ewise(w->op)) ok = false;
      else {
        int other = w->n_in > 1 ? (w->in[0] == v ? w->in[1] : w->in[0]) : -1;
        ok = q->lower || (w->op == IR_OP_MUL && other >= 0 && p->node[other].tri);
      }
    }
    p->node[v].lower = ok;
  }
}

/* The i32 leaf every select_row of f reads its row from (the position
 * an evaluation kernel is read at), or -1 (none, or several). */
static int read_leaf(const ir_func *f, const cg_plan *p, const bool *live) {
  int at = -1;
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    if (!live[v] || n->op != IR_OP_SELECT_ROW) continue;
    if (p->node[n->in[1]].kind != CG_LEAF || (at >= 0 && at != n->in[1])) return -1;
    at = n->in[1];
  }
  return at;
}

/* Every user of v is an upto softmax, or an elementwise op on the way to
 * one (cgint.h lower: a scaling of the scores). */
static bool feeds_upto(const ir_func *f, const cg_plan *p, int v, int **users,
                       const int *n_users) {
  bool ok = n_users[v] > 0;
  for (int k = 0; ok && k < n_users[v]; k++) {
    int w = users[v][k];
    if (f->nodes[w].op == IR_OP_SOFTMAX) ok = p->node[w].upto && f->nodes[w].in[0] == v;
    else ok = cg_is_ewise(f->nodes[w].op) && p->node[w].lower && feeds_upto(f, p, w, users, n_users);
  }
  return ok;
}

/* upto (cgint.h): a causal model's evaluation kernel reads one row p, so
 * no row after it matters. The work that grows with the square of the
 * length or runs through every position stops there: a causal softmax
 * over as many keys as query rows (a first layer's attention), the
 * matmuls into it (scores) and out of it (weights times values), and a
 * scan whose whole output is read (a first layer's; the last layer's
 * already stops at p, read_at). Each writes zeros after row p, which
 * its users then read as they read any row: row by row, or masked.
 * Outputs stay whole. */
static void mark_upto(const ir_func *f, cg_plan *p, const bool *is_out, int **users,
                      const int *n_users) {
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    cg_node_plan *q = &p->node[v];
    int r = n->type.rank;
    if (q->kind != CG_MAT || is_out[v] || q->into >= 0) continue;
    if (n->op == IR_OP_SCAN) {
      q->upto = q->read_at < 0 && q->pair < 0;
    } else if (n->op == IR_OP_SOFTMAX) {
      q->upto = n->attr.causal && r >= 2 && n->type.dim[r - 1] == n->type.dim[r - 2];
    }
  }
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    cg_node_plan *q = &p->node[v];
    int r = n->type.rank;
    if (n->op != IR_OP_MATMUL || q->kind != CG_MAT || is_out[v] || q->into >= 0 || r < 2 ||
        n->attr.ta || n->type.dim[r - 1] == 1)
      continue;
    bool into = feeds_upto(f, p, v, users, n_users); /* the scores */
    const ir_node *a = &f->nodes[n->in[0]]; /* weights: an upto softmax's rows */
    bool out = a->op == IR_OP_SOFTMAX && p->node[n->in[0]].upto;
    q->upto = into || out;
  }
  for (int v = 0; v < f->n_nodes; v++) p->n_upto += p->node[v].upto;
}

/* ---- prefix (cgint.h): the rows after the row read that no reader needs ----
 *
 * Positions first, front to back: ax[v] is v's axis along the sequence
 * (rows), -1 if v has none (parameters, constants, a row already
 * selected), -2 if its values mix rows (attention scores, a reduction
 * over the rows, an op not listed): an input leaf whose first axis other
 * than 1s has the length of the rows that select_row reads at upto_at
 * has them along it, and the ops below carry them on such that row i of
 * the result depends only on rows <= i of each input: elementwise ops
 * (rows aligned under broadcasting), views, reductions and softmaxes
 * along other axes, a matmul's left rows, gather's indices, conv1d and
 * scan (causal), rope. A coincidental length is harmless: the property
 * holds along whatever axis it names.
 * Then which rows are needed, back to front: pre[v] when every reader
 * of v either needs only the rows of its own up to the row read and is
 * causal in v as above, or is select_row at upto_at, or a scan that
 * stops there (read_at, upto). Such a v may be computed up to that row
 * only, its later rows left as they were: no needed value reads them (a
 * reader computing every row makes garbage in its own unneeded rows).
 * Emitters that bound their rows: a group's loop (elementwise ops,
 * views, reductions), a matmul's row blocks, conv1d and gather (over
 * their first axis); the rest compute every row, which is correct, just
 * not faster. */
int cg_first_axis(const ir_type *t) {
  for (int d = 0; d < t->rank; d++)
    if (t->dim[d] != 1) return d;
  return -1;
}

/* The positional axis of v from its inputs' (see above). */
static int carry(const ir_func *f, const int *ax, int v) {
  const ir_node *n = &f->nodes[v];
  int r = n->type.rank, a0 = n->n_in > 0 ? ax[n->in[0]] : -1;
  bool any = false;
  for (int i = 0; i < n->n_in; i++) {
    if (ax[n->in[i]] == -2) return -2;
    any |= ax[n->in[i]] >= 0;
  }
  if (!any) return -1;
  if (cg_is_ewise(n->op) || n->op == IR_OP_EXPAND) {
    int out = -1; /* inputs right-aligned with the result */
    for (int i = 0; i < n->n_in; i++) {
      const ir_type *t = &f->nodes[n->in[i]].type;
      int a = ax[n->in[i]];
      if (a < 0) continue;
      int o = a + r - t->rank;
      if (out >= 0 && out != o) return -2;
      out = o;
    }
    return out;
  }
  switch (n->op) {
  case IR_OP_MATMUL: { /* the left operand's rows; not its inner axis, not B */
    if (ax[n->in[1]] >= 0) return -2;
    int inner = n->attr.ta ? r - 2 : r - 1, rows = n->attr.ta ? r - 1 : r - 2;
    return a0 == inner ? -2 : a0 == rows ? r - 2 : a0;
  }
  case IR_OP_PERMUTE:
    for (int i = 0; i < r; i++)
      if (n->attr.perm[i] == a0) return i;
    return -2;
  case IR_OP_RESHAPE: { /* the rows stay the first axis that is not 1 */
    const ir_type *t = &f->nodes[n->in[0]].type;
    int k = cg_first_axis(&n->type);
    if (cg_first_axis(t) != a0 || k < 0 || n->type.dim[k] != t->dim[a0]) return -2;
    return k;
  }
  case IR_OP_SLICE: case IR_OP_PAD: case IR_OP_SUM: case IR_OP_AMAX: case IR_OP_MEAN:
    return n->attr.axis == a0 ? -2 : a0;
  case IR_OP_CONCAT:
    for (int i = 0; i < n->n_in; i++)
      if (ax[n->in[i]] >= 0 && ax[n->in[i]] != a0) return -2;
    return a0 < 0 || n->attr.axis == a0 ? -2 : a0;
  case IR_OP_SOFTMAX:
    return a0 == r - 1 ? -2 : a0;
  case IR_OP_GATHER:
    return ax[n->in[0]] >= 0 ? -2 : ax[n->in[1]];
  case IR_OP_CONV1D:
    return a0 == 0 && ax[n->in[1]] < 0 ? 0 : -2;
  case IR_OP_SCAN: case IR_OP_ROPE: /* rows along axis 0 of x (u, delta, bc; cos, sin) */
    for (int i = 0; i < n->n_in; i++)
      if (ax[n->in[i]] > 0 || (n->op == IR_OP_SCAN && i == 2 && ax[n->in[i]] >= 0)) return -2;
    return 0;
  default:
    return -2;
  }
}

static void mark_prefix(const ir_func *f, cg_plan *p, const bool *live, const bool *is_out,
                        int **users, const int *n_users) {
  int n = f->n_nodes, at = p->upto_at;
  int64_t rows = -1;
  for (int v = 0; v < n; v++) {
    const ir_node *s = &f->nodes[v];
    if (!live[v] || s->op != IR_OP_SELECT_ROW) continue;
    int64_t R = f->nodes[s->in[0]].type.dim[0];
    if (rows >= 0 && rows != R) return;
    rows = R;
  }
  if (rows < 2) return;
  int *ax = malloc(sizeof *ax * ((size_t)n + 1));
  bool *pre = calloc((size_t)n + 1, sizeof *pre);
  if (!ax || !pre) abort();
  for (int v = 0; v < n; v++) {
    const ir_node *s = &f->nodes[v];
    if (s->op == IR_OP_INPUT) {
      int k = cg_first_axis(&s->type);
      ax[v] = v != at && k >= 0 && s->type.dim[k] == rows ? k : -1;
    } else if (s->op == IR_OP_SELECT_ROW) {
      ax[v] = s->in[1] == at && ax[s->in[0]] == 0 ? -1 : ax[s->in[0]] == -1 ? -1 : -2;
    } else {
      ax[v] = ir_op_is_leaf(s->op) ? -1 : carry(f, ax, v);
    }
  }
  for (int v = n - 1; v >= 0; v--) {
    if (!live[v] || ax[v] < 0 || is_out[v] || ir_op_is_leaf(f->nodes[v].op)) continue;
    bool ok = n_users[v] > 0;
    for (int k = 0; ok && k < n_users[v]; k++) {
      int w = users[v][k];
      const ir_node *u = &f->nodes[w];
      if (u->op == IR_OP_SELECT_ROW)
        ok = u->in[0] == v && u->in[1] == at && ax[v] == 0;
      else if (u->op == IR_OP_SCAN)
        ok = u->in[2] != v && ax[v] == 0 &&
             (p->node[w].read_at == at || p->node[w].upto);
      else
        ok = ax[w] >= 0 && pre[w];
    }
    pre[v] = ok;
  }
  for (int v = 0; v < n; v++) {
    cg_node_plan *q = &p->node[v];
    const ir_node *s = &f->nodes[v];
    if (!pre[v] || q->kind != CG_MAT || q->upto || q->into >= 0) continue;
    bool group = cg_is_ewise(s->op) || cg_is_view(s->op) || cg_is_reduce(s->op);
    /* the loop's domain: the rows its first axis that is not 1 */
    const ir_type *dom = cg_is_reduce(s->op) ? &f->nodes[s->in[0]].type : &s->type;
    if (group) {
      q->prefix = cg_first_axis(dom) == ax[v];
    } else if (s->op == IR_OP_MATMUL) {
      int r = s->type.rank;
      q->prefix = !s->attr.ta && ax[v] == r - 2 && cg_first_axis(&s->type) == r - 2 &&
                  s->type.dim[r - 1] > 1;
    } else if (s->op == IR_OP_CONV1D ||
               (s->op == IR_OP_GATHER && f->nodes[s->in[1]].type.rank == 1)) {
      q->prefix = ax[v] == 0 && cg_first_axis(&s->type) == 0; /* its rows: the indices */
    }
    p->n_upto += q->prefix;
  }
  free(ax);
  free(pre);
}

int cg_plan_build(const ir_func *f, const cg_options *opt, cg_plan *p, ir_error *err) {
  int n = f->n_nodes;
  bool fuse = !(opt && opt->no_fuse), rows_to_pos = opt && opt->rows_to_pos,
       hoist = opt && opt->hoist;
  memset(p, 0, sizeof *p);
  p->n_nodes = n;
  p->node = calloc((size_t)n + 1, sizeof *p->node);
  p->accumulate = calloc((size_t)f->n_outs + 1, sizeof *p->accumulate);
  bool *live = calloc((size_t)n + 1, sizeof *live);
  bool *is_out = calloc((size_t)n + 1, sizeof *is_out);
  int *n_users = calloc((size_t)n + 1, sizeof *n_users);
  int **users = calloc((size_t)n + 1, sizeof *users);
  int *owner = malloc(sizeof *owner * ((size_t)n + 1));
  int *lu = malloc(sizeof *lu * ((size_t)n + 1));
  int *bucket = malloc(sizeof *bucket * ((size_t)n + 1)); /* free lists by time */
  int *next = malloc(sizeof *next * ((size_t)n + 1));
  p->leaf_node = malloc(sizeof *p->leaf_node * ((size_t)n + 1));
  if (!p->node || !live || !is_out || !n_users || !users || !owner || !lu ||
      !bucket || !next || !p->leaf_node || !p->accumulate)
    abort();
  slots s = {0};
  int rc = 0;

  for (int j = 0; j < f->n_outs; j++) live[f->outs[j].node] = is_out[f->outs[j].node] = true;
  for (int v = n - 1; v >= 0; v--)
    if (live[v])
      for (int i = 0; i < f->nodes[v].n_in; i++) live[f->nodes[v].in[i]] = true;
  for (int w = 0; w < n; w++)
    if (live[w])
      for (int i = 0; i < f->nodes[w].n_in; i++) n_users[f->nodes[w].in[i]]++;
  for (int v = 0; v < n; v++) {
    users[v] = malloc(sizeof **users * ((size_t)n_users[v] + 1));
    if (!users[v]) abort();
    n_users[v] = 0;
  }
  for (int w = 0; w < n; w++)
    if (live[w])
      for (int i = 0; i < f->nodes[w].n_in; i++) {
        int v = f->nodes[w].in[i];
        users[v][n_users[v]++] = w;
      }
  decide_kinds(f, p, live, is_out, users, n_users, fuse);
  causal_shapes(f, p, is_out, users, n_users);
  for (int v = 0; v < n; v++) {
    p->node[v].pair = p->node[v].into = p->node[v].read_at = -1;
    p->node[v].addend = p->node[v].folded = -1;
    if (f->nodes[v].op == IR_OP_SCAN && live[v]) {
      p->node[v].first_row = first_row(f, v, users, n_users, is_out);
      p->node[v].read_at = read_at(f, p, v, users, n_users, is_out);
    }
  }
  place_concats(f, p, is_out, n_users);
  for (int w = 0; w < n; w++) {
    if (f->nodes[w].op != IR_OP_SCAN_BWD || p->node[w].kind != CG_MAT) continue;
    int v = scan_of(f, p, w);
    if (v >= 0) p->node[v].pair = w, p->node[w].pair = v;
  }
  p->upto_at = rows_to_pos ? read_leaf(f, p, live) : -1;
  if (p->upto_at >= 0) {
    mark_upto(f, p, is_out, users, n_users);
    mark_prefix(f, p, live, is_out, users, n_users);
  }
  if (hoist) mark_hoist(f, p, is_out);
  mark_siblings(f, p, fuse, is_out, users, n_users);
  if (fuse) fold_adds(f, p, is_out, n_users);

  for (int v = 0; v < n; v++) {
    cg_node_plan *q = &p->node[v];
    q->leaf = q->out = q->slot = -1;
    for (int k = 0; k < CG_MAX_SCRATCH; k++) q->scratch[k] = -1;
    if (ir_op_is_leaf(f->nodes[v].op) && f->nodes[v].op != IR_OP_FILL) {
      q->leaf = p->n_leaves;
      p->leaf_node[p->n_leaves++] = v;
    }
    owner[v] = q->kind != CG_ALIAS ? v : owner[q->folded >= 0 ? q->folded : f->nodes[v].in[0]];
    lu[v] = -1;
    bucket[v] = -1;
    if (q->kind == CG_MAT) p->n_mat++;
    if (q->kind == CG_FUSED) p->n_fused++;
    if (q->into >= 0) p->n_placed++;
  }
  for (int j = 0; j < f->n_outs && opt && opt->accumulate; j++) {
    p->accumulate[j] = opt->accumulate[j];
    if (p->accumulate[j] && f->nodes[f->outs[j].node].type.dtype != IR_F32) {
      ir_err(err, "codegen: output %d (%s) is i32 and cannot accumulate", j, f->outs[j].name);
      rc = -1;
    }
  }
  /* An output is computed in its buffer unless it accumulates: then in a
   * slot, added to the buffer right after the node (emit.c), or at the
   * end (a leaf, an alias). */
  for (int j = 0; j < f->n_outs; j++) {
    int v = f->outs[j].node;
    bool at_node = p->accumulate[j] && p->node[v].kind == CG_MAT;
    if (p->node[v].kind == CG_MAT && p->node[v].out < 0 && !p->accumulate[j]) p->node[v].out = j;
    int t = at_node ? v : n; /* read by the final copies, if any */
    if (t > lu[owner[v]]) lu[owner[v]] = t;
  }
  /* Last use of each storage owner: a fused node reads at its root. */
  for (int w = 0; w < n; w++) {
    const cg_node_plan *q = &p->node[w];
    if (q->kind == CG_DEAD || q->kind == CG_ALIAS) continue;
    int t = q->kind == CG_FUSED ? q->root : w;
    for (int i = 0; i < f->nodes[w].n_in; i++) {
      int o = owner[f->nodes[w].in[i]];
      if (t > lu[o]) lu[o] = t;
    }
    if (q->addend >= 0 && t > lu[owner[q->addend]]) /* read by the producer */
      lu[owner[q->addend]] = t;
  }
  bucket[n] = -1;
  /* What the prep entry makes lives from one batch to the next: slots of
   * its own, taken first, never freed. */
  for (int v = 0; v < n; v++) {
    cg_node_plan *q = &p->node[v];
    if (q->hoist) q->slot = slot_get(&s, round64(4 * ir_numel(&f->nodes[v].type)));
    if (q->prep) q->scratch[0] = slot_get(&s, round64(cg_scratch_bytes(f, p, v, 0)));
  }
  for (int v = 0; v < n; v++) {
    cg_node_plan *q = &p->node[v];
    if (q->hoist) { /* its scratch (a matmul's copy): used while the prep
                       entry makes it, where only the slots above live */
      for (int k = 0; k < CG_MAX_SCRATCH; k++) {
        int64_t b = cg_scratch_bytes(f, p, v, k);
        if (b > 0) q->scratch[k] = slot_get(&s, round64(b));
      }
      for (int k = 0; k < CG_MAX_SCRATCH; k++)
        if (q->scratch[k] >= 0) s.busy[q->scratch[k]] = false;
      continue;
    }
    if (q->sibling > v) /* made in v's loop: lives from here */
      take_slot(f, p, &s, lu, bucket, next, q->sibling);
    cg_node_plan *w = q->into >= 0 ? &p->node[q->into] : NULL;
    if (w && w->out < 0 && w->slot < 0) { /* a concat in a slot (it
      accumulates): its slot lives from its first part placed in it */
      take_slot(f, p, &s, lu, bucket, next, q->into);
    }
    if (q->kind == CG_MAT && q->out < 0 && q->into < 0 && q->slot < 0) {
      if (lu[v] < v) {
        ir_err(err, "codegen: %%%d is materialised but never read", v);
        rc = -1;
        break;
      }
      take_slot(f, p, &s, lu, bucket, next, v);
    }
    for (int k = q->prep; k < CG_MAX_SCRATCH; k++) { /* a prep's 0 is taken */
      int64_t b = q->kind == CG_MAT ? cg_scratch_bytes(f, p, v, k) : 0;
      if (b > 0) q->scratch[k] = slot_get(&s, round64(b));
    }
    bool saves = f->nodes[v].op == IR_OP_SCAN && q->pair >= 0;
    for (int k = q->prep; k < CG_MAX_SCRATCH; k++)
      if (q->scratch[k] >= 0 && !(saves && k > 0)) s.busy[q->scratch[k]] = false;
    if (f->nodes[v].op == IR_OP_SCAN_BWD && q->pair >= 0) /* the scan's saves */
      for (int k = 1; k < CG_MAX_SCRATCH; k++) s.busy[p->node[q->pair].scratch[k]] = false;
    for (int o = bucket[v]; o >= 0; o = next[o]) s.busy[p->node[o].slot] = false;
  }
  /* every scratch the emitters will ask for has its slot */
  for (int v = 0; v < n && !rc; v++)
    for (int k = 0; k < CG_MAX_SCRATCH && p->node[v].kind == CG_MAT; k++)
      if (p->node[v].scratch[k] < 0 && cg_scratch_bytes(f, p, v, k) > 0) {
        ir_err(err, "codegen: %%%d (%s) has no scratch slot %d", v, ir_op_name(f->nodes[v].op), k);
        rc = -1;
      }

  p->n_slots = s.n;
  p->slot_bytes = s.bytes ? s.bytes : malloc(sizeof *p->slot_bytes);
  p->slot_off = malloc(sizeof *p->slot_off * ((size_t)s.n + 1));
  if (!p->slot_bytes || !p->slot_off) abort();
  for (int i = 0; i < s.n; i++) {
    p->slot_off[i] = p->arena_bytes;
    p->arena_bytes += s.bytes[i];
  }
  free(s.busy);
  for (int v = 0; v < n; v++) free(users[v]);
  free(users);
  free(n_users);
  free(live);
  free(is_out);
  free(owner);
  free(lu);
  free(bucket);
  free(next);
  if (rc) cg_plan_free(p);
  return rc;
}

void cg_plan_free(cg_plan *p) {
  free(p->node);
  free(p->leaf_node);
  free(p->slot_bytes);
  free(p->slot_off);
  free(p->accumulate);
  memset(p, 0, sizeof *p);
}
