/* ops_scan.c — the selective scan and its reverse pass (semantics in ir.h).
 *
 * Both are explicit vector code across channels e (up to 32 lanes, see
 * blocks(); a scalar tail when E is not a multiple of 8), states laid out
 * [s][e] so that every step is vertical: y[t,e] accumulates over s in a
 * register, and the reverse pass's sums over s (du, ddelta) too; only
 * dB and dC (sums over e) end in horizontal reductions: per step t their
 * partial sums, one row of 8 lanes per (t, s) (acc_row), are added up
 * eight rows at a time (sums8).
 * A is used transposed (A^T [N,E] in scratch; with cg_options.hoist the
 * prep entry makes it, plan.c).
 *
 * In a training kernel the scan and its scan_bwd meet (plan.c pairs
 * them): the scan then keeps every state H[t+1] = h_t and every decay
 * a_t = exp(delta_t A) in its scratch 1 and 2 (step by step, or block of
 * channels by block: kept()), and the scan_bwd reads them instead of
 * running the recurrence (and its exps) a second time.
 * There the last layer's output is read at the last row only: its scan
 * computes y only for the rows read (plan.c first_row), and its scan_bwd
 * skips dy's terms in the steps where dy is a pad's zeros (layer 2's
 * reverse scan ~22% faster). In an evaluation kernel the last layer's
 * output is read at the row given at run time: its scan stops there. */
#include "cgint.h"

/* Widest vectors, measured (mamba d 64): the forward step has few live
 * values and gains up to 32 lanes; the reverse step has many, and spills
 * past 16; so does the forward step that makes its decays itself
 * (AVX-512, steps()). */
enum { FWD_VW = 32, FUSED_VW = 16, VW = CG_SCAN_VW, PW = CG_SCAN_PART };

typedef void (*block_fn)(cg_ctx *c, LLVMValueRef e0, void *ud);

/* fn for e0 = 0, W, ... as vectors of W lanes, for the widest W <= maxw
 * (a power of two >= 8) that fits, then the rest of the channels the
 * same way with narrower vectors, the last E % 8 one at a time (c->vw =
 * 1). Wide vectors are several registers: in decay_block their
 * independent exp chains interleave, which one 8-lane chain cannot (its
 * latency, not the FMA units, bounded the scan). */
static void blocks(cg_ctx *c, int64_t E, int maxw, block_fn fn, void *ud) {
  cg_loop l;
  int64_t e = 0;
  for (int w = maxw; w >= 8; w /= 2) {
    if ((E - e) / w == 0) continue;
    c->vw = w;
    LLVMValueRef b = cg_for(c, &l, cg_i64(c, 0), cg_i64(c, (E - e) / w));
    fn(c, cg_addk(c, cg_mulk(c, b, w), e), ud);
    cg_endfor(c, &l);
    e += (E - e) / w * w;
  }
  if (e < E) {
    c->vw = 1;
    LLVMValueRef i = cg_for(c, &l, cg_i64(c, e), cg_i64(c, E));
    fn(c, i, ud);
    cg_endfor(c, &l);
  }
  c->vw = 0;
}

static LLVMValueRef vzero(cg_ctx *c) { return LLVMConstNull(cg_vty(c, c->f32)); }
static LLVMValueRef get(cg_ctx *c, LLVMValueRef a) {
  return LLVMBuildLoad2(c->B, cg_vty(c, c->f32), a, "");
}
static void set(cg_ctx *c, LLVMValueRef a, LLVMValueRef x) { LLVMBuildStore(c->B, x, a); }
static LLVMValueRef mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_fmul(c, a, b, CG_FMA);
}
static LLVMValueRef fma_(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d) {
  return cg_fmuladd(c, a, b, d);
}
/* the scalar x[i] splat to c->vw lanes */
static LLVMValueRef bcast(cg_ctx *c, LLVMValueRef x, LLVMValueRef i) {
  return cg_splat(c, cg_loadf(c, x, i));
}

/* v >= 0 or NaN by its op (through views): softplus's delta, exp(A_log) */
static bool nonneg(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  switch (n->op) {
  case IR_OP_EXP: case IR_OP_SOFTPLUS: case IR_OP_SIGMOID: case IR_OP_RELU: case IR_OP_SQRT:
    return true;
  case IR_OP_RESHAPE: case IR_OP_SLICE: case IR_OP_PERMUTE: case IR_OP_EXPAND:
    return nonneg(f, n->in[0]);
  default: return false;
  }
}

/* v <= 0 or NaN: Mamba's A = -exp(A_log) */
static bool nonpos(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  switch (n->op) {
  case IR_OP_NEG: return nonneg(f, n->in[0]);
  case IR_OP_RESHAPE: case IR_OP_SLICE: case IR_OP_PERMUTE: case IR_OP_EXPAND:
    return nonpos(f, n->in[0]);
  default: return false;
  }
}

typedef struct {
  int64_t L, E, N;
  LLVMValueRef pu, pd; /* u[t,e] at pu[t*ld + e], delta at pd[t*ld + e] */
  int64_t ld;
  int64_t B; /* floats between [N,E] blocks: cg_scan_block(N E) */
  LLVMValueRef pAT, pbc;
  bool keep;        /* every state and decay kept, else one of each */
  LLVMValueRef pH;  /* H[t+1] = h_t, L+1 blocks; or (!keep) one state [N,E] */
  LLVMValueRef pa;  /* a_t, L blocks; or (!keep) the current step's [N,E] */
  LLVMValueRef py;  /* y [L,E], or NULL */
  LLVMValueRef pD;  /* y + u D[e] is stored (plan.c fold_adds), or NULL */
  int64_t y_from;   /* y is read from this row on (plan.c first_row) */
  LLVMValueRef pdy; /* reverse: dy [L,E], or NULL in steps where it is 0 */
  LLVMValueRef pG, pdAT, part; /* reverse: carry, dA^T [N,E], sums [2N,PW] */
  LLVMValueRef pdu, pdd; /* reverse: du, ddelta [L,E] */
  LLVMValueRef t;
  int nt;      /* reverse: steps per pass over the states, t down */
  int nt_max;  /* reverse: steps per pass where there are that many */
  int64_t z;   /* reverse: dy's rows before z are zeros */
  bool bmaj;   /* block by block (cg_scan_by_block): the kept states and
                  decays so laid out (kept()), the reverse's partial sums
                  a row pair per step [L,2N] (block_passes), not per step
                  of one pass */
  int64_t kst; /* floats between one step's kept values and the next's */
  bool nonpos; /* delta A <= 0 known (nonneg, nonpos): no upper clamp */
  bool decays; /* forward: fwd_block makes the decays (else decay_block) */
  LLVMValueRef t0, t1; /* forward: the steps of one block's run (block_steps) */
} sweep;

/* Where the states and decays of step t for state s and the channels at
 * e0 are kept (w->keep): step by step, one [N,E] block B floats apart
 * (kst = B); or (w->bmaj) block of 16 channels by block, each block's
 * steps [N,16] in turn (kst = 16 N), so that a block's run over its
 * steps reads and writes them in order (steps(), block_passes). */
static LLVMValueRef kept(cg_ctx *c, sweep *w, LLVMValueRef t, LLVMValueRef s, LLVMValueRef e0) {
  if (!w->bmaj) return cg_add(c, cg_mulk(c, t, w->kst), cg_add(c, cg_mulk(c, s, w->E), e0));
  LLVMValueRef blk = LLVMBuildAnd(c->B, e0, cg_i64(c, ~(int64_t)15), "");
  LLVMValueRef lane = LLVMBuildAnd(c->B, e0, cg_i64(c, 15), "");
  LLVMValueRef base = cg_add(c, cg_mulk(c, blk, (w->L + 1) * w->N), lane);
  return cg_add(c, base, cg_add(c, cg_mulk(c, t, w->kst), cg_mulk(c, s, 16)));
}

/* delta log2 e at step t for the channels at e0: the decays are
 *   a = exp(delta A[e,s]) computed as 2^((delta log2 e) A[e,s])
 * (cg_exp2_decay) */
static LLVMValueRef delta2(cg_ctx *c, sweep *w, LLVMValueRef e0) {
  LLVMValueRef d = cg_vload(c, w->pd, cg_add(c, cg_mulk(c, w->t, w->ld), e0));
  return cg_fmul(c, d, cg_splat(c, cg_f32c(c, 1.44269504088896341)), 0);
}

/* The decays of step t for the channels at e0, into pa. A loop of its
 * own, apart from the recurrence, where registers are few (16: AVX2): it
 * has few live values, so the exps' constants stay in registers and the
 * independent iterations overlap. */
static void decay_block(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  LLVMValueRef d2 = delta2(c, w, e0);
  cg_loop ls;
  LLVMValueRef s = cg_forn(c, &ls, w->N), idx = cg_add(c, cg_mulk(c, s, w->E), e0);
  LLVMValueRef a = cg_exp2_decay(c, cg_fmul(c, d2, cg_vload(c, w->pAT, idx), 0), w->nonpos);
  cg_vstore(c, a, w->pa, w->keep ? kept(c, w, w->t, s, e0) : idx);
  cg_endfor(c, &ls);
}

/* y, plus the skip term u D[e] where the scan makes it (w->pD): a
 * product, then a sum, as the two ops it stands for */
static LLVMValueRef skip(cg_ctx *c, const sweep *w, LLVMValueRef y, LLVMValueRef u,
                         LLVMValueRef e0) {
  if (!w->pD) return y;
  return cg_fadd(c, y, cg_fmul(c, u, cg_vload(c, w->pD, e0), 0), 0);
}

/* One step t of the recurrence for the channels at e0, with a_t from
 * decay_block or (w->decays) made here, and kept in pa if w->keep:
 *   h = a h_prev + (delta u) B[t,s],
 *   y[t,e] = sum_s C[t,s] h (in order of s). */
static void fwd_block(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  /* U states per iteration */
  int U = w->N % 4 == 0 ? 4 : w->N % 2 == 0 ? 2 : 1;
  LLVMValueRef t = w->t, ti = cg_add(c, cg_mulk(c, t, w->ld), e0);
  LLVMValueRef u = cg_vload(c, w->pu, ti), du = mul(c, cg_vload(c, w->pd, ti), u);
  LLVMValueRef d2 = w->decays ? delta2(c, w, e0) : NULL;
  LLVMValueRef yacc = w->py ? cg_alloca(c, cg_vty(c, c->f32), vzero(c)) : NULL;
  LLVMValueRef bc = cg_mulk(c, t, 2 * w->N);
  cg_loop ls;
  LLVMValueRef s0 = cg_mulk(c, cg_forn(c, &ls, w->N / U), U);
  for (int j = 0; j < U; j++) {
    LLVMValueRef s = cg_addk(c, s0, j);
    LLVMValueRef idx = cg_add(c, cg_mulk(c, s, w->E), e0);
    LLVMValueRef prev = w->keep ? kept(c, w, t, s, e0) : idx;
    LLVMValueRef cur = w->keep ? cg_addk(c, prev, w->kst) : idx;
    LLVMValueRef a;
    if (d2) {
      a = cg_exp2_decay(c, cg_fmul(c, d2, cg_vload(c, w->pAT, idx), 0), w->nonpos);
      if (w->keep) cg_vstore(c, a, w->pa, prev);
    } else {
      a = cg_vload(c, w->pa, w->keep ? prev : idx);
    }
    LLVMValueRef h = fma_(c, a, cg_vload(c, w->pH, prev),
                          mul(c, du, bcast(c, w->pbc, cg_add(c, bc, s))));
    cg_vstore(c, h, w->pH, cur);
    if (yacc)
      set(c, yacc, fma_(c, bcast(c, w->pbc, cg_add(c, cg_addk(c, bc, w->N), s)), h,
                        get(c, yacc)));
  }
  cg_endfor(c, &ls);
  if (yacc) cg_vstore(c, skip(c, w, get(c, yacc), u, e0), w->py, cg_add(c, cg_mulk(c, t, w->E), e0));
}

/* y at row w->t from the state there (one state kept, w->pH): the sum
 * over s in order, as fwd_block's. */
static void y_block(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  LLVMValueRef yacc = cg_alloca(c, cg_vty(c, c->f32), vzero(c));
  LLVMValueRef cbase = cg_addk(c, cg_mulk(c, w->t, 2 * w->N), w->N);
  cg_loop ls;
  LLVMValueRef s = cg_forn(c, &ls, w->N);
  LLVMValueRef h = cg_vload(c, w->pH, cg_add(c, cg_mulk(c, s, w->E), e0));
  set(c, yacc, fma_(c, bcast(c, w->pbc, cg_add(c, cbase, s)), h, get(c, yacc)));
  cg_endfor(c, &ls);
  LLVMValueRef u = w->pD ? cg_vload(c, w->pu, cg_add(c, cg_mulk(c, w->t, w->ld), e0)) : NULL;
  cg_vstore(c, skip(c, w, get(c, yacc), u, e0), w->py, cg_add(c, cg_mulk(c, w->t, w->E), e0));
}

/* Steps w->t0 <= t < w->t1 for the channels at e0, making the decays
 * (AVX-512 with more than one block of channels, steps()). */
static void block_steps(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  cg_loop lt;
  w->t = cg_for(c, &lt, w->t0, w->t1);
  fwd_block(c, e0, w);
  cg_endfor(c, &lt);
}

/* Steps t0 <= t < t1 of the recurrence (t1 may be known only when the
 * kernel runs): the decays, then the states (and y where w->py is set).
 * On AVX-512 both in one loop, 16 lanes at a time: its 32 registers hold
 * the exps' constants and the recurrence's values together, and a_t is
 * not read back (forward scans 9-17% faster at mamba d 8 and d 64, the
 * same outputs, in-process A/B). Where there is more than one block of
 * channels (w->bmaj), block by block, each block's steps in turn: its
 * state (1 KiB at N 16) stays in L1 from one step to the next, where a
 * step over all the channels went through 32 KiB at d 64 (states read
 * and written, decays, A^T), and its kept values are written in order
 * (kept()); at d 8, one block, the steps outside were 6-8% faster.
 * Elsewhere step by step, the decays in a loop of their own
 * (decay_block). */
static void steps(cg_ctx *c, sweep *w, LLVMValueRef t0, LLVMValueRef t1) {
  bool fused = c->isa >= CG_ISA_AVX512;
  if (w->bmaj) { /* AVX-512 too */
    w->t0 = t0, w->t1 = t1, w->decays = true;
    blocks(c, w->E, FUSED_VW, block_steps, w);
    w->decays = false;
    return;
  }
  cg_loop lt;
  w->t = cg_for(c, &lt, t0, t1);
  w->decays = fused;
  if (!fused) blocks(c, w->E, FWD_VW, decay_block, w);
  blocks(c, w->E, fused ? FUSED_VW : FWD_VW, fwd_block, w);
  w->decays = false;
  cg_endfor(c, &lt);
}

/* Only row p of y is read, p known when the kernel runs (an evaluation
 * kernel's last layer, a sequence padded to its bucket): the steps up to
 * p without y, then y at p. The steps after p are not needed at all.
 * (Running step p as a one-step loop of fwd_block instead of y_block was
 * measured 6-12% slower over the mamba d 8 sweep.) */
static void fwd_sweep_to(cg_ctx *c, sweep *w, LLVMValueRef p) {
  cg_zero(c, w->pH, w->N * w->E);
  LLVMValueRef py = w->py;
  w->py = NULL;
  steps(c, w, cg_i64(c, 0), cg_addk(c, p, 1));
  w->py = py, w->t = p;
  blocks(c, w->E, FWD_VW, y_block, w);
}

/* Steps [0, y_from) without y (no row of it is read), then the rest; all
 * of them, or (end) those before row end <= L, known when the kernel
 * runs. */
static void fwd_sweep(cg_ctx *c, sweep *w, LLVMValueRef end) {
  cg_zero(c, w->pH, w->N * w->E);
  LLVMValueRef py = w->py;
  int64_t from = py ? w->y_from : w->L;
  for (int part = 0; part < 2; part++) {
    int64_t t0 = part ? from : 0, t1 = part ? w->L : from;
    if (t0 == t1) continue;
    w->py = part ? py : NULL;
    LLVMValueRef hi = cg_i64(c, t1);
    if (end) hi = t1 == w->L ? end : cg_imin(c, end, hi);
    steps(c, w, cg_i64(c, t0), hi);
  }
  w->py = py;
}

/* The kept states and decays in slots sH and sa. Laid out block by block
 * (bmaj), one state's row is 64 bytes: a store of a decay then falsely
 * aliases (same address mod 4 KiB) a load of a state a few rows on
 * whenever the two arrays start close together mod 4 KiB; so the decays
 * start 2 KiB from the states, mod 4 KiB (their slot has 4 KiB more). */
static void kept_arrays(cg_ctx *c, sweep *w, int sH, int sa) {
  w->pH = c->slot[sH], w->pa = c->slot[sa];
  if (!w->bmaj) return;
  int64_t d = ((c->p->slot_off[sa] - c->p->slot_off[sH]) % 4096 + 4096) % 4096;
  w->pa = cg_gep(c, c->f32, w->pa, cg_i64(c, ((2048 - d) % 4096 + 4096) % 4096 / 4));
}

/* The distances of w's [N,E] blocks and kept values (E and N set). */
static void layout(cg_ctx *c, sweep *w) {
  w->B = cg_scan_block(w->N * w->E);
  w->bmaj = cg_scan_by_block(c, w->E);
  w->kst = w->bmaj ? 16 * w->N : w->B;
}

void cg_emit_scan(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const cg_node_plan *q = &c->p->node[v];
  sweep w = {.L = n->type.dim[0], .E = n->type.dim[1],
             .N = c->f->nodes[n->in[2]].type.dim[1]};
  layout(c, &w);
  w.pu = cg_ptr(c, n->in[0]), w.pd = cg_ptr(c, n->in[1]), w.ld = w.E;
  w.pbc = cg_ptr(c, n->in[3]), w.py = cg_ptr(c, v), w.y_from = q->first_row;
  if (q->addend >= 0) w.pD = cg_ptr(c, q->addend); /* the skip term's D (plan.c fold_adds) */
  w.nonpos = nonneg(c->f, n->in[1]) && nonpos(c->f, n->in[2]);
  w.pAT = c->slot[q->scratch[0]];
  if (q->pair >= 0) { /* keep every state and decay for the scan_bwd */
    w.keep = true;
    kept_arrays(c, &w, q->scratch[1], q->scratch[2]);
  } else {
    w.pH = cg_gep(c, c->f32, w.pAT, cg_i64(c, w.B));
    w.pa = cg_gep(c, c->f32, w.pAT, cg_i64(c, 2 * w.B));
  }
  if (cg_copies(c, v)) cg_transpose(c, w.pAT, cg_ptr(c, n->in[2]), w.E, w.N);
  if (cg_copy_only(c, v)) return; /* the prep entry: A^T only */
  if (q->read_at >= 0 && q->pair < 0) { /* the row, clamped (select_row counts it) */
    fwd_sweep_to(c, &w, cg_read_row(c, q->read_at, w.L));
  } else if (q->upto) { /* every row up to the one read (plan.c), then zeros */
    LLVMValueRef nr = cg_upto_rows(c, w.L);
    fwd_sweep(c, &w, nr);
    cg_zero_rows(c, w.py, nr, w.L, w.E);
  } else {
    fwd_sweep(c, &w, NULL);
  }
}

/* part's row at `at` += x y, the lanes of a wider vector added in
 * groups of PW: one load and store of a row per block of channels (its
 * 16-lane rows took two, and a halving round at every step's sums; the
 * reverse scan at d 8 ~20% faster, in-process A/B) */
static void acc_row(cg_ctx *c, sweep *w, LLVMValueRef at, LLVMValueRef x, LLVMValueRef y) {
  int vw = c->vw;
  if (vw <= PW) {
    cg_vstore(c, fma_(c, x, y, cg_vload(c, w->part, at)), w->part, at);
    return;
  }
  c->vw = PW;
  LLVMValueRef a = cg_vload(c, w->part, at);
  for (int h = 0; h < vw / PW; h++) a = fma_(c, cg_lanes(c, x, PW, h), cg_lanes(c, y, PW, h), a);
  cg_vstore(c, a, w->part, at);
  c->vw = vw;
}

/* Reverse steps t, t-1, .. (w->nt of them, from t = w->t down) for the
 * channels at e0; each, with dh = dy[t,e] C[t,s] + G:
 *   dC[t,s] += dy h_t          dB[t,s] += dh delta u      (sums over e)
 *   du[t,e] = delta sum_s dh B      ddelta[t,e] = sum_s (dh h_{t-1} a A + dh B u)
 *   dA[e,s] += dh h_{t-1} a delta   G = a dh
 * (where dy is 0, w->pdy NULL: dh = G, and dC gets nothing). Two steps
 * in one pass over s keep the carry G and dA^T in registers between
 * them and load the state between them once (step t's h_{t-1} is step
 * t-1's h_t): the same operations in the same order as one step at a
 * time. Step k's partial sums are part's rows [2N k, 2N (k+1)), or
 * (w->bmaj) step t-k's rows [2N (t-k), 2N (t-k+1)). */
static void bwd_block(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  int64_t st = w->kst, N = w->N; /* from one step's kept values to the next's */
  LLVMTypeRef vt = cg_vty(c, c->f32);
  LLVMValueRef u[CG_SCAN_STEPS], d[CG_SCAN_STEPS], g[CG_SCAN_STEPS], du[CG_SCAN_STEPS],
      sdu[CG_SCAN_STEPS], sdd[CG_SCAN_STEPS], bc[CG_SCAN_STEPS];
  for (int k = 0; k < w->nt; k++) {
    LLVMValueRef t = cg_addk(c, w->t, -k), ti = cg_add(c, cg_mulk(c, t, w->ld), e0);
    u[k] = cg_vload(c, w->pu, ti), d[k] = cg_vload(c, w->pd, ti);
    g[k] = w->pdy ? cg_vload(c, w->pdy, cg_add(c, cg_mulk(c, t, w->E), e0)) : NULL;
    du[k] = mul(c, d[k], u[k]);
    sdu[k] = cg_alloca(c, vt, vzero(c)), sdd[k] = cg_alloca(c, vt, vzero(c));
    bc[k] = cg_mulk(c, t, 2 * N);
  }
  cg_loop ls;
  LLVMValueRef s = cg_forn(c, &ls, N);
  LLVMValueRef idx = cg_add(c, cg_mulk(c, s, w->E), e0);
  LLVMValueRef at = kept(c, w, w->t, s, e0);
  LLVMValueRef dh = cg_vload(c, w->pG, idx), dA = cg_vload(c, w->pdAT, idx);
  LLVMValueRef AT = cg_vload(c, w->pAT, idx);
  LLVMValueRef ht = w->pdy ? cg_vload(c, w->pH, cg_addk(c, at, st)) : NULL;
  for (int k = 0; k < w->nt; k++) {
    LLVMValueRef atk = cg_addk(c, at, -k * st);
    LLVMValueRef a = cg_vload(c, w->pa, atk), hprev = cg_vload(c, w->pH, atk);
    LLVMValueRef Bs = bcast(c, w->pbc, cg_add(c, bc[k], s));
    /* partial sums over e: lanes of part[s] (B) and part[N+s] (C), of
     * this step's rows */
    LLVMValueRef rk = w->bmaj ? cg_mulk(c, cg_addk(c, w->t, -k), 2 * N) : cg_i64(c, 2 * N * k);
    LLVMValueRef pB = cg_mulk(c, cg_add(c, rk, s), PW);
    LLVMValueRef pC = cg_mulk(c, cg_add(c, cg_addk(c, rk, N), s), PW);
    if (g[k]) {
      dh = fma_(c, g[k], bcast(c, w->pbc, cg_add(c, cg_addk(c, bc[k], N), s)), dh);
      acc_row(c, w, pC, g[k], ht);
    }
    acc_row(c, w, pB, dh, du[k]);
    /* q = dh h_{t-1} a as G h_{t-1}: one multiply fewer (reverse scans
     * 3-5% faster, in-process A/B) */
    LLVMValueRef G = mul(c, a, dh); /* the carry into step t-k-1 */
    LLVMValueRef q = mul(c, G, hprev);
    dA = fma_(c, q, d[k], dA);
    LLVMValueRef dhB = mul(c, dh, Bs);
    set(c, sdd[k], fma_(c, q, AT, get(c, sdd[k])));
    set(c, sdu[k], cg_fadd(c, get(c, sdu[k]), dhB, CG_FMA));
    dh = G;
    ht = hprev;
  }
  cg_vstore(c, dA, w->pdAT, idx);
  cg_vstore(c, dh, w->pG, idx);
  cg_endfor(c, &ls);
  for (int k = 0; k < w->nt; k++) {
    LLVMValueRef te = cg_add(c, cg_mulk(c, cg_addk(c, w->t, -k), w->E), e0);
    cg_vstore(c, mul(c, get(c, sdu[k]), d[k]), w->pdu, te);
    /* sum_s dh B u = u sum_s dh B: one multiply-add per step, not per state */
    cg_vstore(c, fma_(c, u[k], get(c, sdu[k]), get(c, sdd[k])), w->pdd, te);
  }
}

/* The lane sums of eight vectors of 8 lanes (rows of part), as one
 * vector of 8: three rounds of adding neighbours across pairs (21
 * shuffles and adds for the 8 sums; one horizontal sum each took about
 * as many per vector, a third of the reverse scan at d 8). */
_Static_assert(PW == 8, "sums8 takes rows of 8 lanes");
static LLVMValueRef sums8(cg_ctx *c, LLVMValueRef *v) {
  static const int ev[] = {0, 2, 8, 10, 4, 6, 12, 14}, od[] = {1, 3, 9, 11, 5, 7, 13, 15};
  static const int h0[] = {0, 1, 2, 3, 8, 9, 10, 11}, h1[] = {4, 5, 6, 7, 12, 13, 14, 15};
  LLVMValueRef x[8];
  for (int i = 0; i < 8; i++) x[i] = v[i];
  /* x[2j], x[2j+1] -> the pair sums of both, interleaved by 128-bit half */
  for (int n = 8; n > 2; n /= 2)
    for (int j = 0; j < n / 2; j++)
      x[j] = cg_fadd(c, cg_shuffle(c, x[2 * j], x[2 * j + 1], ev, 8),
                     cg_shuffle(c, x[2 * j], x[2 * j + 1], od, 8), 0);
  /* x[0] = the sums of v0..v3 by half, x[1] of v4..v7: add the halves */
  return cg_fadd(c, cg_shuffle(c, x[0], x[1], h0, 8), cg_shuffle(c, x[0], x[1], h1, 8), 0);
}

/* dbc's row t from the partial sums at part: the lanes of part[k]
 * summed, 8 rows at once (sums8), the rest one by one, part[k] left 0
 * for the next step. Where dy is 0 the C half of part stays 0: only the
 * B half is summed, dC's row is zeros. */
static void step_sums(cg_ctx *c, sweep *w, LLVMValueRef part, LLVMValueRef t,
                      LLVMValueRef pdbc) {
  int64_t N = w->N, R = w->pdy ? 2 * N : N; /* rows summed */
  cg_loop ls;
  LLVMValueRef row = cg_mulk(c, t, 2 * N);
  int64_t K8 = R / 8 * 8;
  if (K8 > 0) {
    LLVMValueRef kb = cg_mulk(c, cg_forn(c, &ls, K8 / 8), 8), v[8];
    c->vw = PW;
    for (int i = 0; i < 8; i++) {
      LLVMValueRef pk = cg_mulk(c, cg_addk(c, kb, i), PW);
      v[i] = cg_vload(c, part, pk);
      cg_vstore(c, vzero(c), part, pk);
    }
    LLVMValueRef r = sums8(c, v);
    c->vw = 8;
    cg_vstore(c, r, pdbc, cg_add(c, row, kb));
    c->vw = 0;
    cg_endfor(c, &ls);
  }
  if (K8 < R) {
    c->vw = PW;
    LLVMValueRef k = cg_for(c, &ls, cg_i64(c, K8), cg_i64(c, R));
    LLVMValueRef pk = cg_mulk(c, k, PW);
    cg_store(c, cg_hsum(c, cg_vload(c, part, pk)), pdbc, cg_add(c, row, k));
    cg_vstore(c, vzero(c), part, pk);
    cg_endfor(c, &ls);
    c->vw = 0;
  }
  if (R < 2 * N) {
    LLVMValueRef k = cg_for(c, &ls, cg_i64(c, R), cg_i64(c, 2 * N));
    cg_store(c, cg_f32c(c, 0.0), pdbc, cg_add(c, row, k));
    cg_endfor(c, &ls);
  }
}

/* Reverse steps w->t down to w->t - w->nt + 1 over every channel, then
 * their rows of dbc. */
static void bwd_step(cg_ctx *c, sweep *w, LLVMValueRef pdbc) {
  blocks(c, w->E, VW, bwd_block, w);
  for (int k = 0; k < w->nt; k++)
    step_sums(c, w, cg_gep(c, c->f32, w->part, cg_i64(c, 2 * w->N * PW * k)),
              cg_addk(c, w->t, -k), pdbc);
}

/* fn for every pass of the reverse steps, t = L-1 .. z (with dy) then
 * z-1 .. 0 (without): nt steps a pass where there are that many, the
 * last alone. */
static void passes(cg_ctx *c, sweep *w, int nt, void (*fn)(cg_ctx *, sweep *, void *),
                   void *ud) {
  LLVMValueRef pdy = w->pdy;
  for (int part = 0; part < 2; part++) {
    int64_t lo = part ? 0 : w->z, hi = part ? w->z : w->L;
    if (lo == hi) continue;
    w->pdy = part ? NULL : pdy;
    if ((hi - lo) / nt > 0) {
      cg_loop lt;
      w->nt = nt;
      LLVMValueRef tr = cg_forn(c, &lt, (hi - lo) / nt);
      w->t = LLVMBuildSub(c->B, cg_i64(c, hi - 1), cg_mulk(c, tr, nt), "");
      fn(c, w, ud);
      cg_endfor(c, &lt);
    }
    if ((hi - lo) % nt) {
      w->nt = 1, w->t = cg_i64(c, lo);
      fn(c, w, ud);
    }
  }
  w->pdy = pdy;
}

static void pass_all_blocks(cg_ctx *c, sweep *w, void *pdbc) { bwd_step(c, w, pdbc); }
static void pass_one_block(cg_ctx *c, sweep *w, void *e0) { bwd_block(c, e0, w); }
/* step w->t's row of dbc, once every block is done (w->bmaj) */
static void pass_sums(cg_ctx *c, sweep *w, void *pdbc) {
  step_sums(c, w, cg_gep(c, c->f32, w->part, cg_mulk(c, w->t, 2 * w->N * PW)), w->t, pdbc);
}

/* Every reverse step for the channels at e0 (w->bmaj). */
static void block_passes(cg_ctx *c, LLVMValueRef e0, void *ud) {
  sweep *w = ud;
  passes(c, w, w->nt_max, pass_one_block, e0);
}

void cg_emit_scan_bwd(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const cg_node_plan *q = &c->p->node[v];
  const ir_type *dyt = &c->f->nodes[n->in[3]].type;
  sweep w = {.L = dyt->dim[0], .E = dyt->dim[1], .N = c->f->nodes[n->in[1]].type.dim[1]};
  int64_t L = w.L, E = w.E, N = w.N, NE = N * E;
  layout(c, &w);
  LLVMValueRef po = cg_ptr(c, v);
  const ir_node *ud = &c->f->nodes[n->in[0]];
  if (c->p->node[n->in[0]].kind == CG_FUSED) { /* concat(u, delta), not copied */
    w.pu = cg_ptr(c, ud->in[0]), w.pd = cg_ptr(c, ud->in[1]), w.ld = E;
  } else {
    LLVMValueRef pud = cg_ptr(c, n->in[0]);
    w.pu = pud, w.pd = cg_gep(c, c->f32, pud, cg_i64(c, E)), w.ld = 2 * E;
  }
  w.pbc = cg_ptr(c, n->in[2]);
  LLVMValueRef work = c->slot[q->scratch[0]];
  w.pAT = work;
  w.pG = cg_gep(c, c->f32, work, cg_i64(c, w.B));
  w.pdAT = cg_gep(c, c->f32, work, cg_i64(c, 2 * w.B));
  w.part = cg_gep(c, c->f32, work, cg_i64(c, 3 * w.B));
  /* The partial sums: every step's rows are left 0 once summed
   * (step_sums), so in a prep node's scratch, which no other node uses,
   * they are 0 from one run to the next: the prep entry zeroes them
   * once, not the kernel at every example (64 KiB a scan_bwd at d 64;
   * mamba d 8's training kernel 1-3% faster, d 64 and hybrid within
   * the in-process A/B's noise, the same outputs) */
  int64_t n_part = (w.bmaj ? L : CG_SCAN_STEPS) * 2 * N * PW;
  if (cg_copies(c, v)) cg_transpose(c, w.pAT, cg_ptr(c, n->in[1]), E, N);
  if (cg_copy_only(c, v)) { /* the prep entry: A^T, and the sums' zeros */
    cg_zero(c, w.part, n_part);
    return;
  }
  w.keep = true;
  if (q->pair >= 0) { /* the scan's saved states and decays */
    const cg_node_plan *sq = &c->p->node[q->pair];
    kept_arrays(c, &w, sq->scratch[1], sq->scratch[2]);
  } else {
    kept_arrays(c, &w, q->scratch[1], q->scratch[2]);
    w.nonpos = ud->op == IR_OP_CONCAT && nonneg(c->f, ud->in[1]) && nonpos(c->f, n->in[1]);
    fwd_sweep(c, &w, NULL);
  }
  /* outputs: du [L,E], ddelta [L,E], dA [E,N], dbc [L,2N] */
  w.pdu = po, w.pdd = cg_gep(c, c->f32, po, cg_i64(c, L * E));
  LLVMValueRef pdA = cg_gep(c, c->f32, po, cg_i64(c, 2 * L * E));
  LLVMValueRef pdbc = cg_gep(c, c->f32, po, cg_i64(c, 2 * L * E + NE));
  /* dy's rows before z are zeros (a pad: the last layer of a training
   * kernel reads one row): those steps skip its terms */
  const ir_node *dyn = &c->f->nodes[n->in[3]];
  w.z = dyn->op == IR_OP_PAD && dyn->attr.axis == 0 && dyn->attr.end == 0 ? dyn->attr.start : 0;
  if (c->p->node[n->in[3]].kind == CG_FUSED) { /* the pad not made (plan.c
    scan_dy_pad): its input's rows, z rows on; a plain GEP, as the rows
    before z are outside that input and never read */
    LLVMValueRef back = cg_i64(c, -w.z * E);
    w.pdy = LLVMBuildGEP2(c->B, c->f32, cg_ptr(c, dyn->in[0]), &back, 1, "");
  } else {
    w.pdy = cg_ptr(c, n->in[3]);
  }
  /* two steps at a time on AVX-512, whose 32 registers hold both steps'
   * values (16 would not): mamba d 64's reverse scans ~20% faster
   * (in-process A/B, outputs the same bit for bit); at d 8 within the
   * A/B's reach either way. There, with more than one block of channels,
   * block by block as the forward scan (w.bmaj), reading each block's
   * kept values in order, the partial sums kept per step until every
   * block is done (step by step, each step's carries, dA^T and A^T for
   * all channels, 24 KiB at d 64, did not stay in L1; with the forward
   * scan, its layout and kept_arrays' offset, mamba d 64's kernel 1.2-1.9%
   * faster, in-process A/B, the same outputs). */
  int nt = c->isa >= CG_ISA_AVX512 ? CG_SCAN_STEPS : 1;
  cg_zero(c, w.pG, 2 * w.B + (q->prep ? 0 : n_part)); /* G, dA^T (, part) */
  if (!w.bmaj) {
    passes(c, &w, nt, pass_all_blocks, pdbc);
  } else {
    w.nt_max = nt;
    blocks(c, E, VW, block_passes, &w);
    passes(c, &w, 1, pass_sums, pdbc);
  }
  cg_transpose(c, pdA, w.pdAT, N, E);
}
